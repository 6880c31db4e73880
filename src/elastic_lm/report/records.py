"""The typed values the report is drawn from, one per kind of file a run directory holds.

Plain frozen dataclasses with no reading logic (that is :mod:`elastic_lm.report.inputs`), so the
plots, the page and the tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elastic_lm.architecture import Architecture


@dataclass(frozen=True)
class Objective:
    """One objective of the search, as ``summary.json`` declares it."""

    name: str
    direction: str
    unit: str = ""


@dataclass(frozen=True)
class Trial:
    """One evaluated (or failed) architecture."""

    number: int
    architecture: Architecture | None
    metrics: dict[str, float]
    feasible: bool = True
    state: str = "COMPLETE"

    @property
    def usable(self) -> bool:
        """Only finished, feasible trials may sit on a Pareto front."""
        return self.state == "COMPLETE" and self.feasible


@dataclass(frozen=True)
class Summary:
    """What the search stage concluded; ``pareto`` is its own claim, which the report re-checks."""

    objectives: tuple[Objective, ...]
    strategy: str = "search"
    pareto: tuple[int, ...] | None = None
    hypervolume: tuple[tuple[float, float], ...] = ()
    reference_point: dict[str, float] = field(default_factory=dict)
    finished_at: str | None = None


@dataclass(frozen=True)
class NamedPoint:
    """A baseline, an exported model or a latency check: a name and some numbers."""

    name: str
    metrics: dict[str, float]
    path: str = ""
    format: str = ""  # exported models: "stock" (transformers alone) or "elastic-lm"


@dataclass(frozen=True)
class LatencyCheck:
    label: str
    predicted_ms: float
    measured_ms: float


@dataclass(frozen=True)
class DownstreamRow:
    """One evaluated model of ``evaluate/downstream.json``: per-task scores or perplexity and samples."""

    name: str
    params: float | None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> accuracy, f1
    average: dict[str, float] = field(default_factory=dict)
    perplexity: float | None = None
    samples: tuple[tuple[str, str], ...] = ()  # (prompt, completion)


@dataclass(frozen=True)
class Downstream:
    """The downstream tables: fine-tuned encoders on ``tasks``, decoders by perplexity."""

    tasks: tuple[str, ...]
    encoders: tuple[DownstreamRow, ...]
    decoders: tuple[DownstreamRow, ...]
    steps: int | None = None


@dataclass(frozen=True)
class RunData:
    """Everything the report shows, loaded once."""

    run_dir: Path
    name: str
    date: str
    trials: tuple[Trial, ...]
    summary: Summary
    trials_file: Path
    extra_summaries: tuple[Summary, ...] = ()
    baselines: tuple[NamedPoint, ...] = ()
    latency: tuple[LatencyCheck, ...] = ()
    exports: tuple[NamedPoint, ...] = ()
    train_curve: dict[str, list[float]] = field(default_factory=dict)
    downstream: Downstream | None = None


__all__ = [
    "Downstream",
    "DownstreamRow",
    "LatencyCheck",
    "NamedPoint",
    "Objective",
    "RunData",
    "Summary",
    "Trial",
]
