"""``prune.refine_steps``: every exported member is trained alone before the test evaluation (seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import elastic_lm.model  # noqa: F401  (elastic exports load through the Auto classes)
from elastic_lm.architecture import Architecture
from elastic_lm.config.loading import validate_config
from elastic_lm.model import ElasticForSequenceClassification
from elastic_lm.pipeline.recipes.prune import stage_hash
from elastic_lm.prune import refine, run_prune, training
from prune_fixtures import prune_config


@pytest.fixture(scope="module")
def refined_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("refine")
    config = validate_config(prune_config(tmp, prune__refine_steps=6))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp / "cache"))
        run_prune(config)
    return {"config": config, "run": Path(config.run_dir), "tmp": tmp}


def _logits(model: torch.nn.Module, arch: Architecture | None = None) -> torch.Tensor:
    ids = torch.tensor([[2, 5, 12, 3, 9, 3]])
    with torch.no_grad():
        if arch is None:
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        with model.using(arch):  # type: ignore[attr-defined]
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_exports_are_the_refined_members_not_the_shared_weights(refined_run: dict[str, Any]) -> None:
    run = refined_run["run"]
    supernet = ElasticForSequenceClassification.from_pretrained(run / "train" / "supernet").eval()
    trials = {f"trial-{t['number']}": t for t in json.loads((run / "search" / "trials.json").read_text())}
    index = json.loads((run / "export" / "index.json").read_text())
    tests = json.loads((run / "evaluate" / "test_metrics.json").read_text())
    assert index
    for item in index:
        name = item["name"]
        exported = AutoModelForSequenceClassification.from_pretrained(run / item["path"]).eval()
        kept = refine.load_refined(run, name)
        assert kept is not None
        torch.testing.assert_close(_logits(exported), _logits(kept), atol=1e-4, rtol=1e-4)
        shared = _logits(supernet, Architecture.from_dict(trials[name]["architecture"]))
        assert (_logits(exported) - shared).abs().max() > 1e-3  # six steps of training moved it
        assert tests[name]["refined_steps"] == 6
        assert item["metrics"]["refined_steps"] == 6
        card = json.loads((run / item["path"] / "export.json").read_text())
        assert card["provenance"]["refined_steps"] == 6


def test_an_interrupted_evaluate_stage_reads_refined_members_back(refined_run: dict[str, Any]) -> None:
    run, config = refined_run["run"], refined_run["config"]
    before = json.loads((run / "evaluate" / "test_metrics.json").read_text())

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a member refined before was trained again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(refined_run["tmp"] / "cache"))
        mp.setattr(training, "train_fixed", refuse)
        run_prune(config, start="evaluate")
    after = json.loads((run / "evaluate" / "test_metrics.json").read_text())
    assert after == before


def test_refine_steps_redo_only_the_evaluation_and_the_export(tmp_path: Path) -> None:
    def hashes(**over: object) -> dict[str, str]:
        config = validate_config(prune_config(tmp_path, **over))
        stages = ("finetune", "train", "search", "evaluate", "export", "baselines")
        return {s: stage_hash(s, config) for s in stages}

    base = hashes()
    assert hashes(prune__refine_steps=0) == base  # off: runs made before the setting existed stay done
    on = hashes(prune__refine_steps=20)
    assert {s for s in base if on[s] != base[s]} == {"evaluate", "export"}


def test_refine_max_epochs_turns_refining_off_where_the_supernet_saw_each_row_often(tmp_path: Path) -> None:
    config = validate_config(
        prune_config(tmp_path, prune__refine_steps=200, prune__refine_max_epochs=4, train__steps=600)
    )
    config.train.batch_size = 32
    assert refine.supernet_epochs(config, 8000) == pytest.approx(2.4)
    assert refine.refine_skipped(config, 8000) is None  # 2.4 times: refine
    reason = refine.refine_skipped(config, 1780)  # 10.8 times: skip
    assert reason is not None
    assert "10.8 times" in reason
    assert "prune.refine_max_epochs 4" in reason
    config.prune.refine_max_epochs = None
    assert refine.refine_skipped(config, 1780) is None  # no limit: always
    config.prune.refine_steps = 0
    config.prune.refine_max_epochs = 4
    assert refine.refine_skipped(config, 1780) is None  # refining is off anyway

    logged: list[str] = []

    class Parts:  # refine_members must decide before it touches the super-network or the teacher
        data = type("Data", (), {"train": [None] * 1780})()
        log = staticmethod(logged.append)

        def __init__(self) -> None:
            self.config = config

        def finetuned(self) -> None:
            raise AssertionError("a skipped refinement loaded the teacher")

    config.prune.refine_steps = 200
    assert refine.refine_members(Parts(), None, [{"number": 3}]) == {}  # type: ignore[arg-type]
    assert len(logged) == 1
    assert "refining skipped" in logged[0]


def test_the_refine_limits_enter_the_hashes_only_while_refining_is_on(tmp_path: Path) -> None:
    def hashes(**over: object) -> dict[str, str]:
        config = validate_config(prune_config(tmp_path, **over))
        return {s: stage_hash(s, config) for s in ("train", "search", "evaluate", "export")}

    on = hashes(prune__refine_steps=20)
    for limit in ({"prune__refine_max_epochs": 4}, {"prune__refine_max_share": 0.5}):
        assert hashes(**limit) == hashes()  # refining off: the limit reads nothing
        limited = hashes(prune__refine_steps=20, **limit)
        assert {s for s in on if on[s] != limited[s]} == {"evaluate", "export"}, limit


def test_refine_max_share_keeps_the_largest_members_as_the_search_found_them(tmp_path: Path) -> None:
    import dataclasses

    from elastic_lm.metrics.size import count_params
    from elastic_lm.prune.source import load_classifier
    from prune_fixtures import tiny_bert

    model = load_classifier(tiny_bert(tmp_path / "bert", classifier=True), 2, ["neg", "pos"])
    full = model.model.largest()
    small = Architecture(
        hidden=full.hidden,
        layers=tuple(dataclasses.replace(la, ffn=la.ffn // 4, heads=1, kv_heads=0) for la in full.layers),
        meta=full.meta,
    )
    members = [{"number": 1, "architecture": full.to_dict()}, {"number": 7, "architecture": small.to_dict()}]
    share = count_params(model.config, small, include_embeddings=False) / count_params(
        model.config, full, include_embeddings=False
    )
    assert share < 0.5
    config = validate_config(prune_config(tmp_path, prune__refine_steps=20, prune__refine_max_share=0.5))
    assert [t["number"] for t in refine.members_to_refine(config, model, members)] == [7]
    config.prune.refine_max_share = 1.0
    assert [t["number"] for t in refine.members_to_refine(config, model, members)] == [1, 7]
    config.prune.refine_max_share = share * 0.99
    assert refine.members_to_refine(config, model, members) == []
