"""A tiny search space with the duck-typed interface the training parts use (milliseconds)."""

from __future__ import annotations

import random
from collections.abc import Callable

from elastic_lm.architecture import Architecture, LayerArch

WIDTHS = (8, 16, 24, 32)
FFNS = (16, 32, 64)


class DummySpace:
    """Global width x per-layer FFN width for ``n_layers`` BERT layers: 4 * 3**n_layers members."""

    def __init__(self, n_layers: int = 2) -> None:
        self.n_layers = n_layers

    def _arch(self, hidden: int, ffns: list[int]) -> Architecture:
        return Architecture(hidden, tuple(LayerArch("bert", heads=2, ffn=f) for f in ffns))

    def sample(self, rng: random.Random) -> Architecture:
        return self._arch(rng.choice(WIDTHS), [rng.choice(FFNS) for _ in range(self.n_layers)])

    def smallest(self) -> Architecture:
        return self._arch(WIDTHS[0], [FFNS[0]] * self.n_layers)

    def largest(self) -> Architecture:
        return self._arch(WIDTHS[-1], [FFNS[-1]] * self.n_layers)

    def sample_stratified(
        self, rng: random.Random, size_fn: Callable[[Architecture], float], n_bins: int
    ) -> Architecture:
        pool = sorted({a.key(): a for a in (self.sample(rng) for _ in range(64))}.values(), key=size_fn)
        bins = [pool[i * len(pool) // n_bins : (i + 1) * len(pool) // n_bins] for i in range(n_bins)]
        members = rng.choice([b for b in bins if b])
        return rng.choice(members)


def size(arch: Architecture) -> float:
    """A parameter-count stand-in."""
    return float(sum(arch.hidden * layer.ffn * 2 + 4 * arch.hidden**2 for layer in arch.layers))
