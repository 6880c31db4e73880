"""``elastic-lm prune`` end to end on a tiny random BERT and a learnable synthetic task (seconds)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2Model

import elastic_lm.model  # noqa: F401  (elastic exports load through the Auto classes)
from elastic_lm.cli.main import main
from elastic_lm.config.loading import validate_config
from elastic_lm.prune import data as prune_data
from elastic_lm.prune import load_search_data, run_prune
from elastic_lm.prune.baselines import baseline_slug
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.vocab import kept_token_ids, prune_vocabulary_folder, token_counts
from prune_fixtures import FILLER, WORDS, prune_config, sentiment_rows, tiny_bert, write_csv


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full run (search on validation loss, baselines, vocabulary pruning), test reads recorded."""
    tmp = tmp_path_factory.mktemp("prune")
    raw = prune_config(tmp, prune__quality_objective="loss", prune__baselines=True)
    raw["prune"]["vocabulary"] = {"enabled": True}  # type: ignore[index]
    config = validate_config(raw)
    calls: list[dict[str, bool]] = []
    original = prune_data.load_test_rows
    run = Path(config.run_dir)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the test split was read before the final evaluation")

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append({s: (run / s / "stage.json").is_file() for s in ("train", "search")})
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp / "cache"))
        mp.setattr(prune_data, "load_test_rows", refuse)
        run_prune(config, until="search")  # fine-tune, reorder, train, search: test split never touched
        mp.setattr(prune_data, "load_test_rows", spy)
        result = run_prune(config)
        stamps = {
            s: json.loads((run / s / "stage.json").read_text())["finished_at"] for s in ("search", "export")
        }
        run_prune(config)  # everything done: nothing is redone
        again = {
            s: json.loads((run / s / "stage.json").read_text())["finished_at"] for s in ("search", "export")
        }
    return {"config": config, "result": result, "calls": calls, "run": run, "stamps": (stamps, again)}


def test_search_records_trials_and_summary_for_the_report(pruned: dict[str, Any]) -> None:
    run = pruned["run"]
    trials = json.loads((run / "search" / "trials.json").read_text())
    summary = json.loads((run / "search" / "summary.json").read_text())
    assert len(trials) == 6
    assert [o["name"] for o in summary["objectives"]] == ["params_nonembedding", "val_loss"]
    assert summary["pareto"]
    assert set(summary["pareto"]) <= {t["number"] for t in trials}
    for t in trials:
        assert 0.0 <= t["metrics"]["val_accuracy"] <= 1.0
        assert t["metrics"]["params"] > t["metrics"]["params_nonembedding"] > 0
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "index.html").is_file()


def test_fine_tuning_learns_the_rule(pruned: dict[str, Any]) -> None:
    assert pruned["result"].unpruned["test_accuracy"] >= 0.9


def test_exported_models_reproduce_the_recorded_validation_accuracy(pruned: dict[str, Any]) -> None:
    config, run = pruned["config"], pruned["run"]
    trials = {t["number"]: t for t in json.loads((run / "search" / "trials.json").read_text())}
    index = json.loads((run / "export" / "index.json").read_text())
    assert index
    for item in index:
        folder = run / item["path"]
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)  # the pruned vocabulary's tokenizer
        data = load_search_data(config.data, tokenizer, use_cache=False)
        batches = fixed_batches(data.validation, data.collator, config.search.eval_batch_size)
        got = evaluate_model(model, batches, "classification")
        recorded = trials[int(item["name"].split("-")[1])]["metrics"]
        assert got["accuracy"] == pytest.approx(recorded["val_accuracy"], abs=1e-6)
        assert got["loss"] == pytest.approx(recorded["val_loss"], abs=1e-4)
        card = json.loads((folder / "export.json").read_text())
        assert math.isfinite(card["metrics"]["latency_ms"])  # recorded; its size is the machine's
        assert card["metrics"]["params_before_vocabulary"] > card["metrics"]["params"]
        assert "test_accuracy" in card["metrics"]
        assert model.config.vocab_size < len(tokenizer.get_vocab()) + 1  # table matches tokenizer
        assert model.config.vocab_size == len(tokenizer.get_vocab())


def test_test_split_is_read_only_by_the_final_evaluation(pruned: dict[str, Any]) -> None:
    calls = pruned["calls"]
    assert len(calls) == 2  # Pareto set + unpruned once, baselines once
    assert all(c["search"] and c["train"] for c in calls)


def test_a_second_run_redoes_nothing(pruned: dict[str, Any]) -> None:
    before, after = pruned["stamps"]
    assert before == after


def test_baselines_are_points_with_the_same_metrics(pruned: dict[str, Any]) -> None:
    run = pruned["run"]
    points = {p["name"]: p["metrics"] for p in json.loads((run / "search" / "baselines.json").read_text())}
    assert set(points) == {"unpruned", "layer-drop k=1", "head-prune 4/8", "uniform x0.5"}
    full = points["unpruned"]["params_nonembedding"]
    for name, m in points.items():
        assert {"params", "params_nonembedding", "latency_ms", "val_loss", "test_accuracy"} <= set(m)
        assert 0.0 <= m["test_accuracy"] <= 1.0
        if name != "unpruned":
            assert m["params_nonembedding"] < full
    assert points["layer-drop k=1"]["params_nonembedding"] < 0.6 * full


def test_baseline_folders_are_found_after_the_run_directory_moved(
    pruned: dict[str, Any], tmp_path: Path
) -> None:
    run, config = pruned["run"], pruned["config"]
    recorded = json.loads((run / "search" / "baselines.json").read_text())
    slugs = {"unpruned", "layer-drop_k1", "head-prune_4of8", "uniform_x0.5"}
    assert {p["path"] for p in recorded} == {f"baselines/{s}" for s in slugs}  # relative to the run
    assert {f"baselines/{baseline_slug(p['name'])}" for p in recorded} == {p["path"] for p in recorded}
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    gone = tmp_path / "old-place"  # older runs wrote the path the run had then
    legacy = [{**p, "path": str(gone / p["path"])} for p in recorded]
    (moved / "search" / "baselines.json").write_text(json.dumps(legacy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
        result = run_prune(config.model_copy(update={"run_dir": str(moved)}))
    kept = json.loads((moved / "search" / "baselines.json").read_text())
    assert all(p["path"].startswith(str(gone)) for p in kept)  # found done, not redone
    assert {Path(p["path"]) for p in result.baselines} == {moved / "baselines" / s for s in slugs}
    assert all((Path(p["path"]) / "config.json").is_file() for p in result.baselines)


def test_vocabulary_pruning_keeps_outputs_on_kept_tokens(tmp_path: Path) -> None:
    folder = tiny_bert(tmp_path / "full", classifier=True)
    pruned = tmp_path / "pruned"
    shutil.copytree(folder, pruned)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["the good movie", "a bad plot", "it was fine acting"]
    rows = [dict(tokenizer(t)) for t in texts]

    class Data:
        train, validation = rows, rows[:1]

    counts = token_counts(rows)
    kept = kept_token_ids(tokenizer, counts)
    before, after = prune_vocabulary_folder(pruned, Data())
    assert after == before - (tokenizer.vocab_size - len(kept)) * 32
    full = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    small = AutoModelForSequenceClassification.from_pretrained(pruned).eval()
    small_tok = AutoTokenizer.from_pretrained(pruned)
    assert len(small_tok) == len(kept) == small.config.vocab_size
    for text in [*texts, "fine good the plot it"]:
        a, b = tokenizer(text, return_tensors="pt"), small_tok(text, return_tensors="pt")
        assert small_tok.convert_ids_to_tokens(b["input_ids"][0]) == tokenizer.convert_ids_to_tokens(
            a["input_ids"][0]
        )
        with torch.no_grad():
            torch.testing.assert_close(small(**b).logits, full(**a).logits, rtol=0, atol=1e-6)
    unknown = small_tok("the zebra")["input_ids"]
    assert small_tok.convert_ids_to_tokens(unknown) == ["[CLS]", "the", "[UNK]", "[SEP]"]


def _cli(tmp: Path, raw: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp / "prune.yaml"
    path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    code = main(["prune", str(path), "--no-progress"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # above it: progress bars of datasets
    assert last.startswith("elastic-lm prune: error: ")
    return code, last


def test_one_class_labels_are_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = prune_config(tmp_path)
    rows = [{**r, "label": "pos"} for r in sentiment_rows(40)]
    raw["data"]["source"] = str(write_csv(tmp_path / "one.csv", rows))  # type: ignore[index]
    code, err = _cli(tmp_path, raw, capsys)
    assert code == 2
    assert "one class ('pos')" in err
    assert "label_column" in err


def test_text_pair_on_single_text_data_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = prune_config(tmp_path, data__text_pair_column="hypothesis")
    code, err = _cli(tmp_path, raw, capsys)
    assert code == 2
    assert "'hypothesis'" in err
    assert "data.text_pair_column" in err


def test_a_decoder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gpt2 = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(gpt2)
    raw = prune_config(tmp_path, model__source=str(gpt2))
    code, err = _cli(tmp_path, raw, capsys)
    assert code == 2
    assert "model.source" in err
    assert "decoder" in err
    assert "encoder" in err


def test_text_pairs_run_end_to_end(tmp_path: Path) -> None:
    rows = [{**r, "pair": r["other"]} for r in sentiment_rows(120)]
    raw = prune_config(
        tmp_path,
        data__text_pair_column="pair",
        prune__finetune_steps=2,
        train__steps=2,
        train__eval_every=2,
        train__checkpoint_every=2,
        search__trials=3,
    )
    raw["data"]["source"] = str(write_csv(tmp_path / "pairs.csv", rows))  # type: ignore[index]
    result = run_prune(validate_config(raw))
    folder = result.run_dir / result.exported[0]["path"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer("the good movie", "plot", return_tensors="pt")
    assert encoded["token_type_ids"][0, -2].item() == 1  # the pair's second text
    logits = AutoModelForSequenceClassification.from_pretrained(folder)(**encoded).logits
    assert logits.shape == (1, 2)


def test_sentiment_words_are_not_all_filler() -> None:
    assert not set(WORDS) & set(FILLER)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"data__task": "regression"}, ["prune.quality_objective='accuracy'", "set prune.quality_objective"]),
        ({"space": {"preset": "elm"}}, ["space.preset='elm'", "prune-small"]),
        ({"data__task": "mlm"}, ["data.task='mlm'", "classification or regression"]),
    ],
)
def test_config_mistakes_are_caught_before_training(
    tmp_path: Path, over: dict[str, Any], words: list[str]
) -> None:
    from elastic_lm.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        run_prune(validate_config(prune_config(tmp_path, **over)), until="finetune")
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "run" / "finetune" / "stage.json").exists()


def test_tuning_the_supernet_or_the_search_does_not_redo_the_baselines(tmp_path: Path) -> None:
    from elastic_lm.pipeline.recipes.prune import stage_hash

    def hashes(**over: object) -> dict[str, str]:
        config = validate_config(prune_config(tmp_path, **over))
        return {s: stage_hash(s, config) for s in ("train", "search", "baselines")}

    base = hashes()
    for change in ({"train__learning_rate": 5e-3}, {"search__trials": 60}, {"search__strategy": "mo-rea"}):
        other = hashes(**change)
        assert other["baselines"] == base["baselines"], change
        assert other["search"] != base["search"], change
    assert hashes(train__batch_size=8)["baselines"] != base["baselines"]  # the baselines train with it
    assert hashes(search__eval_batch_size=32)["baselines"] != base["baselines"]


def test_settings_only_the_nas_recipe_reads_leave_every_pruning_stage_as_done(tmp_path: Path) -> None:
    from elastic_lm.pipeline.recipes.prune import STAGES, stage_hash

    def hashes(**over: object) -> dict[str, str]:
        config = validate_config(prune_config(tmp_path, **over))
        return {s: stage_hash(s, config) for s in STAGES if s != "report"}

    base = hashes()
    assert hashes(search__front_bins=0, export__distil_steps=50) == base
    assert hashes(prune__front_bins=0)["search"] != base["search"]  # the pruning design's own setting


@pytest.mark.parametrize("score", ["activation", "fisher"])
def test_importance_is_chosen_by_name_and_sorts_the_fine_tuned_model(tmp_path: Path, score: str) -> None:
    """``prune.importance`` scores with the importance home by name; the reorder keeps the function."""
    from elastic_lm.importance import SCORES
    from elastic_lm.pipeline.recipes import prune_stages

    config = validate_config(prune_config(tmp_path, prune__importance=score))
    seen: list[tuple[str, Any]] = []
    real = prune_stages.importance_scores

    def spy(name: str, model: Any, batches: Any) -> Any:
        seen.append((name, batches))
        return real(name, model, batches)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
        mp.setattr(prune_stages, "importance_scores", spy)
        run_prune(config, until="finetune")
    assert [name for name, _ in seen] == [score]
    batches = seen[0][1]
    folder = Path(config.run_dir) / "finetune"
    sorted_model = AutoModelForSequenceClassification.from_pretrained(folder / "model").eval()
    original = AutoModelForSequenceClassification.from_pretrained(folder / "model-original").eval()

    def descending(scores: dict[str, torch.Tensor]) -> bool:
        return all(bool((s[:-1] >= s[1:] - 1e-6).all()) for s in scores.values())

    scores = SCORES[score](sorted_model, batches)
    assert scores
    assert descending(scores)
    assert not descending(SCORES[score](original, batches))  # the reorder did something
    with torch.no_grad():
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            expected = original(**inputs).logits
            torch.testing.assert_close(sorted_model(**inputs).logits, expected, atol=1e-5, rtol=0)
