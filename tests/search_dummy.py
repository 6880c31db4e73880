"""A tiny search space and toy objectives for the search tests (no model, milliseconds).

``n`` positions, each choosing one of ``k`` FFN widths. The toy objectives are separable and smooth
in the encoding (nearby encodings have nearby values), which is the property every guided strategy
relies on: neighbours and mutations of good members are good, and a model of the history predicts
the rest. Random search cannot use it, so with equal budgets guided strategies should reach at
least random search's hypervolume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from elastic_lm.architecture import Architecture, LayerArch


@dataclass(frozen=True)
class Dimension:
    name: str
    choices: tuple[int, ...]


class DummySpace:
    def __init__(self, n: int = 6, k: int = 5) -> None:
        self.n, self.k = n, k
        self.widths = tuple(16 * (i + 1) for i in range(k))

    def dimensions(self) -> list[Dimension]:
        return [Dimension(f"layer{i}.ffn", self.widths) for i in range(self.n)]

    def encode(self, arch: Architecture) -> list[int]:
        return [self.widths.index(layer.ffn) for layer in arch.layers]

    def decode(self, vector: Sequence[int]) -> Architecture:
        return Architecture(64, tuple(LayerArch("ffn", ffn=self.widths[int(v)]) for v in vector))

    def sample(self, rng: random.Random) -> Architecture:
        return self.decode([rng.randrange(self.k) for _ in range(self.n)])

    def sample_stratified(
        self, rng: random.Random, size_fn: Callable[[Architecture], float], n_bins: int
    ) -> Architecture:
        low, high = size_fn(self.smallest()), size_fn(self.largest())
        b = rng.randrange(n_bins)
        lo, hi = low + (high - low) * b / n_bins, low + (high - low) * (b + 1) / n_bins
        arch = self.smallest()
        for _ in range(50):
            p = (b + rng.random()) / n_bins
            arch = self.decode([sum(rng.random() < p for _ in range(self.k - 1)) for _ in range(self.n)])
            if lo <= size_fn(arch) <= hi:
                break
        return arch

    def mutate(self, arch: Architecture, rng: random.Random, rate: float) -> Architecture:
        x = self.encode(arch)
        changed = [i for i in range(self.n) if rng.random() < rate] or [rng.randrange(self.n)]
        for i in changed:
            x[i] = rng.choice([c for c in range(self.k) if c != x[i]])
        return self.decode(x)

    def crossover(self, a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
        xa, xb = self.encode(a), self.encode(b)
        return self.decode([u if rng.random() < 0.5 else v for u, v in zip(xa, xb, strict=True)])

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        x = self.encode(arch)
        out = []
        for i in range(self.n):
            for step in (-1, 1):
                if 0 <= x[i] + step < self.k:
                    y = list(x)
                    y[i] += step
                    out.append(self.decode(y))
        return out

    def smallest(self) -> Architecture:
        return self.decode([0] * self.n)

    def largest(self) -> Architecture:
        return self.decode([self.k - 1] * self.n)

    def middle(self) -> Architecture:
        return self.decode([(self.k - 1) // 2] * self.n)

    def validate(self, arch: Architecture) -> None:
        self.encode(arch)

    def size(self) -> int:
        return self.k**self.n


# Layers differ in cost and in importance (as real ones do): the best trade-offs grow the
# important, cheap layers first, so they are specific members that random draws rarely hit.
COST = (1, 2, 3, 1, 2, 3)
IMPORTANCE = (3, 1, 2, 2, 3, 1)


def _x(arch: Architecture) -> list[int]:
    return [layer.ffn // 16 - 1 for layer in arch.layers]


def size(arch: Architecture) -> float:
    """Cheap objective: cost-weighted width, 0 for the smallest member, 48 for the largest."""
    return float(sum(c * x for c, x in zip(COST, _x(arch), strict=False)))


def error(arch: Architecture) -> float:
    """Expensive objective: importance-weighted squared shortfall from the largest member."""
    return float(sum(v * (4 - x) ** 2 for v, x in zip(IMPORTANCE, _x(arch), strict=False)))


def accuracy(arch: Architecture) -> float:
    """Maximised objective: 1 for the largest member, falling with the error."""
    return 1.0 - error(arch) / 192.0


def skew(arch: Architecture) -> float:
    """Third objective: distance to an alternating pattern (small, large, small, ...)."""
    target = [16 if i % 2 == 0 else 80 for i in range(len(arch.layers))]
    pairs = zip(target, arch.layers, strict=True)
    return float(sum(abs(t - layer.ffn) // 16 for t, layer in pairs))
