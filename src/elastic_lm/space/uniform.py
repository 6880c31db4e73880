"""Uniformly narrower members of a space: every layer kept, one head count and one FFN width for all.

These are the shapes a user makes by hand ("the same model at half width"), and DynaBERT's width
multipliers. The search can start from them (``search.uniform_shares``) and super-network training
can sample them (the sandwich's ``uniform_random``), so they are trained and ranked like any other
member.
"""

from __future__ import annotations

import itertools
from typing import Any

from elastic_lm.architecture import Architecture


def uniform_members(space: Any) -> list[tuple[float, Architecture]]:
    """``(evenness, member)`` for every uniformly narrower member of ``space`` (the largest included),
    in a fixed order; evenness is the smaller of the kept-heads and kept-FFN ratios. Empty for a
    space without head or FFN choices. KV groups stay as in the largest member."""
    if not hasattr(space, "dimensions"):
        return []
    largest = space.largest()
    base, dims = space.encode(largest), space.dimensions()
    fields = [d.name.split(".")[-1] for d in dims]  # heads / mobile_heads, ffn / mobile_ffn
    groups = [
        [i for i, f in enumerate(fields) if f.endswith("heads") and f != "kv_heads"],
        [i for i, f in enumerate(fields) if f.endswith("ffn")],
    ]
    if not any(groups):
        return []
    options = [range(max((len(dims[i].choices) for i in g), default=1)) for g in groups]
    found: dict[str, tuple[float, Architecture]] = {}
    for picks in itertools.product(*options):
        vector, ratios = list(base), []
        for group, pick in zip(groups, picks, strict=True):
            for i in group:
                vector[i] = min(pick, base[i])
                ratios.append(dims[i].choices[vector[i]] / dims[i].choices[base[i]])
        arch = space.decode(vector)
        if space.contains(arch) and all(layer.block != "identity" for layer in arch.layers):
            found.setdefault(arch.key(), (min(ratios), arch))
    return list(found.values())


__all__ = ["uniform_members"]
