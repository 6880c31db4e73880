"""Stage records of a prune run: ``RUN_DIR/<stage>/stage.json`` as in ``pipeline/rundir.py``.

Why not ``RunDirectory`` itself: its stage names and input sections are those of the MLM pipeline and
do not include the ``prune`` section, so editing e.g. ``prune.finetune_steps`` would not redo
fine-tuning. Records use the same ``StageRecord`` format; a stage whose inputs changed is wiped
(``started.json`` tells a crashed stage with other inputs from one to resume).

``report`` (written by ``elastic-lm run``, not ``elastic-lm prune``) reads the other stages' files
rather than the config: its inputs are the records of the stages it shows, so it is rewritten after
any of them was redone (e.g. baselines added later) and skipped otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from elastic_lm.config import Config
from elastic_lm.io import atomic_write_json
from elastic_lm.pipeline.rundir import StageRecord

PRUNE_STAGES: tuple[str, ...] = ("finetune", "train", "search", "evaluate", "export", "baselines", "report")
# The stages whose files the report shows (train: the loss curve).
REPORT_READS: tuple[str, ...] = ("train", "search", "export", "baselines")

_FINETUNE = ("finetune_steps", "finetune_learning_rate", "importance", "importance_batches")
_SEARCH = ("size_objective", "quality_objective")
_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "finetune": (("seed", "model", "data"), _FINETUNE),
    "train": (("seed", "model", "data", "space", "train"), _FINETUNE),
    "search": (("seed", "model", "data", "space", "train", "search"), _FINETUNE + _SEARCH),
    "evaluate": (("seed", "model", "data", "space", "train", "search", "export"), _FINETUNE + _SEARCH),
    "export": (
        ("seed", "model", "data", "space", "train", "search", "export"),
        (*_FINETUNE, *_SEARCH, "vocabulary"),
    ),
    "baselines": (
        ("seed", "model", "data", "train", "search"),
        (*_FINETUNE, *_SEARCH, "baseline_fractions", "baseline_steps", "baselines"),
    ),
}


# Keys of those sections that a stage provably does not read. The baselines train fixed models with
# their own strategy, losses, learning rate (prune.finetune_learning_rate) and checkpoint cadence, and
# never search: tuning the super-network or the search must not redo half an hour of baselines.
_UNREAD: dict[str, dict[str, tuple[str, ...]]] = {
    "baselines": {
        "train": ("learning_rate", "strategy", "strategy_options", "losses", "eval_every",
                  "checkpoint_every", "keep_checkpoints"),
        "search": ("strategy", "trials", "strategy_options", "objectives", "constraints", "storage"),
    },
}  # fmt: skip


def stage_hash(stage: str, config: Config) -> str:
    """A stable hash of everything ``stage``'s output depends on."""
    data = config.model_dump(mode="json")
    sections, prune_keys = _INPUTS[stage]
    unread = _UNREAD.get(stage, {})
    relevant = {
        name: {k: v for k, v in data[name].items() if k not in unread.get(name, ())}
        if isinstance(data[name], dict)
        else data[name]
        for name in sections
    }
    relevant["prune"] = {k: data["prune"][k] for k in prune_keys}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class PruneStages:
    """Skip done stages, resume crashed ones, redo those whose inputs changed.

    ``log`` (e.g. ``print``) is told when a stage starts and finishes; None says nothing.
    """

    def __init__(self, run_dir: Path, config: Config, log: Callable[[str], None] | None = None) -> None:
        self.root = Path(run_dir)
        self.config = config
        self.log = log

    def inputs_hash(self, stage: str) -> str:
        if stage != "report":
            return stage_hash(stage, self.config)
        stamps = {s: rec.finished_at for s in REPORT_READS if (rec := self.record(s)) is not None}
        return hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()[:16]

    def dir(self, stage: str) -> Path:
        return self.root / stage

    def record(self, stage: str) -> StageRecord | None:
        file = self.dir(stage) / "stage.json"
        if not file.is_file():
            return None
        return StageRecord(**json.loads(file.read_text(encoding="utf-8")))

    def is_done(self, stage: str) -> bool:
        rec = self.record(stage)
        return rec is not None and rec.inputs_hash == self.inputs_hash(stage)

    def begin(self, stage: str) -> float:
        """Start (or resume) ``stage``; a folder left by other inputs is removed first."""
        folder = self.dir(stage)
        started = folder / "started.json"
        wanted = self.inputs_hash(stage)
        if folder.exists():
            previous = json.loads(started.read_text()).get("inputs_hash") if started.is_file() else None
            if previous != wanted:
                keep = {"baselines.json"} if stage == "search" else set()
                for child in folder.iterdir():
                    if child.name in keep:
                        continue
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        atomic_write_json(started, {"inputs_hash": wanted})
        if self.log is not None:
            self.log(f"[{stage}] running")
        return time.time()

    def finish(self, stage: str, started_at: float, outputs: dict[str, Any] | None = None) -> StageRecord:
        now = time.time()
        rec = StageRecord(
            stage=stage,
            inputs_hash=self.inputs_hash(stage),
            finished_at=now,
            seconds=round(now - started_at, 3),
            outputs=outputs or {},
        )
        atomic_write_json(self.dir(stage) / "stage.json", asdict(rec))
        if self.log is not None:
            self.log(f"[{stage}] finished in {rec.seconds:.1f} s")
        return rec


__all__ = ["PRUNE_STAGES", "REPORT_READS", "PruneStages", "stage_hash"]
