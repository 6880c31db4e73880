"""Preset search spaces as data: each builder returns the plain dict of :meth:`SearchSpace.to_dict`.

Builders take the base model's shape as keywords (defaults: the asset each preset is meant for), so
tests use tiny shapes and users their own model. Sizes at the default shape (``space.size()``):

=============  ========================================================  ========================
preset         dimensions (default shape)                                members
=============  ========================================================  ========================
elm            hidden, depth; per layer block, heads, ffn (one pair per  3,481,238,708,192,700
               block type), bottleneck, ffn_stack (44 dims)
nasbert        per layer op (6 choices), per block hidden (5); 28 dims   9.09e19
prune-small    depth, heads, ffn shared by all layers (3 dims)           1,728
prune-medium   per layer heads 0-12, ffn 0-1536 step 64 (12 dims)        325^6 ~ 1.18e15
prune-layer    a keep bit per layer, any non-empty subset (6 dims)       63
prune-large    a keep bit per head and per FFN unit (9,288 dims)         2^9288
llama          hidden; per layer keep, heads, kv_heads, ffn (121 dims)   3 * (97^30 - 1) ~ 1.2e60
=============  ========================================================  ========================

``docs/search-spaces.md`` has the same table; ``tests/test_space_presets.py`` checks the numbers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from elastic_lm.errors import ConfigError


def _steps(maximum: int, step: int, start: int | None = None) -> list[int]:
    """start, start + step, ... up to and always including ``maximum``."""
    if step < 1 or maximum < 1:
        raise ConfigError(f"step={step}, maximum={maximum}: both must be >= 1")
    values = list(range(step if start is None else start, maximum + 1, step))
    if not values or values[-1] != maximum:
        values.append(maximum)
    return values


def _widths(hidden: int, choices: Sequence[int] | None, fractions: Sequence[int]) -> list[int]:
    """User choices (sorted), else ``hidden * f / fractions[-1]`` for each fraction f."""
    if choices is not None:
        return sorted(set(int(c) for c in choices))
    return sorted({max(1, hidden * f // fractions[-1]) for f in fractions})


def _hidden_group(hidden: int, choices: Sequence[int] | None) -> dict[str, Any]:
    return {
        "name": "hidden",
        "target": "hidden",
        "scope": "global",
        "choices": _widths(hidden, choices, (2, 3, 4)),
    }


def elm(
    *,
    layers: int = 6,
    hidden: int = 384,
    heads: int = 12,
    ffn: int = 1536,
    head_step: int = 2,
    ffn_step: int = 256,
    hidden_choices: Sequence[int] | None = None,
    bottleneck_choices: Sequence[int] | None = None,
    ffn_stack: int = 4,
    min_layers: int = 1,
    blocks: Sequence[str] = ("bert", "mobilebert"),
    layer_subsets: bool = False,
) -> dict[str, Any]:
    """ELM: per-layer block type (BERT or MobileBERT), heads, FFN, global width and depth.

    Where both block types are allowed, each has its own head and FFN dimensions: they are built
    separately, and dynamic modules resize them separately. ``layer_subsets`` replaces the depth
    (the first k layers) by a keep bit per layer, so a member may keep e.g. layers 0, 2, 4 and 5:
    the teacher's last layers keep producing the output they were trained to produce.
    """
    mobile = ["mobilebert"]
    others = [b for b in blocks if b not in mobile]
    split = bool(others) and "mobilebert" in blocks
    width_groups: list[dict[str, Any]] = [
        {"name": "heads", "target": "heads", "scope": "layer", "choices": _steps(heads, head_step)},
        {"name": "ffn", "target": "ffn", "scope": "layer", "choices": _steps(ffn, ffn_step)},
    ]
    if split:
        width_groups = [
            *({**g, "when": others} for g in width_groups),
            *({**g, "name": f"mobile_{g['name']}", "when": mobile} for g in width_groups),
        ]
    return {
        "name": "elm",
        "description": "ELM (Wang 2025): per-layer BERT/MobileBERT blocks, elastic width and depth",
        "num_layers": layers,
        "hidden": hidden,
        "block": "bert",
        "min_depth": min_layers,
        "groups": [
            _hidden_group(hidden, hidden_choices),
            {"name": "keep", "target": "keep", "scope": "layer", "choices": [0, 1]} if layer_subsets else
            {"name": "depth", "target": "depth", "scope": "global",
             "choices": list(range(min_layers, layers + 1))},
            {"name": "block", "target": "op", "scope": "layer", "choices": list(blocks)},
            *width_groups,
            {"name": "bottleneck", "target": "bottleneck", "scope": "layer", "when": mobile,
             "choices": _widths(hidden, bottleneck_choices, (1, 2, 4))[:2]},
            {"name": "ffn_stack", "target": "ffn_stack", "scope": "layer", "when": mobile,
             "choices": list(range(1, ffn_stack + 1))},
        ],
    }  # fmt: skip


def nasbert(
    *,
    layers: int = 24,
    block_size: int = 6,
    hidden: int = 512,
    hidden_choices: Sequence[int] = (128, 192, 256, 384, 512),
    head_dim: int = 64,
    ffn_ratio: int = 4,
    kernels: Sequence[int] = (3, 5, 7),
) -> dict[str, Any]:
    """NAS-BERT: one op per layer, one width per block, identity only at the end of a block."""
    bad = [h for h in hidden_choices if h % head_dim]
    if bad:
        raise ConfigError(f"nasbert: hidden_choices {bad} are not multiples of head_dim={head_dim}")
    ops: dict[str, dict[str, Any]] = {"identity": {"block": "identity"}}
    for k in kernels:
        ops[f"sepconv{k}"] = {"block": "sepconv", "kernel": int(k)}
    ops["attention"] = {"block": "attention"}
    ops["ffn"] = {"block": "ffn"}
    return {
        "name": "nasbert",
        "description": "NAS-BERT (Xu et al. 2021): block-wise op and width search",
        "num_layers": layers,
        "hidden": hidden,
        "block": "bert",
        "block_size": block_size,
        "identity_at_block_end": True,
        "ops": ops,
        "rules": [
            {"field": "heads", "mul": 1, "div": head_dim, "when": ["attention"]},
            {"field": "ffn", "mul": ffn_ratio, "when": ["ffn"]},
        ],
        "groups": [
            {"name": "op", "target": "op", "scope": "layer", "choices": list(ops)},
            {"name": "hidden", "target": "hidden", "scope": "block",
             "choices": sorted(hidden_choices)},
        ],
    }  # fmt: skip


def _prune(
    kind: str,
    layers: int,
    hidden: int,
    heads: int,
    ffn: int,
    head_step: int,
    ffn_step: int,
    search_hidden: bool,
    hidden_choices: Sequence[int] | None,
) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    if search_hidden:
        groups.append(_hidden_group(hidden, hidden_choices))
    space: dict[str, Any] = {
        "name": f"prune-{kind}",
        "description": f"Structural pruning of a BERT, {kind} space (Klein et al., TMLR 2024)",
        "num_layers": layers,
        "hidden": hidden,
        "block": "bert",
    }
    if kind == "small":
        space["min_depth"] = 1
        groups += [
            {"name": "depth", "target": "depth", "scope": "global",
             "choices": list(range(1, layers + 1))},
            {"name": "heads", "target": "heads", "scope": "global",
             "choices": _steps(heads, head_step)},
            {"name": "ffn", "target": "ffn", "scope": "global", "choices": _steps(ffn, ffn_step)},
        ]  # fmt: skip
    elif kind == "medium":
        space["drop_empty"] = True
        groups += [
            {"name": "heads", "target": "heads", "scope": "layer",
             "choices": [0, *_steps(heads, head_step)]},
            {"name": "ffn", "target": "ffn", "scope": "layer",
             "choices": [0, *_steps(ffn, ffn_step)]},
        ]  # fmt: skip
    elif kind == "layer":
        space["min_depth"] = 1
        space["rules"] = [{"field": "heads", "value": heads}, {"field": "ffn", "value": ffn}]
        groups.append({"name": "keep", "target": "keep", "scope": "layer", "choices": [0, 1]})
    else:
        space["drop_empty"] = True
        groups += [
            {"name": "head", "target": "head_ids", "scope": "unit", "units": heads,
             "choices": [0, 1]},
            {"name": "unit", "target": "ffn_ids", "scope": "unit", "units": ffn,
             "choices": [0, 1]},
        ]  # fmt: skip
    space["groups"] = groups
    return space


_PRUNE_DOC = """Structural pruning of a BERT (Klein et al. 2024), {kind} space; see the module table."""


def _make_prune(kind: str) -> Callable[..., dict[str, Any]]:
    def build(
        *,
        layers: int = 6,
        hidden: int = 384,
        heads: int = 12,
        ffn: int = 1536,
        head_step: int = 1,
        ffn_step: int = 64,
        search_hidden: bool = False,
        hidden_choices: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        return _prune(kind, layers, hidden, heads, ffn, head_step, ffn_step, search_hidden, hidden_choices)

    build.__doc__ = _PRUNE_DOC.format(kind=kind)
    build.__name__ = f"prune_{kind}"
    return build


def llama(
    *,
    layers: int = 30,
    hidden: int = 576,
    heads: int = 9,
    kv_heads: int = 3,
    ffn: int = 1536,
    head_step: int = 1,
    ffn_step: int = 256,
    hidden_choices: Sequence[int] | None = None,
    min_layers: int = 1,
    uniform: bool = False,
) -> dict[str, Any]:
    """Llama-style decoder (SmolLM2-135M): any layer subset, width, GQA heads/groups, FFN.

    ``uniform``: heads, KV groups and FFN width are one choice for every kept layer, so every member
    exports as a stock ``LlamaForCausalLM`` (per-layer choices need elastic-lm's class).
    """
    scope = "global" if uniform else "layer"
    return {
        "name": "llama",
        "description": "Llama-style decoder: any layer subset, hidden, query heads, KV groups, FFN",
        "num_layers": layers,
        "hidden": hidden,
        "block": "llama",
        "min_depth": min_layers,
        "divisible": [["heads", "kv_heads"]],
        "groups": [
            {"name": "hidden", "target": "hidden", "scope": "global",
             "choices": _widths(hidden, hidden_choices, (1, 2, 3))},
            {"name": "keep", "target": "keep", "scope": "layer", "choices": [0, 1]},
            {"name": "heads", "target": "heads", "scope": scope,
             "choices": _steps(heads, head_step)},
            {"name": "kv_heads", "target": "kv_heads", "scope": scope,
             "choices": list(range(1, kv_heads + 1))},
            {"name": "ffn", "target": "ffn", "scope": scope, "choices": _steps(ffn, ffn_step)},
        ],
    }  # fmt: skip


PRESETS: dict[str, Callable[..., dict[str, Any]]] = {
    "elm": elm,
    "nasbert": nasbert,
    "prune-small": _make_prune("small"),
    "prune-medium": _make_prune("medium"),
    "prune-layer": _make_prune("layer"),
    "prune-large": _make_prune("large"),
    "llama": llama,
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_dict(name: str, **shape: Any) -> dict[str, Any]:
    """The plain dict of a preset at a shape (what ``preset`` builds the space from)."""
    if name not in PRESETS:
        raise ConfigError(f"search space preset {name!r} is unknown; choose one of {list(PRESETS)}")
    builder = PRESETS[name]
    allowed = list(inspect.signature(builder).parameters)
    unknown = sorted(set(shape) - set(allowed))
    if unknown:
        raise ConfigError(f"search space preset {name!r}: unknown shape key(s) {unknown}; allowed: {allowed}")
    return builder(**shape)
