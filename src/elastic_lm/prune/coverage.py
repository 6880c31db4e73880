"""A front that covers the whole size range (issue 18): the search starts from members spread over
parameter bins, and the exported set fills the gaps a strict Pareto front leaves.

A strict Pareto front on a small validation split can be two points: a small member and one that
happens to score as high as the full model. A user who can afford a one-point drop then gets no
candidate between them, and the full model itself is "dominated" by noise. So:

* :func:`binned_design` picks, for each of ``bins`` equal-width bins of size between the smallest
  and the full member, the sampled member nearest the bin's centre; the search evaluates them first
  (with the smallest and the largest), so every size has been seen at least once;
* :func:`covering_front` is the Pareto front, plus the full architecture, plus the best-scoring
  evaluated member inside every gap wider than ``max_gap`` of the range;
* :func:`tied_members` are the members validation cannot tell from the best chosen one of about
  their size (their 95 % intervals overlap): the export keeps them too, as far as
  ``export.max_models`` allows, so the final choice rests on more than one lucky validation score.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from itertools import pairwise
from math import sqrt
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.space.uniform import uniform_members

MAX_GAP = 0.15  # of the size range: the widest gap the exported set may leave when members exist
NEAR = 0.05  # of the size range: members this close in size count as "about the same size"
Z95 = 1.96


def candidate_pool(space: Any, rng: random.Random, pool: int = 2000) -> list[Architecture]:
    """Distinct members: the largest's neighbours, then ``pool`` seeded samples of the space.

    Random members of a nested space are rarely within 10 % of the full size, which is where a user
    who can afford one point looks; the neighbours of the largest fill that end.
    """
    candidates: dict[str, Architecture] = {}
    for arch in [*space.neighbours(space.largest()), *(space.sample(rng) for _ in range(pool))]:
        candidates.setdefault(arch.key(), arch)
    return list(candidates.values())


def binned_design(
    space: Any,
    size_fn: Callable[[Architecture], float],
    bins: int = 8,
    *,
    seed: int = 0,
    pool: int = 2000,
) -> list[Architecture]:
    """One member per equal-width size bin (nearest the bin centre), from :func:`candidate_pool`."""
    small, large = space.smallest(), space.largest()
    low, high = size_fn(small), size_fn(large)
    if high <= low or bins < 1:
        return []
    sized = [(size_fn(a), a) for a in candidate_pool(space, random.Random(seed), pool)]
    width = (high - low) / bins
    chosen: list[Architecture] = []
    for b in range(bins):
        left, right = low + b * width, low + (b + 1) * width
        inside = [(s, a) for s, a in sized if left <= s < right or (b == bins - 1 and s == right)]
        if not inside:
            continue
        centre = (left + right) / 2
        _, best = min(inside, key=lambda sa: (abs(sa[0] - centre), sa[1].key()))
        if best.key() not in (small.key(), large.key()):
            chosen.append(best)
    return chosen


def uniform_design(
    space: Any, size_fn: Callable[[Architecture], float], shares: Sequence[float]
) -> list[Architecture]:
    """For each share of the largest member's size, the member of ``space`` a user would make by
    hand: all layers kept, one head count and one FFN width for every layer, the most evenly
    narrowed (highest smaller ratio of kept heads and kept FFN units), then the biggest, at or
    under the share. Evaluated first, so the search starts from the uniformly narrower shapes it
    must beat. Empty when the space has no head or FFN choices."""
    if not shares:
        return []
    largest = space.largest()
    uniform = [(even, size_fn(arch), arch) for even, arch in uniform_members(space)]
    full = size_fn(largest)
    chosen: dict[str, Architecture] = {}
    for share in shares:
        fitting = [u for u in uniform if u[1] <= share * full]
        if fitting:
            best = max(fitting, key=lambda u: (u[0], u[1], u[2].key()))[2]
            chosen.setdefault(best.key(), best)
    return list(chosen.values())


def size_design(
    space: Any, size_fn: Callable[[Architecture], float], bins: int, n_trials: int, seed: int
) -> list[Architecture]:
    """:func:`binned_design` for a search of ``n_trials``: at most ``bins`` members, and at most half
    the trials after the smallest, largest and middle (nothing for a space without neighbours).

    Evolution from a random start piles up where the front is densest: on the cpu encoder run, 7 of
    300 trials were above half the teacher's size and none between 62 % and the full model, so the
    75 % budget mark exported a 54 % member (docs/benchmarks.md)."""
    room = min(bins, max(n_trials // 2 - 3, 0))
    if room == 0 or not hasattr(space, "neighbours"):
        return []
    return binned_design(space, size_fn, room, seed=seed)


def covering_front(
    trials: Sequence[dict[str, Any]],
    front: Sequence[int],
    size: str,
    quality: str,
    maximize: bool,
    full_key: str | None,
    max_gap: float = MAX_GAP,
) -> list[int]:
    """Trial numbers to export: the front ``front``, the full architecture, and gap fillers.

    ``trials`` are ``trials.json`` records (complete, feasible ones count); ``full_key`` is the
    full architecture's :meth:`Architecture.key`. A gap between consecutive chosen sizes wider than
    ``max_gap`` of the range gets the best-quality member in its middle half (else anywhere inside
    it), repeatedly, until none is wider or no evaluated member lies in it.
    """
    done = _complete(trials)
    if not done:
        return []
    by_number = {t["number"]: t for t in done}
    chosen = {n for n in front if n in by_number}
    if full_key is not None:
        full = [t for t in done if Architecture.from_dict(t["architecture"]).key() == full_key]
        if full:
            chosen.add(min(t["number"] for t in full))
    sizes = [t["metrics"][size] for t in done]
    span = max(sizes) - min(sizes)
    if span <= 0:
        return sorted(chosen)

    def better(t: dict[str, Any]) -> tuple[float, float]:
        q = t["metrics"][quality]
        return (q if maximize else -q, -t["metrics"][size])

    chosen.add(min(done, key=lambda t: (t["metrics"][size], -better(t)[0]))["number"])
    chosen.add(max(done, key=lambda t: (t["metrics"][size], better(t)[0]))["number"])
    while True:
        ordered = sorted(chosen, key=lambda n: by_number[n]["metrics"][size])
        filled = False
        for a, b in pairwise(ordered):
            lo, hi = by_number[a]["metrics"][size], by_number[b]["metrics"][size]
            if (hi - lo) / span <= max_gap:
                continue
            inside = [t for t in done if lo < t["metrics"][size] < hi and t["number"] not in chosen]
            if inside:
                # the middle half first: the best member overall sits at the gap's top edge (larger
                # scores higher), and filling from the edge would creep down one member at a time
                quarter = (hi - lo) / 4
                middle = [t for t in inside if lo + quarter <= t["metrics"][size] <= hi - quarter]
                chosen.add(max(middle or inside, key=better)["number"])
                filled = True
                break
        if not filled:
            return sorted(chosen, key=lambda n: by_number[n]["metrics"][size])


def _complete(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in trials if t.get("feasible", True) and t.get("state", "COMPLETE") == "COMPLETE"]


def accuracy_half_width(p: float, rows: int) -> float:
    """Half the 95 % normal interval of an accuracy ``p`` measured on ``rows`` rows."""
    return Z95 * sqrt(max(p * (1.0 - p), 0.0) / max(rows, 1))


def tied_members(
    trials: Sequence[dict[str, Any]],
    chosen: Sequence[int],
    size: str,
    accuracy: str,
    rows: int,
    near: float = NEAR,
) -> list[int]:
    """Trials outside ``chosen`` whose validation ``accuracy`` interval overlaps that of the best
    chosen member within ``near`` of the size range of theirs; best first.

    The intervals are binomial (``rows`` validation rows), unpaired, so "overlap" is generous: these
    are the members the validation split could not rule out, not members shown to be as good.
    """
    done = _complete(trials)
    picked = [t for t in done if t["number"] in set(chosen)]
    sizes = [t["metrics"][size] for t in done]
    span = (max(sizes) - min(sizes)) if sizes else 0.0
    tied = []
    for t in done:
        if t["number"] in set(chosen):
            continue
        q, s = t["metrics"][accuracy], t["metrics"][size]
        rivals = [c for c in picked if abs(c["metrics"][size] - s) <= near * span]
        if not rivals:
            continue
        best = max(c["metrics"][accuracy] for c in rivals)
        if best - q <= accuracy_half_width(best, rows) + accuracy_half_width(q, rows):
            tied.append(t)
    tied.sort(key=lambda t: (-t["metrics"][accuracy], t["metrics"][size], t["number"]))
    return [t["number"] for t in tied]


def best_at_marks(
    trials: Sequence[dict[str, Any]], size: str, quality: str, maximize: bool, marks: Sequence[float]
) -> list[int]:
    """For each share in ``marks`` of the largest size, the best-quality trial at or under it (ties:
    the smaller), so a user asking for "half the size" gets a member whenever one exists."""
    done = _complete(trials)
    if not done:
        return []
    full = max(t["metrics"][size] for t in done)
    chosen: list[int] = []
    for share in marks:
        fitting = [t for t in done if t["metrics"][size] <= share * full + 1e-9]
        if fitting:
            q = (lambda t: t["metrics"][quality]) if maximize else (lambda t: -t["metrics"][quality])
            best = max(fitting, key=lambda t: (q(t), -t["metrics"][size]))
            if best["number"] not in chosen:
                chosen.append(best["number"])
    return chosen


def front_gaps(sizes: Sequence[float], full: float) -> dict[str, float]:
    """``front_top_share`` (largest member / full) and ``front_max_gap`` (widest gap / range)."""
    if not sizes or full <= 0:
        return {"front_top_share": 0.0, "front_max_gap": 1.0}
    ordered = sorted(sizes)
    span = full - ordered[0]
    gaps = [b - a for a, b in pairwise(ordered)] + [full - ordered[-1]]
    return {
        "front_top_share": ordered[-1] / full,
        "front_max_gap": max(gaps) / span if span > 0 else 0.0,
    }


__all__ = [
    "MAX_GAP",
    "NEAR",
    "accuracy_half_width",
    "best_at_marks",
    "binned_design",
    "candidate_pool",
    "covering_front",
    "front_gaps",
    "size_design",
    "tied_members",
    "uniform_design",
]
