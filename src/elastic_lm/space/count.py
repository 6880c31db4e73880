"""Exact number of distinct members of a space, without enumerating them.

Members are counted as polynomials in the number of kept layers (``c[k]`` = members with k
non-identity layers) so that ``min_depth`` and the shared all-identity member are exact. Layers are
independent given the global and per-block choices, except where a constraint couples them; the
structures the presets use have closed forms, and anything else falls back to enumeration (small
spaces) or raises.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from elastic_lm.space.codec import _repair_multiple, decode, empty_fields, layout
from elastic_lm.space.model import UNIT_TARGETS, Group, SpaceData

BRUTE_FORCE_LIMIT = 200_000


class _NoClosedFormError(Exception):
    """The space couples layers in a way the closed form does not cover."""


def brute_force_size(space: SpaceData) -> int:
    """Count members by decoding every vector (only for tiny spaces: tests and fallback)."""
    ranges = [range(len(g.choices_at(space.position_index(g, p)))) for g, p in layout(space)]
    return len({decode(space, list(v)).key() for v in itertools.product(*ranges)})


def size(space: SpaceData) -> int:
    try:
        return _closed_form(space)
    except _NoClosedFormError:
        n_vectors = math.prod(len(g.choices_at(space.position_index(g, p))) for g, p in layout(space))
        if n_vectors <= BRUTE_FORCE_LIMIT:
            return brute_force_size(space)
        raise NotImplementedError(
            f"space {space.name!r}: no closed-form size for this combination of constraints"
        ) from None


def _conv(a: list[int], b: list[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return out


def _closed_form(space: SpaceData) -> int:
    n_hidden = 1
    context_groups: list[Group] = []
    for g in space.groups:
        if g.scope != "global":
            continue
        if g.target == "hidden":
            n_hidden = len(g.choices)
        elif g.target == "op":
            raise _NoClosedFormError
        else:
            context_groups.append(g)
    for g in context_groups:
        if g.target != "depth" and g.when:
            raise _NoClosedFormError  # a block that ignores the value could hide it: collisions
    nonempty = 0
    any_empty = False
    for combo in itertools.product(*(g.choices for g in context_groups)):
        context = {g.name: v for g, v in zip(context_groups, combo, strict=True)}
        depth = space.num_layers
        for g in context_groups:
            if g.target == "depth":
                depth = context[g.name]
        if depth < space.min_depth:
            continue  # repaired into a deeper member, which is counted with its own depth
        poly = [1]
        for block in _blocks(space):
            poly = _conv(poly, _block_poly(space, block, depth, context, context_groups))
        nonempty += sum(poly[max(1, space.min_depth) :])
        any_empty = any_empty or (space.min_depth == 0 and poly[0] > 0)
    return n_hidden * (nonempty + int(any_empty))


def _blocks(space: SpaceData) -> list[list[int]]:
    coupled = space.identity_at_block_end or any(g.scope == "block" for g in space.groups)
    if coupled:
        return [
            list(range(s, min(s + space.block_size, space.num_layers)))
            for s in range(0, space.num_layers, space.block_size)
        ]
    return [[i] for i in range(space.num_layers)]


def _block_poly(
    space: SpaceData,
    layers: list[int],
    depth: int,
    context: dict[str, Any],
    context_groups: list[Group],
) -> list[int]:
    block_groups = [g for g in space.groups if g.scope == "block"]
    b = space.block_of(layers[0])
    out = [0] * (len(layers) + 1)
    for combo in itertools.product(*(g.choices_at(b) for g in block_groups)):
        fixed = dict(context)
        fixed.update({g.name: v for g, v in zip(block_groups, combo, strict=True)})
        stats = [_layer_stats(space, i, depth, fixed, context_groups) for i in layers]
        has_depth = any(g.target == "depth" for g in context_groups)
        if has_depth and any(s[0] for s in stats[: max(0, depth - layers[0])]):
            raise _NoClosedFormError  # identity below the depth: two depths give one member
        if space.identity_at_block_end:
            poly = _identities_last_poly(stats)
        else:
            poly = [1]
            for can_drop, n_kept in stats:
                poly = _conv(poly, [int(can_drop), n_kept])
        out[0] = max(out[0], poly[0])  # the all-identity block is one member whatever the combo
        for k in range(1, len(poly)):
            out[k] += poly[k]
    return out


def _identities_last_poly(stats: list[tuple[bool, int]]) -> list[int]:
    n = len(stats)
    if all(s == stats[0] for s in stats):
        can_drop, n_kept = stats[0]
        if can_drop:
            return [n_kept**k for k in range(n + 1)]
        return [0] * n + [n_kept**n]
    raise _NoClosedFormError


def _layer_stats(
    space: SpaceData,
    i: int,
    depth: int,
    fixed: dict[str, Any],
    context_groups: list[Group],
) -> tuple[bool, int]:
    """(can the layer be identity, number of distinct non-identity LayerArch values)."""
    if i >= depth:
        return True, 0
    can_drop = any(g.target == "keep" for g in space.groups)
    op = next((g for g in space.groups if g.target == "op"), None)
    ops = op.choices_at(i) if op is not None else (None,)
    n_kept = 0
    for name in ops:
        template = space.op_template(name) if name is not None else {"block": space.block}
        block = template.pop("block")
        if block == "identity":
            can_drop = True
            continue
        total, empty = _field_counts(space, i, block, template, fixed)
        n_kept += total - empty
        can_drop = can_drop or empty > 0
    return can_drop, n_kept


def _field_counts(
    space: SpaceData, i: int, block: str, template: dict[str, Any], fixed: dict[str, Any]
) -> tuple[int, int]:
    """(value combinations of a non-identity layer, how many of them are empty under drop_empty)."""
    values: dict[str, list[int]] = {k: [v] for k, v in template.items()}
    units: dict[str, int] = {}
    for g in space.groups:
        if g.target in ("depth", "keep", "op") or not g.applies(block):
            continue
        if g.scope == "global" and g.target == "hidden":
            continue
        if g.scope == "unit":
            units[UNIT_TARGETS[g.target]] = g.units
        elif g.scope == "layer":
            values[g.target] = list(g.choices_at(i))
        else:
            values[g.target] = [fixed[g.name]]
    for rule in space.rules:
        if rule.applies(block):
            values[rule.field] = [0]  # one value; its size does not change the count
    factors: dict[str, tuple[int, int]] = {}  # field -> (count, count of zero values)
    for name, n in units.items():
        factors[name] = (2**n, 1)
    paired: set[str] = set()
    for a, b in space.divisible:
        if a in units or b in units or a in paired or b in paired:
            raise _NoClosedFormError
        va, vb = values.get(a, [0]), values.get(b, [0])
        allowed = sorted(va)
        pairs = {(_repair_multiple(x, y, allowed), y) for x in va for y in vb}
        factors[f"{a}|{b}"] = (len(pairs), sum(1 for p in pairs if p == (0, 0)))
        paired.update((a, b))
    for name, vals in values.items():
        if name not in paired:
            factors[name] = (len(set(vals)), int(0 in vals))
    total = math.prod(c for c, _ in factors.values())
    empty = 0
    if space.drop_empty:
        names = empty_fields(space, block)
        if names and any(n in paired for n in names):
            raise _NoClosedFormError
        if names:
            empty = math.prod(factors[k][1] if k in names else factors[k][0] for k in factors)
    return total, empty
