"""Warm start of the NAS search from the retraining-free mode's answer (Kwon et al. 2022; issue 18).

The post-training mode ranks every head and FFN unit by the Fisher information of its mask and keeps,
under a size budget, the units with the most Fisher importance. With ``prune.warm_start`` the NAS
search starts from the same answer inside its own space: for each share in
``prune.post_training.targets``, the member of a seeded sample of the space that fits the budget (non-
embedding parameters) and keeps the most Fisher importance is evaluated first. Units are kept as the
super-network keeps them (the first k after reordering, or explicit ids), so the scores are read in
the super-network's own order; a dropped layer loses all of its units' importance.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from elastic_lm.architecture import Architecture
from elastic_lm.importance.fisher import SubLayer
from elastic_lm.prune.coverage import candidate_pool


def kept_importance(arch: Architecture, subs: Sequence[SubLayer], scores: dict[str, torch.Tensor]) -> float:
    """The summed ``scores`` of the heads and FFN units ``arch`` keeps."""
    total = 0.0
    for sub in subs:
        if sub.layer >= len(arch.layers) or arch.layers[sub.layer].is_identity:
            continue
        layer = arch.layers[sub.layer]
        ids = layer.head_ids if sub.kind == "heads" else layer.ffn_ids
        count = layer.heads if sub.kind == "heads" else layer.ffn
        values = scores[sub.name]
        total += float(values[list(ids)].sum() if ids is not None else values[:count].sum())
    return total


def fisher_design(
    space: Any,
    size_fn: Callable[[Architecture], float],
    subs: Sequence[SubLayer],
    scores: dict[str, torch.Tensor],
    targets: Sequence[float],
    *,
    seed: int = 0,
    pool: int = 2000,
) -> list[Architecture]:
    """For each target share of the largest member's size, the fitting member keeping most importance.

    Largest share first; a member chosen for two targets appears once; the largest and smallest members
    are left out (every search evaluates them anyway).
    """
    candidates = candidate_pool(space, random.Random(seed), pool)
    largest, smallest = space.largest(), space.smallest()
    full = size_fn(largest)
    sized = [(size_fn(a), kept_importance(a, subs, scores), a) for a in candidates]
    chosen: dict[str, Architecture] = {}
    for share in sorted(set(targets), reverse=True):
        fitting = [(imp, -size, a.key(), a) for size, imp, a in sized if size <= share * full]
        if not fitting:
            continue
        best = max(fitting, key=lambda t: t[:3])[3]
        if best.key() not in (largest.key(), smallest.key()):
            chosen.setdefault(best.key(), best)
    return list(chosen.values())


__all__ = ["fisher_design", "kept_importance"]
