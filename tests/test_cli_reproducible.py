"""Two CLI runs of one config, in fresh processes and folders, give the same losses, weights and front.

Each run is its own process with its own ``PYTHONHASHSEED``: anything that depends on string-hash
order (set iteration, transformers initialising a checkpoint's missing head weights in that order)
or on process state would make the two runs differ, which one in-process test could not see.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SETS = [
    "device=cpu",
    "data.source=austen",
    "data.max_examples=48",
    "data.max_length=24",
    "space.options={layers: 2, blocks: [bert]}",
    "train.steps=3",
    "train.batch_size=4",
    "train.checkpoint_every=2",
    "train.eval_every=3",
    "train.eval_batches=1",
    "search.eval_batches=1",
    "search.eval_batch_size=4",
    "search.trials=5",
    "search.strategy=random",
]
TIMING = {"tokens_per_s", "seconds", "step_seconds"}


def _run(run_dir: Path, hash_seed: str) -> None:
    env = {
        **os.environ,
        "PYTHONHASHSEED": hash_seed,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    argv = ["run", *[x for s in SETS for x in ("--set", s)], "--run-dir", str(run_dir), "--until", "search"]
    done = subprocess.run(
        [sys.executable, "-m", "elastic_lm.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _losses(run_dir: Path) -> list[tuple[str, str, str]]:
    with (run_dir / "train" / "metrics.csv").open() as f:
        rows = [tuple(r) for r in csv.reader(f)]
    return [(r[0], r[2], r[3]) for r in rows[1:] if r[2] not in TIMING]


def _front(run_dir: Path) -> list[tuple[object, ...]]:
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    return [(t["number"], t["metrics"], json.dumps(t["architecture"], sort_keys=True)) for t in trials]


def test_two_cli_runs_give_identical_losses_weights_and_search(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _run(first, "1")
    _run(second, "2")
    losses = _losses(first)
    assert any(name == "loss" for _, name, _ in losses)
    assert losses == _losses(second)  # the logged losses, digit for digit, from step 1 on
    weights = sorted(p.relative_to(first) for p in first.rglob("*.safetensors"))
    assert Path("train/supernet/model.safetensors") in weights
    for rel in weights:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    front = _front(first)
    assert len(front) == 5
    assert all(metrics.get("val_loss", 0) > 0 for _, metrics, _ in front)
    assert front == _front(second)
    summary = [json.loads((d / "search" / "summary.json").read_text()) for d in (first, second)]
    assert summary[0].get("pareto") == summary[1].get("pareto")
