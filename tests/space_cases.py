"""Shapes shared by the search-space tests: each preset tiny (brute-force countable) and default."""

from __future__ import annotations

from typing import Any

from elastic_lm.space import SearchSpace, preset

TINY: dict[str, dict[str, Any]] = {
    "elm": {
        "layers": 2,
        "hidden": 64,
        "heads": 2,
        "ffn": 64,
        "head_step": 1,
        "ffn_step": 32,
        "hidden_choices": (32, 64),
        "bottleneck_choices": (16,),
        "ffn_stack": 2,
    },
    "nasbert": {
        "layers": 4,
        "block_size": 2,
        "hidden": 128,
        "hidden_choices": (64, 128),
        "head_dim": 32,
        "kernels": (3,),
    },
    "prune-small": {"layers": 3, "hidden": 32, "heads": 2, "ffn": 4, "ffn_step": 2},
    "prune-medium": {"layers": 3, "hidden": 32, "heads": 2, "ffn": 4, "ffn_step": 2},
    "prune-layer": {"layers": 3, "hidden": 32, "heads": 2, "ffn": 4, "ffn_step": 2},
    "prune-large": {"layers": 2, "hidden": 32, "heads": 2, "ffn": 3},
    "llama": {
        "layers": 2,
        "hidden": 64,
        "heads": 4,
        "kv_heads": 2,
        "ffn": 64,
        "ffn_step": 32,
        "hidden_choices": (32, 64),
    },
}

PRESETS = list(TINY)


def tiny(name: str) -> SearchSpace:
    return preset(name, **TINY[name])


def both_shapes(name: str) -> list[SearchSpace]:
    return [tiny(name), preset(name)]
