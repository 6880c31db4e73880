"""What downstream evaluation records: the budget, the models, per-task scores, the results table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["encoder", "decoder"]


@dataclass(frozen=True)
class FineTuneBudget:
    """The one recipe every encoder gets on every task (what makes the table a fair comparison)."""

    steps: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class ModelEntry:
    """A model folder to evaluate; ``origin`` is ``export`` (from ``export/index.json``) or ``reference``."""

    name: str
    path: Path
    origin: str = "export"


@dataclass(frozen=True)
class TaskScore:
    """Test-split scores of one fine-tuned model on one task."""

    accuracy: float
    f1: float
    f1_average: str  # "binary" (positive class = label id 1) or "macro"
    num_labels: int
    test_examples: int


@dataclass(frozen=True)
class EncoderResult:
    """One row of the encoder table."""

    name: str
    path: str
    params: int
    tasks: dict[str, TaskScore]

    @property
    def average(self) -> dict[str, float]:
        """Unweighted mean over tasks, as GLUE averages report it."""
        n = max(len(self.tasks), 1)
        return {
            "accuracy": sum(s.accuracy for s in self.tasks.values()) / n,
            "f1": sum(s.f1 for s in self.tasks.values()) / n,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "params": self.params,
            "tasks": {k: asdict(v) for k, v in self.tasks.items()},
            "average": self.average,
        }


@dataclass(frozen=True)
class DecoderResult:
    """One row of the decoder table: held-out perplexity and greedy samples."""

    name: str
    path: str
    params: int
    perplexity: float
    tokens: int
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DownstreamResults:
    """Everything ``evaluate/downstream.json`` holds."""

    tasks: list[str]
    settings: dict[str, Any]
    encoders: list[EncoderResult]
    decoders: list[DecoderResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "settings": self.settings,
            "encoders": [e.to_dict() for e in self.encoders],
            "decoders": [d.to_dict() for d in self.decoders],
        }


__all__ = [
    "DecoderResult",
    "DownstreamResults",
    "EncoderResult",
    "FineTuneBudget",
    "ModelEntry",
    "ModelKind",
    "TaskScore",
]
