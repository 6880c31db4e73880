"""Objectives and constraints: named functions of an architecture.

Constraints are always cheap and are checked before any objective is computed, so an architecture
that violates one never reaches an expensive objective (accuracy after fine-tuning, measured
latency...). Cheap objectives (parameter count, FLOPs, predicted latency) are computed for every
architecture, feasible or not, because they cost nothing and help to read the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.search.pareto import MAXIMIZE, MINIMIZE

ArchFn = Callable[[Architecture], float]

# What a model costs (size, time, memory), as opposed to how good it is: the quality objective of a
# front is its first objective not named here.
COST_METRICS = frozenset(
    {
        "params", "params_nonembedding", "flops", "latency_ms", "latency_pred_ms", "peak_memory_mb",
        "decode_ms_per_token", "decode_tokens_per_s", "prefill_ms",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Objective:
    """One thing to minimise or maximise.

    ``bounds`` = (low, high) of the raw values is used to normalise the hypervolume; give it for
    results comparable across runs (otherwise the observed range is used).
    """

    name: str
    fn: ArchFn
    direction: str = MINIMIZE
    cheap: bool = False
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.direction not in (MINIMIZE, MAXIMIZE):
            raise ConfigError(
                f"objective {self.name!r}: direction={self.direction!r} is not allowed; "
                f"use 'minimize' or 'maximize'"
            )
        if self.bounds is not None and not self.bounds[1] > self.bounds[0]:
            raise ConfigError(
                f"objective {self.name!r}: bounds={self.bounds} must be (low, high) with high > low"
            )


@dataclass(frozen=True)
class Constraint:
    """A cheap function that must stay within ``[min, max]`` (either side may be open)."""

    name: str
    fn: ArchFn
    max: float | None = None
    min: float | None = None

    def __post_init__(self) -> None:
        if self.max is None and self.min is None:
            raise ConfigError(f"constraint {self.name!r}: give max=..., min=... or both")

    def violation(self, value: float) -> float:
        """How far ``value`` lies outside the allowed range (0 when it is inside).

        Optuna's ``constraints_func`` convention: a value <= 0 means satisfied.
        """
        if math.isnan(value):
            return math.inf
        over = value - self.max if self.max is not None else -math.inf
        under = self.min - value if self.min is not None else -math.inf
        return max(over, under, 0.0)


def check_names(objectives: Sequence[Objective], constraints: Sequence[Constraint]) -> None:
    """Names are column headers and storage keys, so they must be unique and non-empty."""
    if not objectives:
        raise ConfigError("objectives: none given; add at least one Objective")
    names = [o.name for o in objectives] + [c.name for c in constraints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"objective/constraint names {duplicates} repeat; give each a unique name")
    if any(not n for n in names):
        raise ConfigError("objective/constraint name '' is empty; name each one")


def feasible(arch: Architecture, constraints: Sequence[Constraint]) -> bool:
    """Cheap feasibility test, used by samplers to avoid proposing infeasible members."""
    return all(c.violation(float(c.fn(arch))) == 0.0 for c in constraints)
