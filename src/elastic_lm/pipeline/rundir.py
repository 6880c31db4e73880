"""The run directory: each stage's output lives in its own folder with a completion record.

A stage is *done* when ``RUN_DIR/<stage>/stage.json`` exists and was written with the same inputs
(a hash of the config sections the stage depends on). Re-running a job skips done stages, redoes a
stage whose inputs changed, and everything after it, so a crashed or edited run resumes correctly.
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
from elastic_lm.errors import ConfigError
from elastic_lm.io import atomic_write_json, atomic_write_text

STAGES: tuple[str, ...] = ("teacher", "train", "profile", "search", "export", "evaluate", "report")

# The config sections each stage reads itself; a stage's output also depends on everything the stages
# before it read (it consumes their outputs), so its inputs are the union up to and including it.
_OWN_SECTIONS: dict[str, tuple[str, ...]] = {
    "teacher": ("seed", "model", "teacher", "data"),
    "train": ("space", "train"),
    "profile": ("profile", "search"),  # search: whether an objective needs a latency predictor
    "search": ("search",),
    "export": ("export",),
    "evaluate": ("evaluate",),
    "report": (),
}
_STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    stage: tuple(dict.fromkeys(s for earlier in STAGES[: i + 1] for s in _OWN_SECTIONS[earlier]))
    for i, stage in enumerate(STAGES)
}


@dataclass
class StageRecord:
    """What ``stage.json`` holds: which inputs produced the stage, when, and its headline outputs."""

    stage: str
    inputs_hash: str
    finished_at: float
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


class RunDirectory:
    """One job's folder: ``config.yaml`` plus a sub-folder per stage."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def stage_dir(self, stage: str) -> Path:
        _check_stage(stage)
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

    def is_done(self, stage: str, config: Config) -> bool:
        record = self.record(stage)
        return record is not None and record.inputs_hash == inputs_hash(stage, config)

    def mark_done(
        self, stage: str, config: Config, started_at: float, outputs: dict[str, Any] | None = None
    ) -> StageRecord:
        now = time.time()
        record = StageRecord(
            stage=stage,
            inputs_hash=inputs_hash(stage, config),
            finished_at=now,
            seconds=round(now - started_at, 3),
            outputs=outputs or {},
        )
        atomic_write_json(self.stage_dir(stage) / "stage.json", asdict(record))
        return record

    def invalidate(self, stage: str) -> None:
        """Forget that ``stage`` finished (its files stay until the stage rewrites them)."""
        (self.stage_dir(stage) / "stage.json").unlink(missing_ok=True)


def inputs_hash(stage: str, config: Config) -> str:
    """A stable hash of the config sections ``stage`` depends on."""
    _check_stage(stage)
    data = config.model_dump(mode="json")
    relevant = {name: data[name] for name in _STAGE_INPUTS[stage]}
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stages_between(start: str | None, until: str | None) -> tuple[str, ...]:
    """The stages from ``start`` to ``until`` inclusive, in pipeline order (None = the ends)."""
    for name in (start, until):
        if name is not None:
            _check_stage(name)
    first = STAGES.index(start) if start else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise ConfigError(f"--from {start} comes after --until {until}; stages run in order {STAGES}")
    return STAGES[first : last + 1]


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
