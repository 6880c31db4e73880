"""The decoder recipe on a tiny random Llama: reorder, train, search, export, heal (with baselines), and
``elastic-lm prune`` on a causal LM writing stock folders that transformers loads alone."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from elastic_lm.config import Config

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "was", "very", "good", "and", "it"]


def tiny_llama(folder: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def corpus(path: Path) -> Path:
    rng = random.Random(1)
    path.write_text("\n".join(" ".join(rng.choices(WORDS, k=12)) + " ." for _ in range(160)))
    return path


def tiny_config(tmp_path: Path, tokenizer: PreTrainedTokenizerBase, **heal: object) -> Config:
    source = str(tiny_llama(tmp_path / "llama", tokenizer))
    return Config(
        run_dir=tmp_path / "run",
        pipeline="decoder",
        model={"source": source, "task": "causal-lm", "decoder_importance": ["ffn", "heads", "hidden"],
               "importance_batches": 2},
        teacher={"source": source},
        space={"preset": "llama", "options": {"layers": 4, "hidden": 32, "heads": 4, "kv_heads": 2,
                                              "ffn": 64, "ffn_step": 16, "hidden_choices": [16, 24, 32],
                                              "uniform": True}},
        data={"source": str(corpus(tmp_path / "corpus.txt")), "task": "clm", "max_length": 16,
              "validation_ratio": 0.1, "test_ratio": 0.1},
        train={"steps": 3, "batch_size": 4, "checkpoint_every": 3, "eval_every": 3, "eval_batches": 1,
               "losses": [{"name": "clm"}, {"name": "logit-kd"}],
               "strategy_options": {"n_random": 1, "target": "teacher"}},
        search={"trials": 6, "eval_batches": 2, "latency_repeats": 1, "decode_prompt_len": 4,
                "decode_new_tokens": 3,
                "objectives": [{"name": "perplexity"}, {"name": "params_nonembedding"}]},
        export={"max_models": 2},
        evaluate={"prompts": ["the cat"], "max_new_tokens": 3},
        heal={"tokens": 320, "batch_size": 4, "learning_rate": 3e-3, "eval_batches": 2, "top_k": 8,
              "timing_repeats": 2, **heal},
    )  # fmt: skip


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_heal_lowers_the_kd_loss(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, precision: str
) -> None:
    from elastic_lm.data.prepare import prepare_data
    from elastic_lm.heal import HealBudget, heal_model, kd_divergence
    from elastic_lm.train.build import fixed_batches

    config = tiny_config(tmp_path, tiny_tokenizer)
    teacher = LlamaForCausalLM.from_pretrained(config.model.source).eval()
    with torch.no_grad():  # a peaked teacher (random weights give near-uniform logits)
        teacher.model.embed_tokens.weight.mul_(20.0)
    layers = teacher.config.num_hidden_layers
    student = LlamaForCausalLM.from_pretrained(config.model.source, num_hidden_layers=layers - 2)
    prepared = prepare_data(config.data, tiny_tokenizer)
    held_out = fixed_batches(prepared.splits["test"], prepared.collator, 2, 4, 0)
    before = kd_divergence(student, teacher, held_out)
    budget = HealBudget(tokens=640, batch_size=4, learning_rate=3e-3, top_k=8, precision=precision)
    spec = [{"name": "topk-kd"}, {"name": "clm", "weight": 0.1}]
    result = heal_model(student, teacher, prepared.splits["train"], prepared.collator, budget, spec)
    assert result.tokens >= 640
    assert result.steps == result.tokens // 64
    after = kd_divergence(student, teacher, held_out)
    assert before > 0.0
    assert after < 0.8 * before
    assert all(p.dtype == torch.float32 for p in student.parameters())  # autocast, not a cast


def test_heal_in_bf16_rounds_the_same_step(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    """train.precision=bf16 reaches the healing loop: one step from the same weights gives a loss
    that differs from fp32 by bf16 rounding only."""
    import copy

    from elastic_lm.data.prepare import prepare_data
    from elastic_lm.heal import HealBudget, heal_model

    config = tiny_config(tmp_path, tiny_tokenizer)
    teacher = LlamaForCausalLM.from_pretrained(config.model.source).eval()
    student = LlamaForCausalLM.from_pretrained(config.model.source, num_hidden_layers=1)
    prepared = prepare_data(config.data, tiny_tokenizer)
    losses = {}
    for precision in ("fp32", "bf16"):
        budget = HealBudget(tokens=1, batch_size=4, top_k=8, precision=precision)
        result = heal_model(copy.deepcopy(student), teacher, prepared.splits["train"], prepared.collator,
                            budget, [{"name": "topk-kd"}])  # fmt: skip
        losses[precision] = result.losses[0]
    assert losses["fp32"] != losses["bf16"]
    assert abs(losses["fp32"] - losses["bf16"]) < 0.05 * abs(losses["fp32"])


def test_decoder_recipe_end_to_end(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    from transformers import AutoModelForCausalLM

    from elastic_lm.pipeline.run import run_pipeline

    config = tiny_config(tmp_path, tiny_tokenizer, baselines=True, targets=[0.75])
    outcomes = run_pipeline(config, log=None, progress=False)
    stages = ["teacher", "train", "profile", "search", "export", "heal", "report"]
    assert [o.stage for o in outcomes] == stages
    results = json.loads((config.run_dir / "heal" / "results.json").read_text())
    kinds = sorted(m["kind"] for m in results["members"])
    assert (kinds.count("teacher"), kinds.count("layer-drop"), kinds.count("uniform-width")) == (1, 1, 1)
    teacher_params = results["teacher_params_nonembedding"]
    # every healed model (3 + the teacher) was timed in the same round-robin pass
    assert (results["timing"]["models"], results["timing"]["rounds"]) == (4, 2)
    assert len(results["timing"]["loadavg_before"]) == 3
    for m in results["members"]:
        assert m["params_nonembedding"] <= 0.75 * teacher_params or m["kind"] == "teacher"
        assert m["after"]["perplexity"] > 1.0
        assert math.isfinite(m["decode_ms_per_token"])  # measured: its size is the machine's
        assert m["heal"]["tokens"] >= 320
        assert m["after"]["perplexity"] != m["before"]["perplexity"]
        healed = AutoModelForCausalLM.from_pretrained(config.run_dir / m["path"])
        n = sum(p.numel() for p in healed.parameters()) - healed.get_input_embeddings().weight.numel()
        assert n == m["params_nonembedding"]
    # layer dropping keeps the highest-scoring layers: fewer layers than the teacher
    drop = next(m for m in results["members"] if m["kind"] == "layer-drop")
    folder = config.run_dir / drop["path"]
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] < 4


def test_prune_on_a_causal_lm_writes_stock_folders(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    import yaml

    from elastic_lm.cli.main import main

    config = tiny_config(tmp_path, tiny_tokenizer, teacher=False)
    # even head counts only: every width (16, 24, 32) is a multiple of them, as LlamaConfig requires
    config.space.options["head_step"] = 2
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"pipeline"})))
    assert main(["prune", str(config_file)]) == 0
    assert "perplexity" in capsys.readouterr().out
    results = json.loads((config.run_dir / "heal" / "results.json").read_text())
    assert results["members"]
    assert all(m["kind"] == "ours" for m in results["members"])
    for m in results["members"]:  # uniform, even heads: every member is stock, loads without elastic-lm
        code = (
            "import sys; sys.modules['elastic_lm'] = None\n"
            "from transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(config.run_dir / m['path'])!r})\n"
            "print(type(m).__name__)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "LlamaForCausalLM"


def test_search_seeds_keep_the_best_layers_and_spread_over_size() -> None:
    from elastic_lm.metrics.size import count_params
    from elastic_lm.model import ElasticConfig, build_model
    from elastic_lm.pipeline.recipes.decoder_seeds import seed_architectures
    from elastic_lm.space import preset

    space = preset("llama", layers=4, hidden=32, heads=4, kv_heads=2, ffn=64, ffn_step=16, uniform=True)
    model = build_model(ElasticConfig.from_space(space, vocab_size=28, task="causal-lm"))
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7])  # layer 1 matters least, then layer 2
    seeds = seed_architectures(space, model, scores, n=6)
    assert len(seeds) == 6
    sizes = [count_params(model.config, a, False) for a in seeds]
    assert sizes == sorted(sizes)
    assert len(set(sizes)) == 6
    for arch in seeds:
        space.validate(arch)
        kept = [i for i, la in enumerate(arch.layers) if not la.is_identity]
        assert kept in ([0, 1, 2, 3], [0, 2, 3], [0, 3])  # dropped in order of the scores


def test_zero_train_steps_keep_the_source_model(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase
) -> None:
    """``train.steps: 0`` skips super-network training: the saved super-network is the reordered source,
    so its largest sub-network computes the source's logits (reordering is a permutation)."""
    from elastic_lm.export.supernet import load_supernet
    from elastic_lm.pipeline.run import run_pipeline

    config = tiny_config(tmp_path, tiny_tokenizer)
    config.train.steps = 0
    outcomes = run_pipeline(config, until="train", log=None, progress=False)
    assert [o.stage for o in outcomes] == ["teacher", "train"]
    saved = load_supernet(config.run_dir / "train" / "supernet")
    source = LlamaForCausalLM.from_pretrained(config.model.source).eval()
    ids = torch.tensor([[5, 7, 9, 11, 13, 15, 17, 19]])
    with torch.no_grad(), saved.model.eval().using(saved.space.largest()):
        elastic = saved.model(input_ids=ids).logits
    with torch.no_grad():
        expected = source(input_ids=ids).logits
    assert torch.allclose(elastic, expected, atol=1e-5)
    assert not list((config.run_dir / "train" / "checkpoints").glob("*"))  # no step was taken


def test_teacher_correction_distils_from_the_healed_teacher(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``heal.teacher_correction``: the teacher is healed first (from the source model), and the members
    then distil from that healed teacher, not from the source."""
    from safetensors.torch import load_file

    import elastic_lm.heal.run as heal_run
    from elastic_lm.pipeline.run import run_pipeline

    config = tiny_config(tmp_path, tiny_tokenizer, targets=[0.75], teacher_correction=True)
    config.train.steps = 0
    run_pipeline(config, until="export", log=None, progress=False)
    targets: list[torch.Tensor] = []
    real = heal_run.heal_model

    def spy(student: torch.nn.Module, teacher: torch.nn.Module, *args: object, **kwargs: object) -> object:
        targets.append(teacher.get_input_embeddings().weight.detach().clone())
        return real(student, teacher, *args, **kwargs)

    monkeypatch.setattr(heal_run, "heal_model", spy)
    heal_run.run_heal(config, config.run_dir, log=None)
    results = json.loads((config.run_dir / "heal" / "results.json").read_text())
    assert results["distilled_from"] == "heal/teacher"
    assert [m["kind"] for m in results["members"]] == ["ours", "teacher"]
    assert len(targets) == 2  # the teacher first, then the member
    healed = load_file(config.run_dir / "heal" / "teacher" / "model.safetensors")["model.embed_tokens.weight"]
    source = LlamaForCausalLM.from_pretrained(config.model.source).get_input_embeddings().weight
    assert not torch.allclose(healed, source)  # healing moved the teacher
    assert torch.allclose(targets[0], source)
    assert torch.equal(targets[1], healed)


def test_teacher_correction_needs_the_teacher_healed(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase
) -> None:
    """Refused when the config is read, before any stage runs."""
    from elastic_lm.config.loading import validate_config
    from elastic_lm.errors import ConfigError

    data = tiny_config(tmp_path, tiny_tokenizer).model_dump(mode="json")
    data["heal"].update(teacher=False, teacher_correction=True)
    with pytest.raises(ConfigError, match=r"teacher_correction needs heal\.teacher"):
        validate_config(data)
    data["heal"]["teacher"] = True
    assert validate_config(data).heal.teacher_correction
