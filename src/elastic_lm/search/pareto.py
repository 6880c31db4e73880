"""Pareto dominance, non-dominated sorting, crowding and hypervolume on *loss* vectors.

Everything here works on losses (lower is better): callers turn maximised objectives into losses
with :func:`to_losses` first, so "maximise" is honoured in one place only. The hypervolume itself is
Optuna's exact implementation (WFG; 2-D and 3-D special cases), not ours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume

from elastic_lm.errors import ConfigError

MINIMIZE = "minimize"
MAXIMIZE = "maximize"


def to_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Negate maximised columns so that every column is minimised."""
    values = np.asarray(values, dtype=float).reshape(-1, len(directions))
    signs = np.array([-1.0 if d == MAXIMIZE else 1.0 for d in directions])
    return values * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` in every loss and better in at least one."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(losses: np.ndarray) -> np.ndarray:
    """True for rows that no other row dominates (duplicates of a front point are all kept)."""
    losses = np.asarray(losses, dtype=float)
    n = len(losses)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        others = losses[np.arange(n) != i]
        dominated = np.all(others <= losses[i], axis=1) & np.any(others < losses[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def nondominated_ranks(losses: np.ndarray) -> np.ndarray:
    """Rank 0 for the Pareto front, 1 for the front once rank 0 is removed, and so on."""
    losses = np.asarray(losses, dtype=float)
    ranks = np.full(len(losses), -1, dtype=int)
    remaining = np.arange(len(losses))
    rank = 0
    while remaining.size:
        front = pareto_mask(losses[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one set of points (boundary points get infinity)."""
    losses = np.asarray(losses, dtype=float)
    n, m = losses.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        span = losses[order[-1], j] - losses[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            gaps = (losses[order[2:], j] - losses[order[:-2], j]) / span
            distance[order[1:-1]] += gaps
    return distance


def normalise(
    losses: np.ndarray, bounds: Sequence[tuple[float, float]], directions: Sequence[str]
) -> np.ndarray:
    """Map losses into [0, 1] per objective given (low, high) bounds of the *raw* values.

    For a maximised objective the loss is ``-value``, so its best raw value ``high`` maps to 0.
    """
    out = np.empty_like(np.asarray(losses, dtype=float))
    for j, ((low, high), direction) in enumerate(zip(bounds, directions, strict=True)):
        if not high > low:
            raise ConfigError(f"objective bounds ({low}, {high}): high must exceed low")
        best = -high if direction == MAXIMIZE else low
        out[:, j] = (losses[:, j] - best) / (high - low)
    return out


def hypervolume(normalised_losses: np.ndarray, reference: float = 1.0) -> float:
    """Hypervolume dominated by points in normalised loss space, w.r.t. ``(reference,) * m``.

    Points beyond the reference in any objective contribute nothing (they are dropped), so the
    value is comparable between runs that use the same bounds.
    """
    losses = np.asarray(normalised_losses, dtype=float)
    if losses.size == 0:
        return 0.0
    ref = np.full(losses.shape[1], reference, dtype=float)
    inside = losses[np.all(losses <= ref, axis=1)]
    if inside.size == 0:
        return 0.0
    return float(compute_hypervolume(inside, ref))
