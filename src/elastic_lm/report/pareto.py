"""Pure numerics of the report: who dominates whom, the step line through a front, and error measures.

Kept free of matplotlib and file I/O so the maths a reader trusts can be tested in microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")


def _signs(directions: Sequence[str]) -> list[float]:
    """+1 for minimise, -1 for maximise: after multiplying, smaller is always better."""
    signs = []
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        signs.append(1.0 if direction == "minimize" else -1.0)
    return signs


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True if ``a`` is at least as good as ``b`` in every objective and strictly better in one."""
    signs = _signs(directions)
    better = False
    for x, y, s in zip(a, b, signs, strict=True):
        if s * x > s * y:
            return False
        if s * x < s * y:
            better = True
    return better


def pareto_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (duplicates of a front point all stay).

    Quadratic, which is fine for the few thousand trials a search produces; a report must never be the
    slow part of a run, and clarity matters more here than an O(n log n) sweep.
    """
    signs = _signs(directions)
    for point in points:
        if len(point) != len(signs):
            raise ValueError(f"point {list(point)} has {len(point)} values for {len(signs)} directions")
    keys = [tuple(s * v for s, v in zip(signs, p, strict=True)) for p in points]
    mask = []
    for i, ki in enumerate(keys):
        dominated = any(
            j != i and all(a <= b for a, b in zip(kj, ki, strict=True)) and kj != ki
            for j, kj in enumerate(keys)
        )
        mask.append(not dominated)
    return mask


def step_line(
    front: Sequence[tuple[float, float]], directions: tuple[str, str]
) -> tuple[list[float], list[float]]:
    """The staircase through a 2-D front, so the region it dominates reads at a glance.

    Points are sorted along x from best to worst; between two members the line first moves along x and
    then along y, the shape of the attainment surface.
    """
    sx = _signs(directions)[0]
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
    """At most ``max_items`` of ``items``, their ``value``s evenly spaced from the lowest to the
    highest (both kept), sorted by value.

    For each of ``max_items`` evenly spaced targets the nearest item not yet taken is picked:
    spacing by value, not by rank, so a crowd of near-identical small members does not push out the
    one member in a wide gap of the front (often the one a user wants).
    """
    ordered = sorted(items, key=value)
    if max_items is None or len(ordered) <= max_items:
        return ordered
    if max_items <= 1:
        return ordered[:max_items]
    values = [value(item) for item in ordered]
    low, high = values[0], values[-1]
    left = list(range(len(ordered)))
    taken = []
    for i in range(max_items):
        target = low + (high - low) * i / (max_items - 1)
        nearest = min(left, key=lambda j: (abs(values[j] - target), j))
        left.remove(nearest)
        taken.append(nearest)
    return [ordered[j] for j in sorted(taken)]


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error (in %) of ``predicted`` against ``measured``."""
    if len(predicted) != len(measured) or not measured:
        raise ValueError("mape needs two non-empty sequences of the same length")
    if any(m == 0 for m in measured):
        raise ValueError("mape is undefined when a measured value is 0")
    return 100.0 * sum(abs(p - m) / abs(m) for p, m in zip(predicted, measured, strict=True)) / len(measured)
