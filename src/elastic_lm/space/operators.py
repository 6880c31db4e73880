"""Search operators on the encoding: sampling, stratified sampling, mutation, crossover, neighbours.

All of them work on index vectors and finish with ``decode``, so they never produce a non-member and
never need to know what a dimension means.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.space.codec import decode, dimension_table, encode
from elastic_lm.space.model import SpaceData

STRATIFY_SAMPLE = 256  # members drawn (with a fixed seed) to place the size-bin edges
STRATIFY_TRIES = 200  # rejection-sampling budget per stratified draw


def cardinalities(space: SpaceData) -> list[int]:
    return [len(choices) for _, _, choices in dimension_table(space)]


def sample_vector(space: SpaceData, rng: random.Random) -> list[int]:
    return [rng.randrange(n) for n in cardinalities(space)]


def size_bin_edges(space: SpaceData, size_fn: Callable[[Architecture], float], n_bins: int) -> list[float]:
    """Inner quantile edges of ``size_fn`` over a uniform sample; ties collapse (fewer bins)."""
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins}; use at least 1")
    rng = random.Random(0)  # fixed: the bins are a property of the space and size_fn, not the run
    sizes = sorted(size_fn(decode(space, sample_vector(space, rng))) for _ in range(STRATIFY_SAMPLE))
    edges = {sizes[(k * len(sizes)) // n_bins] for k in range(1, n_bins)}
    return sorted(e for e in edges if e > sizes[0])  # so that every bin holds some sample


def bin_of(edges: Sequence[float], value: float) -> int:
    return bisect.bisect_right(edges, value)


def sample_stratified(
    space: SpaceData,
    rng: random.Random,
    size_fn: Callable[[Architecture], float],
    edges: Sequence[float],
) -> Architecture:
    """Pick a bin uniformly, then rejection-sample a member in it (closest miss as a fallback)."""
    target = rng.randrange(len(edges) + 1)
    best: tuple[int, Architecture] | None = None
    for _ in range(STRATIFY_TRIES):
        arch = decode(space, sample_vector(space, rng))
        distance = abs(bin_of(edges, size_fn(arch)) - target)
        if distance == 0:
            return arch
        if best is None or distance < best[0]:
            best = (distance, arch)
    assert best is not None
    return best[1]


def mutate(space: SpaceData, arch: Architecture, rng: random.Random, rate: float) -> Architecture:
    """Resample each dimension with probability ``rate`` (at least one), to a different index.

    Retries a few times when the change only touched dimensions the member does not use, then
    tries every single-dimension change in random order, so the result differs from ``arch``
    whenever the space has another member.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate={rate}; use a probability in [0, 1]")
    base = encode(space, arch)
    sizes = cardinalities(space)
    mutable = [d for d, n in enumerate(sizes) if n > 1]
    if not mutable:
        return arch
    child = arch
    for _ in range(10):
        vector = list(base)
        chosen = [d for d in mutable if rng.random() < rate] or [rng.choice(mutable)]
        for d in chosen:
            vector[d] = rng.choice([k for k in range(sizes[d]) if k != base[d]])
        child = decode(space, vector)
        if child != arch:
            return child
    for d in rng.sample(mutable, len(mutable)):  # a member using few dimensions: find one it uses
        for k in rng.sample(range(sizes[d]), sizes[d]):
            vector = list(base)
            vector[d] = k
            child = decode(space, vector)
            if child != arch:
                return child
    return child


def crossover(space: SpaceData, a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
    """Uniform crossover: each dimension's index comes from either parent with probability 1/2."""
    va, vb = encode(space, a), encode(space, b)
    return decode(space, [x if rng.random() < 0.5 else y for x, y in zip(va, vb, strict=True)])


def neighbours(space: SpaceData, arch: Architecture) -> list[Architecture]:
    """Members one index step away in one dimension (after repair), without duplicates or arch."""
    base = encode(space, arch)
    seen = {arch}
    out: list[Architecture] = []
    for d, n in enumerate(cardinalities(space)):
        for step in (-1, 1):
            k = base[d] + step
            if 0 <= k < n:
                vector = list(base)
                vector[d] = k
                member = decode(space, vector)
                if member not in seen:
                    seen.add(member)
                    out.append(member)
    return out


def extreme_vector(space: SpaceData, which: str) -> list[int]:
    pick: dict[str, Any] = {
        "smallest": lambda n: 0,
        "largest": lambda n: n - 1,
        "middle": lambda n: n // 2,
    }
    return [pick[which](n) for n in cardinalities(space)]
