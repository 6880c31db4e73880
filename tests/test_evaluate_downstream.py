"""Downstream evaluation: metrics by hand, seeded fine-tuning, decoders, the stage and the report table."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.config import Config
from elastic_lm.config.schema import EvalTask, EvaluateSection
from elastic_lm.errors import DataError
from elastic_lm.evaluate.downstream import (
    FineTuneBudget,
    ModelEntry,
    classification_metrics,
    evaluate_decoder,
    evaluate_encoder,
    exported_models,
    folder_params,
    greedy_tokens,
    model_kind,
)
from elastic_lm.pipeline.rundir import RunDirectory
from elastic_lm.pipeline.stages import evaluate_stage

# ------------------------------------------------------------------------------------------- fixtures


def _tiny_bert(folder: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_llama(folder: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _sentiment_csv(path: Path, n: int = 240) -> Path:
    """A learnable rule: 'good' or 'liked' -> pos, 'bad' or 'hated' -> neg; the rest is noise."""
    rng = random.Random(0)
    filler = ["the", "cat", "dog", "movie", "film", "was", "is", "very", "it", "a", "on", "mat"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            positive = i % 2 == 0
            cue = rng.choice(["good", "liked"] if positive else ["bad", "hated"])
            words = rng.sample(filler, 5)
            words.insert(rng.randrange(6), cue)
            writer.writerow([" ".join(words), "pos" if positive else "neg"])
    return path


def _corpus(path: Path) -> Path:
    rng = random.Random(1)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "was", "very", "good", "and", "it"]
    path.write_text("\n".join(" ".join(rng.choices(words, k=12)) + " ." for _ in range(120)))
    return path


def _task(csv_path: Path) -> tuple[str, object]:
    task = EvalTask(source=str(csv_path), name="cue")
    return task.display_name, task.data_config(max_length=16, max_examples=None)


BUDGET = FineTuneBudget(steps=40, batch_size=16, learning_rate=3e-3, seed=0, device="cpu")


# -------------------------------------------------------------------------------------------- metrics


def test_binary_metrics_hand_computed() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    preds = [1, 0, 1, 1, 0, 0, 0, 1]
    # tp=3, fp=1, fn=1 -> F1 = 6 / 8; 6 of 8 correct
    assert classification_metrics(preds, labels, 2) == {"accuracy": 0.75, "f1": 0.75}
    # never predicting the positive class: accuracy of the majority, F1 0 (not NaN)
    assert classification_metrics([0, 0, 0, 0], [0, 0, 0, 1], 2) == {"accuracy": 0.75, "f1": 0.0}


def test_macro_f1_hand_computed_counts_absent_classes_as_zero() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    # class 0: tp1 fp1 fn1 -> 1/2; class 1: tp2 fp1 fn0 -> 4/5; class 2: tp1 fp0 fn1 -> 2/3
    out = classification_metrics(preds, labels, 3)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # a fourth declared class nobody predicts or has lowers the macro mean
    assert classification_metrics(preds, labels, 4)["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 4)


# ---------------------------------------------------------------------------------------------- models


def test_model_kind_and_params(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    bert = _tiny_bert(tmp_path / "bert", tiny_tokenizer)
    llama = _tiny_llama(tmp_path / "llama", tiny_tokenizer)
    assert model_kind(bert) == "encoder"
    assert model_kind(llama) == "decoder"
    model = LlamaForCausalLM.from_pretrained(llama)
    assert folder_params(llama) == sum(p.numel() for p in model.parameters())


def test_fine_tuning_is_seeded_and_learns_the_rule(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, isolated_cache: Path
) -> None:
    entry = ModelEntry("tiny", _tiny_bert(tmp_path / "bert", tiny_tokenizer))
    tasks = [_task(_sentiment_csv(tmp_path / "cue.csv"))]
    first = evaluate_encoder(entry, tasks, BUDGET, tmp_path / "work")
    second = evaluate_encoder(entry, tasks, BUDGET, tmp_path / "work")
    assert first.tasks == second.tasks  # same model, same seed -> identical metrics
    score = first.tasks["cue"]
    assert score.test_examples == 24
    assert score.num_labels == 2
    assert score.f1_average == "binary"
    assert score.accuracy >= 0.9  # the cue word is learnable in 40 steps
    assert first.average == {"accuracy": score.accuracy, "f1": score.f1}
    assert not (tmp_path / "work" / "tiny").exists() or not any((tmp_path / "work" / "tiny").iterdir())


def test_decoder_perplexity_and_samples(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, isolated_cache: Path
) -> None:
    folder = _tiny_llama(tmp_path / "llama", tiny_tokenizer)
    corpus = Config().data.model_copy(update={"source": str(_corpus(tmp_path / "c.txt")), "max_length": 16})
    result = evaluate_decoder(ModelEntry("llama", folder), corpus, ["the cat"], 5, device="cpu")
    assert math.isfinite(result.perplexity)
    assert result.perplexity > 1.0  # perplexity of a real distribution
    assert result.perplexity < 10 * len(tiny_tokenizer)  # random weights: near the vocabulary size
    assert result.tokens > 0
    assert result.tokens % 15 == 0
    assert result.samples[0]["prompt"] == "the cat"
    assert result.samples[0]["completion"].strip()
    # the cache-free loop (for elastic-lm's own class) picks the tokens generate() picks
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    ids = tiny_tokenizer("the cat", return_tensors="pt")["input_ids"]
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    assert greedy_tokens(model, ids, 5, None).tolist() == expected[0, ids.shape[1] :].tolist()


# ------------------------------------------------------------------------------------ stage and report


def _run_dir(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    run = tmp_path / "run"
    _tiny_bert(run / "export" / "trial-3", tokenizer)
    _tiny_llama(run / "export" / "trial-5", tokenizer)
    index = [
        {"name": "trial-3", "path": "export/trial-3", "metrics": {"params": 1.0}, "format": "stock"},
        {"name": "trial-5", "path": "export/trial-5", "metrics": {"params": 2.0}, "format": "stock"},
    ]
    (run / "export" / "index.json").write_text(json.dumps(index))
    return run


def _config(tmp_path: Path, run: Path) -> Config:
    return Config(
        run_dir=run,
        device="cpu",
        data={"source": str(_corpus(tmp_path / "c.txt")), "task": "clm"},
        evaluate=EvaluateSection(
            tasks=[EvalTask(source=str(_sentiment_csv(tmp_path / "cue.csv")), name="cue")],
            steps=10,
            batch_size=16,
            learning_rate=3e-3,
            max_length=16,
            prompts=["the dog"],
            max_new_tokens=3,
            embedding={"enabled": False},  # tests/test_evaluate_embedding.py covers that half
        ),
    )


def test_stage_writes_json_and_csv_and_the_report_shows_them(
    tmp_path: Path,
    tiny_tokenizer: PreTrainedTokenizerBase,
    isolated_cache: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    monkeypatch.setenv("ELASTIC_LM_PROGRESS_SECONDS", "0")  # off a terminal: a line per job
    caplog.set_level(logging.INFO, logger="elastic_lm.progress")
    run = _run_dir(tmp_path, tiny_tokenizer)
    outputs = evaluate_stage(_config(tmp_path, run), RunDirectory(run))
    assert outputs["encoders"] == 1
    assert outputs["decoders"] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "elastic_lm.progress"]
    assert lines[0].startswith("evaluate: 1/2 jobs (50%)")  # trial-3 fine-tuned on 'cue'
    assert "model=trial-3" in lines[0]
    assert lines[-1].startswith("evaluate: 2/2 jobs (100%)")  # then trial-5's perplexity
    assert "model=trial-5" in lines[-1]
    data = json.loads((run / "evaluate" / "downstream.json").read_text())
    assert data["tasks"] == ["cue"]
    assert data["settings"]["steps"] == 10
    (enc,) = data["encoders"]
    assert enc["name"] == "trial-3"
    assert enc["params"] == folder_params(run / "export" / "trial-3")
    assert enc["average"]["accuracy"] == enc["tasks"]["cue"]["accuracy"]
    (dec,) = data["decoders"]
    assert dec["name"] == "trial-5"
    assert math.isfinite(dec["perplexity"])
    assert dec["samples"][0]["prompt"] == "the dog"
    with (run / "evaluate" / "downstream.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["trial-3", "trial-5"]
    assert float(rows[0]["cue/accuracy"]) == pytest.approx(enc["tasks"]["cue"]["accuracy"], abs=1e-6)
    assert float(rows[1]["perplexity"]) == pytest.approx(dec["perplexity"], rel=1e-6)

    from elastic_lm.report import write_report

    (run / "search").mkdir()
    (run / "search" / "trials.json").write_text(json.dumps([{"number": 0, "metrics": {"val_loss": 1.0}}]))
    (run / "search" / "summary.json").write_text(json.dumps({"objectives": [{"name": "val_loss"}]}))
    page = write_report(run).read_text()
    assert "<h2>Downstream evaluation</h2>" in page
    acc = enc["tasks"]["cue"]["accuracy"]
    assert "<td>trial-3</td>" in page
    assert f"{acc:.4f} / " in page
    assert "cue acc / F1" in page
    assert "<td>trial-5</td>" in page
    assert "<b>the dog</b>" in page


def test_report_without_downstream_has_no_section(tmp_path: Path) -> None:
    from elastic_lm.report import write_report

    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "trials.json").write_text(
        json.dumps([{"number": 0, "metrics": {"val_loss": 1.0}}])
    )
    (tmp_path / "search" / "summary.json").write_text(json.dumps({"objectives": [{"name": "val_loss"}]}))
    assert "Downstream" not in write_report(tmp_path).read_text()


def test_missing_index_is_one_line_naming_export(tmp_path: Path) -> None:
    config = Config(run_dir=tmp_path)
    with pytest.raises(
        DataError, match=r"export/index.json is missing; .*'elastic-lm export .* --pareto'"
    ) as info:
        evaluate_stage(config, RunDirectory(tmp_path))
    assert "\n" not in str(info.value)


def test_disabled_stage_writes_nothing(tmp_path: Path) -> None:
    config = Config(run_dir=tmp_path, evaluate={"enabled": False})
    assert evaluate_stage(config, RunDirectory(tmp_path)) == {"downstream": None}
    assert not (tmp_path / "evaluate").exists()


def test_max_models_zero_fine_tunes_nothing_and_clears_stale_tables(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase
) -> None:
    """The quick budget's setting: no fine-tuning; tables of an earlier setting must not linger."""
    run = _run_dir(tmp_path, tiny_tokenizer)
    config = _config(tmp_path, run)
    section = EvaluateSection.model_validate(config.evaluate.model_dump() | {"max_models": 0})
    config = config.model_copy(update={"evaluate": section})
    (run / "evaluate").mkdir()
    for name in ("downstream.json", "downstream.csv"):
        (run / "evaluate" / name).write_text("from an earlier setting")
    outputs = evaluate_stage(config, RunDirectory(run))
    assert outputs["downstream"] is None
    assert outputs["fine_tuning"].startswith("none (evaluate.max_models 0")
    assert sorted(p.name for p in (run / "evaluate").iterdir()) == []
    with pytest.raises(ValueError, match="max_models"):
        EvaluateSection(max_models=-1)


def test_pareto_filter_and_max_models(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    run = _run_dir(tmp_path, tiny_tokenizer)
    assert [e.name for e in exported_models(run, "all", 1)] == ["trial-3"]
    (run / "search").mkdir()
    arch = Architecture(hidden=32, layers=(LayerArch("bert", heads=2, ffn=64),)).to_dict()
    trials = [
        {"number": 3, "architecture": arch, "metrics": {"val_loss": 2.0, "params": 1.0}},
        {"number": 5, "architecture": arch, "metrics": {"val_loss": 2.5, "params": 2.0}},  # dominated
    ]
    (run / "search" / "trials.json").write_text(json.dumps(trials))
    summary = {"objectives": [{"name": "val_loss"}, {"name": "params"}]}
    (run / "search" / "summary.json").write_text(json.dumps(summary))
    assert [e.name for e in exported_models(run, "pareto")] == ["trial-3"]


def test_config_section_defaults_and_task_budget() -> None:
    section = Config().evaluate
    assert [t.display_name for t in section.tasks] == ["movie-sentiment", "sms-spam"]
    data = section.tasks[0].data_config(section.max_length, section.max_examples)
    assert (data.task, data.max_length, data.max_examples) == ("classification", 64, 1024)
    own = EvalTask(source="data/reviews.csv", max_length=32, label_column="stars")
    assert own.display_name == "reviews"
    assert own.data_config(64, None).max_length == 32
    with pytest.raises(ValueError, match="stepz"):
        EvaluateSection(stepz=3)  # type: ignore[call-arg]


def test_elastic_lm_own_classes_fine_tune_and_decode(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, isolated_cache: Path
) -> None:
    """Exports saved as elastic-lm's own class (separable conv encoder, Llama-style decoder) load too."""
    from export_cases import supernet

    encoder = tmp_path / "nasbert"
    supernet("nasbert", "masked-lm").save_pretrained(encoder)
    tiny_tokenizer.save_pretrained(encoder)
    tasks = [_task(_sentiment_csv(tmp_path / "cue.csv", n=80))]
    budget = FineTuneBudget(steps=3, batch_size=8, learning_rate=1e-3, seed=1, device="cpu")
    first = evaluate_encoder(ModelEntry("nasbert", encoder), tasks, budget, tmp_path / "work")
    again = evaluate_encoder(ModelEntry("nasbert", encoder), tasks, budget, tmp_path / "work")
    assert first.tasks == again.tasks
    assert first.tasks["cue"].test_examples == 8

    decoder = tmp_path / "llama"
    model = supernet("llama", "causal-lm")
    model.save_pretrained(decoder)
    tiny_tokenizer.save_pretrained(decoder)
    assert model_kind(decoder) == "decoder"
    corpus = Config().data.model_copy(update={"source": str(_corpus(tmp_path / "c.txt")), "max_length": 16})
    result = evaluate_decoder(ModelEntry("llama", decoder), corpus, ["the cat"], 4, device="cpu")
    assert math.isfinite(result.perplexity)
    ids = tiny_tokenizer("the cat", return_tensors="pt")["input_ids"]
    expected = tiny_tokenizer.decode(greedy_tokens(model, ids, 4, None), skip_special_tokens=True)
    assert result.samples[0]["completion"] == expected


def test_cli_missing_index_exits_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from elastic_lm.cli.main import main

    assert main(["evaluate", str(tmp_path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("elastic-lm evaluate: error: ")
    assert f"'elastic-lm export {tmp_path} --pareto'" in lines[0]


def test_unknown_reference_names_the_field() -> None:
    from elastic_lm.errors import ConfigError
    from elastic_lm.evaluate.downstream import reference_models

    with pytest.raises(ConfigError, match=r"^evaluate.references entry 'no-such-model' is neither"):
        reference_models(["no-such-model"])


def test_cli_evaluates_a_run_dir(
    tmp_path: Path,
    tiny_tokenizer: PreTrainedTokenizerBase,
    isolated_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from elastic_lm.cli.main import main

    run = _run_dir(tmp_path, tiny_tokenizer)
    corpus, table = _corpus(tmp_path / "c.txt"), _sentiment_csv(tmp_path / "cue.csv")
    overrides = [
        "device=cpu",
        f"data.source={corpus}",
        f"evaluate.tasks=[{{source: {table}, name: cue}}]",
        "evaluate.steps=2",
        "evaluate.max_length=16",
        "evaluate.max_new_tokens=2",
    ]
    assert main(["evaluate", str(run), *(a for o in overrides for a in ("--set", o))]) == 0
    out = capsys.readouterr().out
    assert "trial-3: " in out
    assert "average accuracy" in out
    assert "trial-5: " in out
    assert "perplexity" in out
    assert (run / "evaluate" / "downstream.csv").is_file()
