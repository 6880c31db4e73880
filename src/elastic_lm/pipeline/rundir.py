"""The run directory: each stage's output lives in its own folder with a completion record.

A stage is *done* when ``RUN_DIR/<stage>/stage.json`` exists and was written with the same inputs
(a hash of what the stage depends on, computed by its recipe, see :mod:`elastic_lm.pipeline.engine`).
``RUN_DIR/<stage>/started.json`` keeps the inputs a stage was last started with, so a stage that did
not finish can tell its own partial work (resume it) from another setting's (refuse, naming it).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from elastic_lm.config import Config
from elastic_lm.io import atomic_write_json, atomic_write_text


@dataclass
class StageRecord:
    """What ``stage.json`` holds: which inputs produced the stage, when, and its headline outputs."""

    stage: str
    inputs_hash: str
    finished_at: float
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def hash_inputs(inputs: dict[str, Any]) -> str:
    """A stable short hash of a stage's inputs (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


class RunDirectory:
    """One job's folder: ``config.yaml`` plus a sub-folder per stage."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def save_config(self, config: Config) -> Path:
        """Keep the exact config of the job beside its outputs (what was run is never a guess)."""
        data = config.model_dump(mode="json")
        return atomic_write_text(self.path / "config.yaml", yaml.safe_dump(data, sort_keys=False))

    def record(self, stage: str) -> StageRecord | None:
        file = self.stage_dir(stage) / "stage.json"
        if not file.is_file():
            return None
        return StageRecord(**json.loads(file.read_text(encoding="utf-8")))

    def is_done(self, stage: str, inputs_hash: str) -> bool:
        record = self.record(stage)
        return record is not None and record.inputs_hash == inputs_hash

    def mark_done(
        self, stage: str, inputs_hash: str, started_at: float, outputs: dict[str, Any] | None = None
    ) -> StageRecord:
        now = time.time()
        record = StageRecord(
            stage=stage,
            inputs_hash=inputs_hash,
            finished_at=now,
            seconds=round(now - started_at, 3),
            outputs=outputs or {},
        )
        atomic_write_json(self.stage_dir(stage) / "stage.json", asdict(record))
        return record

    def invalidate(self, stage: str) -> None:
        """Forget that ``stage`` finished (its files stay until the stage rewrites them)."""
        (self.stage_dir(stage) / "stage.json").unlink(missing_ok=True)

    def started(self, stage: str) -> dict[str, Any] | None:
        """``started.json``: the inputs (and their hash) ``stage`` was last started with."""
        file = self.stage_dir(stage) / "started.json"
        if not file.is_file():
            legacy = self.stage_dir(stage) / "inputs.json"  # what earlier versions wrote for train
            file = legacy if legacy.is_file() else file
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except ValueError:
            return None

    def mark_started(self, stage: str, inputs: dict[str, Any]) -> None:
        atomic_write_json(
            self.stage_dir(stage) / "started.json", {"inputs_hash": hash_inputs(inputs), "inputs": inputs}
        )


__all__ = ["RunDirectory", "StageRecord", "hash_inputs"]
