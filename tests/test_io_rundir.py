"""Atomic output and the run directory's stage records (what makes runs resumable)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from elastic_lm.config import load_config
from elastic_lm.errors import ConfigError
from elastic_lm.io import atomic_directory, atomic_write_json, atomic_write_text
from elastic_lm.pipeline import RunDirectory
from elastic_lm.pipeline.recipes.nas import RECIPE, inputs_hash


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_directory_write_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        atomic_write_text(staging / "weights.txt", "good")

    def crash_midway() -> None:
        with atomic_directory(target) as staging:
            atomic_write_text(staging / "weights.txt", "half")
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_midway()
    assert (target / "weights.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_stage_done_only_for_the_same_inputs(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    config = load_config(None, ["train.steps=10"])
    assert not run.is_done("train", inputs_hash("train", config))
    run.mark_done("train", inputs_hash("train", config), started_at=time.time(), outputs={"checkpoint": "x"})
    assert run.is_done("train", inputs_hash("train", config))
    assert run.record("train").outputs == {"checkpoint": "x"}
    # A search setting does not touch training, but a training setting does.
    assert run.is_done(
        "train", inputs_hash("train", load_config(None, ["train.steps=10", "search.trials=5"]))
    )
    assert not run.is_done("train", inputs_hash("train", load_config(None, ["train.steps=11"])))
    run.invalidate("train")
    assert not run.is_done("train", inputs_hash("train", config))


def test_saved_config_round_trips(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    config = load_config(None, ["seed=5", "data.source=[austen]"])
    path = run.save_config(config)
    assert load_config(path) == config


def test_stage_ranges() -> None:
    assert RECIPE.between("search", "export") == ("search", "export")
    assert RECIPE.between(None, "train") == ("teacher", "train")
    with pytest.raises(ConfigError, match="stage 'serch' is not in the nas recipe"):
        RECIPE.between("serch", None)
    with pytest.raises(ConfigError, match="comes after"):
        RECIPE.between("report", "train")
