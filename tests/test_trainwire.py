"""Super-network training features wired from the config: ELM dynamic modules (with resume),
NAS-BERT block-wise distillation and progressive shrinking (tiny real elastic models, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from elastic_lm.config import load_config
from elastic_lm.errors import ConfigError
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.train.build import build_training, train_from_config
from elastic_lm.train.checkpoint import list_checkpoints
from elastic_lm.train.losses import blockwise_loss
from test_dynamic import VOCAB, tiny_model, tiny_space

SEQ = 12


def rows(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """MLM rows: ids, a padded tail on some, labels at every third real position."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in range(n):
        ids = torch.randint(5, VOCAB, (SEQ,), generator=g)
        mask = torch.ones(SEQ, dtype=torch.long)
        if r % 3 == 0:
            mask[9:] = 0
        labels = torch.full((SEQ,), -100)
        labels[1:9:3] = ids[1:9:3]
        ids = ids.clone()
        ids[1:9:3] = 4  # the mask token
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def config(run_dir: Path, *sets: str):
    base = [f"run_dir={run_dir}", "device=cpu", "seed=1", "train.batch_size=4", "train.learning_rate=1e-3"]
    return load_config(None, [*base, *sets])


DYNAMIC = (
    "train.steps=5",
    "train.checkpoint_every=3",
    "train.keep_checkpoints=5",
    "train.strategy_options={n_random: 1}",
    "train.dynamic={enabled: true, start: 2, every: 100, increment: 4, saturation: 0.5, "
    "prune_heads: false, probe_batches: 1}",
)


def _ffn_widths(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: v.shape[0] for k, v in weights.items() if k.endswith("ffn.up.weight")}


def test_dynamic_modules_grow_during_training_and_resume_exactly(tmp_path: Path) -> None:
    space = tiny_space()
    parts = dict(space=space, train_data=rows(16, 0), val_data=rows(8, 1), progress=False)
    result = train_from_config(config(tmp_path / "a", *DYNAMIC), model=tiny_model(space), **parts)
    ckpts = list_checkpoints(tmp_path / "a" / "train" / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000003", "step-00000005"]

    # grown at step 2: the step-3 checkpoint has wider FFNs, its config and space say so
    widths = _ffn_widths(load_file(ckpts[0] / "model.safetensors"))
    assert set(widths.values()) == {12}  # 8 + increment 4, every layer (a global ffn dimension)
    saved = ElasticConfig.from_pretrained(str(ckpts[0]))
    assert saved.layer_sizes is not None
    assert saved.layer_sizes[0]["bert"]["intermediate_size"] == 12
    state = json.loads((ckpts[0] / "dynamic.json").read_text())
    assert state["last_step"] == 2
    assert {c["what"] for c in state["history"]} == {"widen-ffn"}
    assert result.space.largest().layers[0].ffn == 12
    log = (tmp_path / "a" / "train" / "dynamic.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log] == [2, 2]

    # resume a copy from its step-3 checkpoint: the model is rebuilt wide before loading
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "train" / "checkpoints" / "step-00000005")
    resumed = train_from_config(
        config(tmp_path / "b", *DYNAMIC), model=tiny_model(space), resume=True, **parts
    )
    assert resumed.start_step == 3
    assert resumed.model is not None
    assert resumed.model is not result.model
    expected = dict(result.model.state_dict())
    got = dict(resumed.model.state_dict())
    assert set(got) == set(expected)
    for name, value in got.items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)
    assert resumed.space.to_dict() == result.space.to_dict()


def test_dynamic_needs_known_settings(tmp_path: Path) -> None:
    space = tiny_space()
    bad = config(tmp_path, "train.dynamic={enabled: true, evry: 3}")
    with pytest.raises(ConfigError, match=r"train\.dynamic: .*evry"):
        build_training(bad, model=tiny_model(space), space=space, train_data=rows(4, 0), val_data=rows(4, 1))


# --- block-wise distillation -----------------------------------------------------------------


def _teacher(layers: int = 4, seed: int = 5):
    cfg = ElasticConfig(
        vocab_size=VOCAB,
        max_position_embeddings=16,
        hidden_size=16,
        num_layers=layers,
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=8,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return build_model(cfg).eval().requires_grad_(False)


def test_blockwise_gradients_of_a_layer_come_only_from_its_block() -> None:
    space = tiny_space()
    student, teacher = tiny_model(space), _teacher()
    batch = torch.utils.data.default_collate(rows(4, 3))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    states = teacher(**inputs, output_hidden_states=True).hidden_states
    assert len(states) == 5

    def layer(i, x, m):
        return student.model.forward_layer(i, x, m)

    _, parts = blockwise_loss(layer, states, batch["attention_mask"], n_student_blocks=2)
    for i, part in enumerate(parts):
        student.zero_grad(set_to_none=True)
        part.backward()
        for name, p in student.named_parameters():
            touched = p.grad is not None and bool(p.grad.abs().sum() > 0)
            assert touched == name.startswith(f"model.layers.{i}."), name


def test_blockwise_loss_from_the_config_trains_each_block(tmp_path: Path) -> None:
    space = tiny_space()
    teacher = _teacher()
    cfg = config(
        tmp_path,
        "train.steps=6",
        "train.learning_rate=1e-2",
        "train.strategy=sandwich",
        "train.strategy_options={n_random: 1, target: teacher}",
        "train.losses=[{name: blockwise}]",
    )
    result = train_from_config(
        cfg, model=tiny_model(space), space=space, teacher=teacher, train_data=rows(16, 0), progress=False
    )
    assert result.losses[-1] < result.losses[0]
    assert all(torch.isfinite(torch.tensor(result.losses)))

    no_teacher = config(tmp_path / "x", "train.losses=[{name: blockwise}]")
    with pytest.raises(ConfigError, match=r"teacher\.source"):
        build_training(no_teacher, model=tiny_model(space), space=space, train_data=rows(4, 0))


# --- progressive shrinking ---------------------------------------------------------------------


def test_progressive_shrinking_from_the_config_shrinks_at_the_set_step(tmp_path: Path) -> None:
    space = tiny_space()
    cfg = config(
        tmp_path,
        "train.steps=3",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=3",
        "train.strategy=progressive-shrinking",
        "train.strategy_options={shrink_at: [2], n_candidates: 8, n_bins: 2, score_batches: 1}",
    )
    parts = build_training(
        cfg, model=tiny_model(space), space=space, train_data=rows(16, 0), val_data=rows(8, 1), progress=False
    )
    before = [len(b) for b in parts.strategy.bins]
    assert before == [5, 5]
    sizes = [[parts.strategy.size_fn(a) for a in b] for b in parts.strategy.bins]
    assert max(sizes[0]) <= min(sizes[1])  # bins by analytic parameter count
    from elastic_lm.train.loop import train_supernet

    train_supernet(
        parts.model,
        parts.strategy,
        parts.losses,
        parts.train_data,
        val_data=parts.val_data,
        settings=parts.settings,
        run_dir=parts.run_dir,
    )
    pools = []
    for ckpt in list_checkpoints(tmp_path / "train" / "checkpoints"):
        state = json.loads((ckpt / "strategy.json").read_text())
        pools.append(([len(b) for b in state["bins"]], state["done"]))
    # after steps 1 and 2 (the shrink runs when step index 2 starts), then after step 3
    assert pools == [([5, 5], []), ([5, 5], []), ([3, 3], [2])]


# --- MLM logits at the masked positions only ---------------------------------------------------


def test_logits_at_masked_positions_equal_the_full_logits_there() -> None:
    space = tiny_space()
    model = tiny_model(space).eval()
    batch = torch.utils.data.default_collate(rows(4, 3))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    where = batch["labels"] != -100
    full = model(**inputs, labels=batch["labels"])
    part = model(**inputs, labels=batch["labels"], logits_positions=where)
    assert part.logits.shape == (int(where.sum()), VOCAB)
    torch.testing.assert_close(part.logits, full.logits[where], atol=1e-5, rtol=0)
    torch.testing.assert_close(part.loss, full.loss, atol=1e-5, rtol=0)


def test_masked_logits_training_follows_the_full_logit_run(tmp_path: Path) -> None:
    space = tiny_space()
    losses = {}
    for flag in ("true", "false"):
        cfg = config(tmp_path / flag, "train.steps=3", f"train.masked_logits={flag}")
        result = train_from_config(
            cfg,
            model=tiny_model(space),
            space=space,
            train_data=rows(16, 0),
            val_data=rows(4, 1),
            progress=False,
        )
        losses[flag] = [*result.losses, *result.val.values()]
    assert losses["true"] == pytest.approx(losses["false"], abs=1e-4)
    assert len(losses["true"]) == 6  # 3 steps, 3 evaluation architectures


def test_sizing_options_belong_to_sized_strategies(tmp_path: Path) -> None:
    space = tiny_space()
    bad = config(tmp_path, "train.strategy=sandwich", "train.strategy_options={size: flops}")
    with pytest.raises(ConfigError, match=r"strategy_options \['size'\]"):
        build_training(bad, model=tiny_model(space), space=space, train_data=rows(4, 0), val_data=rows(4, 1))


def test_masked_logits_with_label_position_distillation_follow_the_full_logit_run(tmp_path: Path) -> None:
    """logit-kd at the MLM-masked positions lets student and teacher project only those positions."""
    space = tiny_space()
    losses = {}
    restricted: dict[str, list[bool]] = {"true": [], "false": []}
    for flag in ("true", "false"):
        cfg = config(
            tmp_path / flag,
            "train.steps=3",
            f"train.masked_logits={flag}",
            "train.strategy_options={n_random: 1, target: teacher}",
            "train.losses=[{name: mlm}, {name: logit-kd, options: {positions: labels, temperature: 2.0}}]",
        )
        torch.manual_seed(5)
        teacher = tiny_model(space).eval().requires_grad_(False)
        teacher.register_forward_pre_hook(
            lambda _m, _a, kw, flag=flag: restricted[flag].append("logits_positions" in kw), with_kwargs=True
        )
        result = train_from_config(
            cfg,
            model=tiny_model(space),
            space=space,
            teacher=teacher,
            train_data=rows(16, 0),
            val_data=rows(4, 1),
            progress=False,
        )
        losses[flag] = [*result.losses, *result.val.values()]
    assert losses["true"] == pytest.approx(losses["false"], abs=1e-4)
    assert losses["true"][0] > 0
    assert restricted["true"]
    assert all(restricted["true"])  # the teacher projected only the masked positions
    assert not any(restricted["false"])


def test_loss_projections_are_built_from_the_job_seed(tmp_path: Path) -> None:
    """Two runs of one config must start their learned loss projections identically."""
    from elastic_lm.train.build import losses_from_config

    cfg = config(tmp_path, "train.losses=[{name: relational}, {name: hidden}]")
    first = losses_from_config(cfg, n_layers=2, student_width=16, teacher_width=32).state_dict()
    torch.randn(100)  # whatever else drew from the global generator in between
    second = losses_from_config(cfg, n_layers=2, student_width=16, teacher_width=32).state_dict()
    assert first
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = losses_from_config(
        config(tmp_path, "seed=7", "train.losses=[{name: relational}]"),
        n_layers=2,
        student_width=16,
        teacher_width=32,
    ).state_dict()
    assert not all(torch.equal(first[name], other[name]) for name in other)
