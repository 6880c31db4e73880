from __future__ import annotations

import csv
import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from elastic_lm.errors import UserError
from elastic_lm.train.checkpoint import latest_checkpoint, list_checkpoints
from elastic_lm.train.distributed import DistContext
from elastic_lm.train.loop import (
    StepBatches,
    TrainingDiverged,
    TrainSettings,
    build_optimizer,
    lr_factor,
    shard_batch,
    train_supernet,
    training_batches,
)
from elastic_lm.train.losses import CombinedLoss
from elastic_lm.train.strategies import make_strategy
from toy_supernet import ToyElastic, ToySpace, ToyTeacher, masking_collate, toy_data


def settings(**kw) -> TrainSettings:
    base = dict(
        steps=6,
        batch_size=4,
        learning_rate=1e-2,
        warmup_fraction=0.2,
        device="cpu",
        progress=False,
        tensorboard=False,
        checkpoint_every=100,
        eval_every=100,
        eval_batches=2,
    )
    return TrainSettings(**{**base, **kw})


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "train" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_sandwich_training_lowers_loss_and_logs(tmp_path):
    torch.manual_seed(0)
    model = ToyElastic(n_layers=2)
    strategy = make_strategy("sandwich", ToySpace(2), n_random=1, seed=0)
    losses = CombinedLoss([{"name": "mlm"}])
    result = train_supernet(
        model,
        strategy,
        losses,
        toy_data(64),
        val_data=toy_data(16, seed=1),
        settings=settings(steps=30, learning_rate=3e-2, eval_every=10),
        run_dir=tmp_path,
    )
    assert len(result.losses) == 30
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first
    assert set(result.val) == {"largest", "smallest", "middle"}
    assert result.val["largest"] < result.val["smallest"] + 1.0
    rows = read_metrics(tmp_path)
    train_loss = [float(r["value"]) for r in rows if r["split"] == "train" and r["name"] == "loss"]
    assert train_loss == pytest.approx(result.losses, rel=1e-6)
    names = {r["name"] for r in rows if r["split"] == "train"}
    assert {"lr", "grad_norm", "tokens_per_s", "loss/largest", "loss/smallest"} <= names
    assert {r["step"] for r in rows if r["split"] == "val"} == {"10", "20", "30"}
    assert result.checkpoint == tmp_path / "train" / "checkpoints" / "step-00000030"
    assert model.arch == ToySpace(2).largest()  # reset after training


def test_checkpoints_keep_last_k_and_load_safely(tmp_path):
    model = ToyElastic()
    strategy = make_strategy("random", ToySpace(), seed=1)
    train_supernet(
        model,
        strategy,
        CombinedLoss([{"name": "mlm"}]),
        toy_data(16),
        settings=settings(steps=5, checkpoint_every=1, keep_checkpoints=2),
        run_dir=tmp_path,
    )
    folder = tmp_path / "train" / "checkpoints"
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000004", "step-00000005"]
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000004", "step-00000005"]
    last = latest_checkpoint(folder)
    state = json.loads((last / "state.json").read_text())
    assert state["step"] == 5
    assert state["micro_batches_done"] == 5
    trainer = torch.load(last / "trainer.pt", weights_only=True)
    assert set(trainer) >= {"optimizer", "scheduler", "losses", "rng"}
    saved = load_file(last / "model.safetensors")
    for name, value in model.state_dict().items():
        assert torch.equal(saved[name], value)
    assert json.loads((last / "strategy.json").read_text()) == {"strategy": "random", "seed": 1}


class CrashError(Exception):
    pass


def interrupt_at(k_stop: int):
    def hook(k, batch):
        if k == k_stop:
            raise CrashError
        return batch

    return hook


def _resume_case(case: str):
    """(model, strategy, losses, teacher) for the resume test; built fresh each time."""
    torch.manual_seed(0)
    model = ToyElastic(n_layers=3, dropout=0.2)
    space = ToySpace(3)
    if case == "inplace":
        strategy = make_strategy("inplace-distill", space, n_random=1, seed=2)
        losses = CombinedLoss([{"name": "mlm", "when": ["labels"]}, {"name": "logit-kd"}])
        return model, strategy, losses, None
    strategy = make_strategy("sandwich", space, n_random=1, seed=2, target="teacher")
    losses = CombinedLoss(
        [{"name": "mlm"}, {"name": "hidden", "weight": 0.5}],
        n_student_layers=4,
        student_width=16,
        teacher_width=12,
    )
    return model, strategy, losses, ToyTeacher(width=12, n_layers=3)


@pytest.mark.parametrize("case", ["inplace", "teacher"])
def test_resume_continues_exactly(tmp_path, case):
    data = toy_data(10)  # 6 steps x 2 micro-batches x 4 rows cross an epoch boundary
    opts = dict(steps=6, grad_accumulation=2, checkpoint_every=3)

    model, strategy, losses, teacher = _resume_case(case)
    straight = train_supernet(
        model,
        strategy,
        losses,
        data,
        teacher=teacher,
        settings=settings(**opts),
        run_dir=tmp_path / "a",
    )
    expected, expected_loss = weights(model), weights(losses)
    assert bool(expected_loss) == (case == "teacher")  # learned projections are resumed too
    initial = weights(_resume_case(case)[2])
    assert all(not torch.equal(expected_loss[k], initial[k]) for k in initial)  # and optimised

    model, strategy, losses, teacher = _resume_case(case)
    with pytest.raises(CrashError):
        train_supernet(
            model,
            strategy,
            losses,
            data,
            teacher=teacher,
            settings=settings(**opts, batch_hook=interrupt_at(9)),  # dies inside step 5
            run_dir=tmp_path / "b",
        )
    model, strategy, losses, teacher = _resume_case(case)
    resumed = train_supernet(
        model,
        strategy,
        losses,
        data,
        teacher=teacher,
        settings=settings(**opts, resume=True),
        run_dir=tmp_path / "b",
    )
    assert resumed.start_step == 3
    assert resumed.losses == pytest.approx(straight.losses[3:], abs=1e-6)
    for name, value in weights(model).items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)
    for name, value in weights(losses).items():
        torch.testing.assert_close(value, expected_loss[name], atol=1e-6, rtol=0)
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "b") if r["name"] == "loss"]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows of the interrupted step 4 were dropped


def test_resume_refuses_a_different_batch_size_and_fresh_runs_refuse_old_checkpoints(tmp_path):
    def run(**kw):
        return train_supernet(
            ToyElastic(),
            make_strategy("standard", ToySpace()),
            CombinedLoss([{"name": "mlm"}]),
            toy_data(8),
            settings=settings(steps=2, **kw),
            run_dir=tmp_path,
        )

    run()
    with pytest.raises(UserError, match="batch_size=2 differs"):
        run(batch_size=2, resume=True)
    with pytest.raises(UserError, match=r"already has training checkpoints \(step-00000002\); pass"):
        run()  # starting over would mix two runs' checkpoints


class NaNAfter(nn.Module):
    """CombinedLoss that turns NaN from its ``after``-th call on (a diverging run)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.inner = CombinedLoss([{"name": "mlm"}])
        self.calls, self.after = 0, after

    def forward(self, student, batch, teacher=None, target="labels"):
        self.calls += 1
        total, parts = self.inner(student, batch, teacher, target=target)
        return (total * float("nan") if self.calls > self.after else total), parts


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path):
    model = ToyElastic()
    with pytest.raises(TrainingDiverged, match=r"at step 3; lower train\.learning_rate") as info:
        train_supernet(
            model,
            make_strategy("standard", ToySpace()),
            NaNAfter(2),
            toy_data(8),
            settings=settings(steps=6, checkpoint_every=2),
            run_dir=tmp_path,
        )
    assert isinstance(info.value, UserError)
    assert "step-00000002" in str(info.value)
    folder = tmp_path / "train" / "checkpoints"
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000002"]
    saved = load_file(folder / "step-00000002" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN step was applied


def test_step_batches_shard_the_global_batch_and_reshuffle_per_epoch():
    data = toy_data(10)
    single = StepBatches(data, 4, seed=3, ctx=DistContext())
    ranks = [StepBatches(data, 4, seed=3, ctx=DistContext(rank=r, world_size=2)) for r in (0, 1)]
    for k in range(7):
        assert ranks[0].indices(k) + ranks[1].indices(k) == single.indices(k)
    stream = [i for k in range(5) for i in single.indices(k)]  # 20 positions = 2 epochs
    assert sorted(stream[:10]) == list(range(10))
    assert sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]
    assert StepBatches(data, 4, seed=3, ctx=DistContext()).indices(4) == single.indices(4)
    global_batch = single.global_batch(2)
    halves = [shard_batch(global_batch, r, 2) for r in (0, 1)]
    assert torch.equal(torch.cat([h["input_ids"] for h in halves]), global_batch["input_ids"])
    with pytest.raises(UserError, match="batch_size=3 is not divisible"):
        StepBatches(data, 3, seed=0, ctx=DistContext(world_size=2))


def test_optimizer_skips_decay_on_biases_and_norms():
    model = ToyElastic()
    opt = build_optimizer(list(model.named_parameters()), lr=1e-3, weight_decay=0.1)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert id(model.up[0].weight) in decayed
    assert id(model.embed.weight) in decayed
    assert id(model.up[0].bias) not in decayed
    assert id(model.norm[0].weight) not in decayed


def test_lr_schedule_warms_up_then_decays():
    assert [lr_factor(s, 10, 2, "linear") for s in (0, 1, 2, 6, 10)] == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 0.5, 0.0]
    )
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)
    assert lr_factor(9, 10, 2, "constant") == 1.0


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"train\.grad_accumulation=0"):
        settings(grad_accumulation=0).validate()
    with pytest.raises(UserError, match="fp16' needs a CUDA"):
        train_supernet(
            ToyElastic(),
            make_strategy("standard", ToySpace()),
            CombinedLoss([{"name": "mlm"}]),
            toy_data(4),
            settings=settings(precision="fp16"),
            run_dir=tmp_path,
        )


def test_bf16_autocast_on_cpu_trains(tmp_path):
    result = train_supernet(
        ToyElastic(),
        make_strategy("sandwich", ToySpace(), n_random=0),
        CombinedLoss([{"name": "mlm"}]),
        toy_data(8),
        settings=settings(steps=3, precision="bf16"),
        run_dir=tmp_path,
    )
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from elastic_lm.train.optim import cpu_has_native_bf16

    native, plain = tmp_path / "native", tmp_path / "plain"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_has_native_bf16(native) is True
    assert cpu_has_native_bf16(plain) is False
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_bf16_on_a_cpu_without_bf16_warns_and_auto_stays_fp32(monkeypatch, caplog):
    from elastic_lm.train import optim

    cpu = torch.device("cpu")
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="elastic_lm.train"):
        assert optim.amp_dtype("bf16", cpu) is torch.bfloat16
    assert "train.precision=fp32" in caplog.text
    caplog.clear()
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="elastic_lm.train"):
        assert optim.amp_dtype("bf16", cpu) is torch.bfloat16
        assert optim.amp_dtype("auto", cpu) is None
    assert caplog.text == ""


def test_tensorboard_is_optional(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    train_supernet(
        ToyElastic(),
        make_strategy("standard", ToySpace()),
        CombinedLoss([{"name": "mlm"}]),
        toy_data(4),
        settings=settings(steps=1, tensorboard=True),
        run_dir=tmp_path,
    )
    assert (tmp_path / "train" / "metrics.csv").exists()
    assert not (tmp_path / "train" / "tensorboard").exists()


# --- distributed ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different init per rank: rank 0's weights must be broadcast
    result = _ddp_run(run_dir)
    Path(run_dir, f"losses-{rank}.json").write_text(json.dumps(result.losses))
    torch.distributed.destroy_process_group()


def _ddp_run(run_dir: str):
    model = ToyElastic(n_layers=3)
    strategy = make_strategy("random", ToySpace(3), seed=5)  # drops layers: unused parameters
    return train_supernet(
        model,
        strategy,
        CombinedLoss([{"name": "mlm"}]),
        toy_data(16),
        val_data=toy_data(8, seed=1),
        settings=settings(steps=6, grad_accumulation=2, eval_every=3),
        run_dir=run_dir,
    )


def test_two_process_gloo_matches_one_process(tmp_path):
    tasks = [make_strategy("random", ToySpace(3), seed=5)(s)[0].arch for s in range(6)]
    assert any(a.depth < 3 for a in tasks)  # some steps leave parameters without gradients

    torch.manual_seed(0)
    single = _ddp_run(str(tmp_path / "one"))
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)

    two = json.loads((tmp_path / "two" / "losses-0.json").read_text())
    assert two == json.loads((tmp_path / "two" / "losses-1.json").read_text())
    assert two == pytest.approx(single.losses, abs=1e-4)
    a = load_file(tmp_path / "one" / "train" / "checkpoints" / "step-00000006" / "model.safetensors")
    b = load_file(tmp_path / "two" / "train" / "checkpoints" / "step-00000006" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)
    val_one = [r for r in read_metrics(tmp_path / "one") if r["split"] == "val"]
    val_two = [r for r in read_metrics(tmp_path / "two") if r["split"] == "val"]
    assert [r["name"] for r in val_one] == [r["name"] for r in val_two]
    for x, y in zip(val_one, val_two, strict=True):
        assert float(x["value"]) == pytest.approx(float(y["value"]), abs=1e-4)


# --- the real elastic model -------------------------------------------------------------------


def _real_case():
    from dummy_train_space import DummySpace
    from elastic_lm.model import ElasticConfig, ElasticForMaskedLM

    torch.manual_seed(0)
    config = ElasticConfig(
        vocab_size=24,
        max_position_embeddings=16,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        head_dim=8,
        intermediate_size=64,
        hidden_dropout_prob=0.1,
    )
    model = ElasticForMaskedLM(config)
    strategy = make_strategy("inplace-distill", DummySpace(2), n_random=1, seed=0)
    losses = CombinedLoss([{"name": "mlm", "when": ["labels"]}, {"name": "logit-kd"}, {"name": "relational"}])
    return model, strategy, losses


def test_real_elastic_model_trains_and_resumes_exactly(tmp_path):
    data, opts = toy_data(12), dict(steps=4, checkpoint_every=2, learning_rate=3e-3)
    model, strategy, losses = _real_case()
    straight = train_supernet(
        model,
        strategy,
        losses,
        data,
        val_data=toy_data(4, seed=1),
        settings=settings(**opts),
        run_dir=tmp_path / "a",
    )
    assert straight.losses[-1] < straight.losses[0]
    assert set(straight.val) == {"largest", "smallest", "middle"}
    expected = weights(model)

    model, strategy, losses = _real_case()
    with pytest.raises(CrashError):
        train_supernet(
            model,
            strategy,
            losses,
            data,
            settings=settings(**opts, batch_hook=interrupt_at(2)),
            run_dir=tmp_path / "b",
        )
    model, strategy, losses = _real_case()
    train_supernet(
        model,
        strategy,
        losses,
        data,
        settings=settings(**opts, resume=True),
        run_dir=tmp_path / "b",
    )
    for name, value in weights(model).items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)


# --- wiring from a config ---------------------------------------------------------------------


def test_train_from_config_uses_the_train_section(tmp_path):
    from elastic_lm.config import load_config
    from elastic_lm.train.build import train_from_config

    config = load_config(
        None,
        [
            f"run_dir={tmp_path}",
            "device=cpu",
            "seed=3",
            "train.steps=3",
            "train.batch_size=2",
            "train.strategy=inplace-distill",
            "train.strategy_options={n_random: 0}",
            "train.losses=[{name: mlm, options: {when: [labels]}}, {name: logit-kd, weight: 0.5}]",
        ],
    )
    result = train_from_config(
        config, model=ToyElastic(), space=ToySpace(), train_data=toy_data(8), progress=False
    )
    assert len(result.losses) == 3
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["settings"]["batch_size"] == 2
    assert state["settings"]["seed"] == 3
    assert json.loads((result.checkpoint / "strategy.json").read_text())["strategy"] == "inplace-distill"


def test_cli_train_from_scratch_without_tokenizer_is_a_one_line_error(tmp_path, capsys):
    from elastic_lm.cli.main import main

    assert main(["train", "--run-dir", str(tmp_path), "--set", "model.source=scratch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "model.source=scratch needs model.tokenizer" in err[0]


def test_teacher_cache_filled_from_training_batches_matches_the_run(tmp_path):
    from elastic_lm.train.teacher_cache import TopKLogitCache

    data = toy_data(12)
    s = settings(steps=3, grad_accumulation=2, collate_fn=masking_collate)
    teacher = ToyTeacher(width=12).eval()
    cache = TopKLogitCache(tmp_path / "cache", k=5)
    assert cache.fill(lambda b: teacher(b["input_ids"]).logits, training_batches(data, s)) == 6

    seen: list[torch.Tensor] = []

    def attach(k, batch):
        seen.append(batch["labels"].clone())
        return cache.attach(k, batch)

    s.batch_hook = attach
    result = train_supernet(
        ToyElastic(),
        make_strategy("random", ToySpace(), seed=0, target="teacher"),
        CombinedLoss([{"name": "mlm"}, {"name": "topk-kd", "positions": "labels"}]),
        data,
        settings=s,
        run_dir=tmp_path / "run",
    )
    expected = [b["labels"] for b in training_batches(data, s)]
    assert len(seen) == 6
    for got, want in zip(seen, expected, strict=True):
        assert torch.equal(got, want)  # same rows and the same random MLM masks
    assert any((b == -100).any() for b in seen)
    names = {r["name"] for r in read_metrics(tmp_path / "run")}
    assert "random/topk-kd" in names
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_hf_mlm_collator_masks_repeat_exactly_on_resume(tmp_path):
    from toy_supernet import hf_mlm_collator, token_rows

    data = token_rows(10)

    def run(name, **kw):
        torch.manual_seed(0)
        model = ToyElastic()
        s = settings(steps=4, checkpoint_every=2, collate_fn=hf_mlm_collator(), **kw)
        train_supernet(
            model,
            make_strategy("sandwich", ToySpace(), n_random=0),
            CombinedLoss([{"name": "mlm"}]),
            data,
            settings=s,
            run_dir=tmp_path / name,
        )
        return weights(model)

    expected = run("straight")
    with pytest.raises(CrashError):
        run("resumed", batch_hook=interrupt_at(2))
    got = run("resumed", resume=True)  # a fresh collator, as after a restart
    for name, value in got.items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)
    s = settings(steps=4, collate_fn=hf_mlm_collator())
    first = [b["labels"] for b in training_batches(data, s)]
    again = [b["labels"] for b in training_batches(data, s, start=2)]
    assert torch.equal(first[2], again[0])
    assert (first[0] == -100).any()
    assert not torch.equal(first[0], first[1])


@pytest.mark.assets
@pytest.mark.slow
def test_cli_trains_minilm_on_austen_and_resumes(tmp_path, capsys):
    from elastic_lm.cli.main import main

    args = ["train", "--run-dir", str(tmp_path), "--no-progress"]
    sets = [
        "device=cpu",
        "data.source=austen",
        "data.max_examples=64",
        "data.max_length=32",
        "space.options={layers: 6, blocks: [bert]}",
        "train.steps=2",
        "train.batch_size=4",
        "train.checkpoint_every=1",
        "train.eval_every=2",
        "train.eval_batches=1",
    ]
    sets = [x for item in sets for x in ("--set", item)]
    assert main([*args, *sets]) == 0
    assert "trained to step 2" in capsys.readouterr().err
    rows = read_metrics(tmp_path)
    losses = [float(r["value"]) for r in rows if r["name"] == "loss"]
    assert len(losses) == 2
    assert all(math.isfinite(v) for v in losses)
    assert {r["name"] for r in rows if r["split"] == "val"} == {"largest", "smallest", "middle"}
    assert (tmp_path / "train" / "stage.json").exists()
    assert (tmp_path / "config.yaml").exists()
    space = json.loads((tmp_path / "train" / "supernet" / "space.json").read_text())
    assert space["num_layers"] == 6
    assert main([*args, *sets, "--set", "train.steps=3"]) == 2  # steps differ from the checkpoint
    assert "train.steps was 2, now 3" in capsys.readouterr().err


def test_before_step_hook_may_replace_parameters(tmp_path):
    """The seam for ELM dynamic modules: a hook swaps a parameter; the new one is trained."""
    calls: list[int] = []
    swapped: dict[str, torch.Tensor] = {}

    def hook(step, model, strategy, optimizer):
        calls.append(step)
        if step != 2:
            return False
        old = model.out_bias
        new = nn.Parameter(old.detach() + 1.0)
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        optimizer.state.pop(old, None)
        model.out_bias = new
        swapped["start"] = new.detach().clone()
        return True

    model = ToyElastic()
    train_supernet(
        model,
        make_strategy("standard", ToySpace()),
        CombinedLoss([{"name": "mlm"}]),
        toy_data(8),
        settings=settings(steps=4, before_step=hook),
        run_dir=tmp_path,
    )
    assert calls == [0, 1, 2, 3]
    assert not torch.equal(model.out_bias.detach(), swapped["start"])
