"""The one home of Pareto arithmetic: dominance, fronts, non-dominated sorting, crowding, hypervolume,
and the two helpers the report and the exporters need (the staircase through a 2-D front, picking
members spread along it).

Everything here works on losses (lower is better): callers turn maximised objectives into losses
with :func:`to_losses` first (or call :func:`front_mask` with directions), so "maximise" is honoured
in one place only. Optuna 5 has no public hypervolume function (only the private
``optuna._hypervolume``), so the exact hypervolume here is a short one of ours: a sweep for two
objectives, slicing along the last objective for more. Pure numpy, no study and no files, so the
report can use it on a copied run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TypeVar

import numpy as np

from elastic_lm.errors import ConfigError

MINIMIZE = "minimize"
MAXIMIZE = "maximize"
DIRECTIONS: tuple[str, ...] = (MINIMIZE, MAXIMIZE)
T = TypeVar("T")


def _signs(directions: Sequence[str]) -> np.ndarray:
    """+1 for minimise, -1 for maximise: after multiplying, smaller is always better."""
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return np.array([-1.0 if d == MAXIMIZE else 1.0 for d in directions])


def to_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Negate maximised columns so that every column is minimised."""
    values = np.asarray(values, dtype=float).reshape(-1, len(directions))
    return values * _signs(directions)


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


def front_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point (raw objective values), whether no other point dominates it under ``directions``."""
    for point in points:
        if len(point) != len(directions):
            raise ValueError(f"point {list(point)} has {len(point)} values for {len(directions)} directions")
    return [bool(m) for m in pareto_mask(to_losses(np.asarray(points, dtype=float), directions))]


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
    return _exact_hypervolume(inside[pareto_mask(inside)], ref)


def _exact_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by ``points`` (all <= ``ref``, minimised) and bounded by ``ref``.

    Sorted by the last objective, point ``i`` starts a slab that ends where point ``i + 1`` starts
    (or at the reference); the slab's cross-section is the hypervolume of points ``0..i`` in the
    remaining objectives. Exact; fine for the few objectives and hundreds of points of a search.
    """
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:  # sweep: the sorted front is a staircase
        order = np.lexsort((points[:, 1], points[:, 0]))
        total, best_y = 0.0, float(ref[1])
        for x, y in points[order]:
            if y < best_y:
                total += (float(ref[0]) - float(x)) * (best_y - float(y))
                best_y = float(y)
        return total
    ordered = points[np.argsort(points[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(ordered)):
        top = ordered[i + 1, -1] if i + 1 < len(ordered) else ref[-1]
        depth = float(top - ordered[i, -1])
        if depth > 0:
            section = ordered[: i + 1, :-1]
            total += depth * _exact_hypervolume(section[pareto_mask(section)], ref[:-1])
    return total


def step_line(
    front: Sequence[tuple[float, float]], directions: tuple[str, str]
) -> tuple[list[float], list[float]]:
    """The staircase through a 2-D front, so the region it dominates reads at a glance.

    Points are sorted along x from best to worst; between two members the line first moves along x and
    then along y, the shape of the attainment surface.
    """
    sx = float(_signs(directions)[0])
    ordered = sorted(set(front), key=lambda p: (sx * p[0], p[1]))
    xs: list[float] = []
    ys: list[float] = []
    for x, y in ordered:
        if xs:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys


def spread(items: Sequence[T], value: Callable[[T], float], max_items: int | None) -> list[T]:
    """At most ``max_items`` of ``items`` spread over their ``value`` (lowest and highest kept), sorted
    by value, with the **smallest possible largest gap** between neighbours.

    The gap is what a user with a budget meets: a member missing from a wide gap of the front is the
    one they wanted. So the fewest items that achieve the smallest achievable largest gap come first
    (each jump the farthest one within it), then each remaining slot splits the widest gap that still
    holds an item (the item nearest its middle). A crowd of near-identical small members never pushes
    out the one member in a wide gap.
    """
    ordered = sorted(items, key=value)
    if max_items is None or len(ordered) <= max_items:
        return ordered
    if max_items <= 1:
        return ordered[:max_items]
    values = [value(item) for item in ordered]
    candidates = sorted({b - a for i, a in enumerate(values) for b in values[i + 1 :]})
    low, high = 0, len(candidates) - 1  # the range itself always fits in two items
    while low < high:
        mid = (low + high) // 2
        if len(_jumps(values, candidates[mid])) <= max_items:
            high = mid
        else:
            low = mid + 1
    taken = set(_jumps(values, candidates[low]))
    while len(taken) < max_items:  # both ends are taken, so an untaken item lies inside some gap
        splittable = [(a, b) for a, b in pairwise(sorted(taken)) if b - a > 1]
        a, b = max(splittable, key=lambda pair: (values[pair[1]] - values[pair[0]], -pair[0]))
        middle = (values[a] + values[b]) / 2
        taken.add(min(range(a + 1, b), key=lambda j: (abs(values[j] - middle), j)))
    return [ordered[j] for j in sorted(taken)]


def fewest_within_gap(values: Sequence[float], gap: float) -> int:
    """How many of ``values`` (lowest and highest kept) :func:`spread` needs so that no gap between
    neighbours exceeds ``gap``, where the values allow it (an unbridgeable gap counts one step)."""
    return len(_jumps(sorted(values), gap)) if values else 0


def _jumps(values: Sequence[float], gap: float) -> list[int]:
    """Indices from the first to the last of sorted ``values``, each the farthest within ``gap`` of
    the one before (the fewest items with no gap above ``gap``; an unbridgeable gap is crossed by one
    step to the next item)."""
    path, j = [0], 0
    while j < len(values) - 1:
        reach = j + 1
        while reach + 1 < len(values) and values[reach + 1] - values[j] <= gap:
            reach += 1
        path.append(reach)
        j = reach
    return path
