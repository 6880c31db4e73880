"""Vector <-> Architecture for a declarative space, with canonical repair and validation.

``decode`` is total on in-range vectors: fields a layer's block does not use are ignored, and the
space's constraints are repaired deterministically, so a sampler may propose any vector. ``encode``
maps a member back (unused dimensions get index 0), and ``validate`` is "encode, then check that
decoding gives the same architecture back", which makes the set of valid members exactly the image
of ``decode``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.space.model import UNIT_TARGETS, Group, SpaceData, field_values

_IDENTITY = LayerArch(block="identity")


def layout(space: SpaceData) -> list[tuple[Group, Any]]:
    """(group, position) for every dimension, in encoding order."""
    return [(g, p) for g, p, _ in dimension_table(space)]


@functools.lru_cache(maxsize=64)
def dimension_table(space: SpaceData) -> tuple[tuple[Group, Any, tuple[Any, ...]], ...]:
    """(group, position, choices) for every dimension; cached because spaces are immutable."""
    return tuple(
        (g, p, g.choices_at(space.position_index(g, p))) for g in space.groups for p in space.positions(g)
    )


def choices_of(space: SpaceData, group: Group, position: Any) -> tuple[Any, ...]:
    return group.choices_at(space.position_index(group, position))


def _values(space: SpaceData, vector: Sequence[int]) -> dict[tuple[str, Any], Any]:
    dims = dimension_table(space)
    if len(vector) != len(dims):
        raise ArchitectureError(
            f"space {space.name!r}: vector has {len(vector)} entries; it needs {len(dims)}"
        )
    out: dict[tuple[str, Any], Any] = {}
    for (g, pos, choices), raw in zip(dims, vector, strict=True):
        index = _as_index(raw)  # numpy integers from samplers are fine, floats are not
        if index is None or not 0 <= index < len(choices):
            name = space.dimension_name(g, pos)
            raise ArchitectureError(
                f"dimension {name}: index {raw!r} out of range; use an int in 0..{len(choices) - 1}"
            )
        out[(g.name, pos)] = choices[index]
    return out


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def evenly_spaced(n_layers: int, k: int) -> list[int]:
    """``k`` of ``n_layers`` positions spread evenly, the first and (for k >= 2) the last included:
    a shallow member of a layer-subset space keeps the teacher's output layer (k = 1: layer 0)."""
    if k >= n_layers:
        return list(range(n_layers))
    if k <= 1:
        return [0][:k]
    return sorted({round(i * (n_layers - 1) / (k - 1)) for i in range(k)})


def decode(space: SpaceData, vector: Sequence[int]) -> Architecture:
    """Build the canonical member a vector stands for (deterministic repair, never fails)."""
    values = _values(space, vector)
    L = space.num_layers
    hidden = space.hidden
    depth = L
    keep = [True] * L
    for g in space.groups:
        if g.scope != "global":
            continue
        if g.target == "hidden":
            hidden = values[(g.name, 0)]
        elif g.target == "depth":
            depth = values[(g.name, 0)]
            if depth < space.min_depth:  # repair: the smallest allowed depth that is enough
                depth = min(c for c in g.choices if c >= space.min_depth)
    for g in space.groups:
        if g.target == "keep":
            keep = [bool(values[(g.name, i)]) for i in range(L)]
    kept = [keep[i] and i < depth for i in range(L)]
    missing = space.min_depth - sum(kept)
    order = list(range(L))
    if any(g.target == "keep" for g in space.groups):  # keep bits: spread the repair evenly
        spread = evenly_spaced(min(L, depth), space.min_depth)
        order = spread + [i for i in order if i not in spread]
    for i in order:  # repair: keep dropped layers until min_depth holds
        if missing <= 0:
            break
        if not kept[i] and i < depth:
            kept[i] = True
            missing -= 1
    layers = [_decode_layer(space, values, i, hidden) if kept[i] else _IDENTITY for i in range(L)]
    if space.identity_at_block_end:
        layers = _identities_last(space, layers)
    return Architecture(hidden=hidden, layers=tuple(layers))


def layer_block(space: SpaceData, values: dict[tuple[str, Any], Any], layer: int) -> dict[str, Any]:
    """The op template chosen for a layer (the fixed block when the space has no op group)."""
    for g in space.groups:
        if g.target == "op":
            pos = 0 if g.scope == "global" else layer
            return space.op_template(values[(g.name, pos)])
    return {"block": space.block}


def _decode_layer(space: SpaceData, values: dict[tuple[str, Any], Any], i: int, hidden: int) -> LayerArch:
    template = layer_block(space, values, i)
    block = template.pop("block")
    if block == "identity":
        return _IDENTITY
    fields: dict[str, Any] = dict(template)
    for g in space.groups:
        if g.target in ("depth", "keep", "op") or not g.applies(block):
            continue
        if g.scope == "global":
            if g.target != "hidden":
                fields[g.target] = values[(g.name, 0)]
        elif g.scope == "layer":
            fields[g.target] = values[(g.name, i)]
        elif g.scope == "block":
            fields[g.target] = values[(g.name, space.block_of(i))]
        else:
            ids = tuple(j for j in range(g.units) if values[(g.name, (i, j))])
            fields[g.target] = ids
            fields[UNIT_TARGETS[g.target]] = len(ids)
    width = fields.get("hidden") or hidden
    for rule in space.rules:
        if rule.applies(block):
            fields[rule.field] = rule.evaluate(width)
    for a, b in space.divisible:
        fields[a] = _repair_multiple(fields.get(a, 0), fields.get(b, 0), sorted(field_values(space, i, a)))
    if space.drop_empty and is_empty(space, block, fields):
        return _IDENTITY
    return LayerArch(block=block, **fields)


def _repair_multiple(a: int, b: int, allowed: list[int]) -> int:
    """The largest allowed multiple of b not above a, else the smallest allowed multiple of b."""
    if b == 0 or a % b == 0:
        return a
    multiples = [v for v in allowed if v % b == 0]
    below = [v for v in multiples if v <= a]
    return max(below) if below else min(multiples)


def empty_fields(space: SpaceData, block: str) -> list[str]:
    """The width fields whose all-zero value makes a layer of ``block`` empty (drop_empty)."""
    out = []
    for name in ("heads", "ffn"):
        for g in space.groups:
            target = UNIT_TARGETS.get(g.target, g.target)
            if target == name and g.applies(block) and name not in out:
                out.append(name)
        for rule in space.rules:
            if rule.field == name and rule.applies(block) and name not in out:
                out.append(name)
    return out


def is_empty(space: SpaceData, block: str, fields: dict[str, Any]) -> bool:
    names = empty_fields(space, block)
    return bool(names) and all(fields.get(n, 0) == 0 for n in names)


def _identities_last(space: SpaceData, layers: list[LayerArch]) -> list[LayerArch]:
    out: list[LayerArch] = []
    for start in range(0, len(layers), space.block_size):
        block = layers[start : start + space.block_size]
        kept = [layer for layer in block if not layer.is_identity]
        out.extend(kept + [_IDENTITY] * (len(block) - len(kept)))
    return out


# ---- encode ------------------------------------------------------------------------------------
def encode(space: SpaceData, arch: Architecture) -> list[int]:
    """Index of each dimension's value in ``arch``; raises ArchitectureError naming the field."""
    if len(arch.layers) != space.num_layers:
        raise ArchitectureError(
            f"architecture has {len(arch.layers)} layers; space {space.name!r} has "
            f"{space.num_layers} layer positions (drop a layer with block='identity')"
        )
    vector = []
    unit_ids: dict[tuple[str, int], frozenset[int]] = {}
    for g, pos, choices in dimension_table(space):
        if g.scope == "unit":  # one lookup per layer, not per unit: prune-large has 9k bits
            key = (g.name, pos[0])
            if key not in unit_ids:
                unit_ids[key] = _unit_ids(arch.layers[pos[0]], g, pos[0])
            ids = unit_ids[key]
            vector.append(choices.index(int(pos[1] in ids)) if ids is not _UNUSED else 0)
            continue
        value, where = _value_in(space, arch, g, pos)
        if value is None:
            vector.append(0)
            continue
        if value not in choices:
            raise ArchitectureError(
                f"{where}={value!r} is not allowed in space {space.name!r}; "
                f"allowed: {', '.join(map(str, choices))}"
            )
        vector.append(choices.index(value))
    return vector


def _value_in(space: SpaceData, arch: Architecture, g: Group, pos: Any) -> tuple[Any, str]:
    """The value ``arch`` gives dimension (g, pos), or None where the dimension is unused."""
    layers = arch.layers
    if g.target == "hidden" and g.scope == "global":
        return arch.hidden, "hidden"
    if g.target == "depth":
        last = max((i for i, layer in enumerate(layers) if not layer.is_identity), default=-1)
        return last + 1, "depth (last kept layer + 1)"
    if g.target == "keep":
        return int(not layers[pos].is_identity), f"layer {pos}.keep"
    if g.target == "op":
        indices = range(space.num_layers) if g.scope == "global" else [pos]
        for i in indices:
            op = _op_name(space, g, layers[i], choices_of(space, g, pos), i)
            if op is not None:
                return op, f"layer {i}.block"
        return None, ""
    if g.scope == "global":
        indices = list(range(space.num_layers))
    elif g.scope == "layer":
        indices = [pos]
    elif g.scope == "block":
        start = pos * space.block_size
        indices = list(range(start, min(start + space.block_size, space.num_layers)))
    else:  # pragma: no cover - unit groups are encoded per layer in encode()
        raise AssertionError(g.scope)
    for i in indices:
        layer = layers[i]
        if not layer.is_identity and g.applies(layer.block):
            return getattr(layer, g.target), f"layer {i}.{g.target}"
    return None, ""


_UNUSED: frozenset[int] = frozenset({-1})


def _unit_ids(layer: LayerArch, g: Group, i: int) -> frozenset[int]:
    """The kept ids of a unit group in a layer (``_UNUSED`` where the layer does not use it)."""
    if layer.is_identity or not g.applies(layer.block):
        return _UNUSED
    ids = getattr(layer, g.target)
    if ids is None:  # a count means "the first k"
        ids = tuple(range(getattr(layer, UNIT_TARGETS[g.target])))
    bad = [k for k in ids if not 0 <= k < g.units]
    if bad:
        raise ArchitectureError(f"layer {i}.{g.target} has id(s) {bad}; allowed: 0..{g.units - 1}")
    return frozenset(ids)


def _op_name(space: SpaceData, g: Group, layer: LayerArch, choices: tuple[Any, ...], i: int) -> str | None:
    if layer.is_identity:
        return next((op for op in choices if space.op_template(op)["block"] == "identity"), None)
    for op in choices:
        template = space.op_template(op)
        if all(getattr(layer, k) == v for k, v in template.items()):
            return op
    names = ", ".join(f"{op}={space.op_template(op)}".replace("'", "") for op in choices)
    raise ArchitectureError(
        f"layer {i}.block={layer.block!r} (kernel={layer.kernel}) matches no op of space "
        f"{space.name!r}; allowed: {names}"
    )


# ---- validate ----------------------------------------------------------------------------------
def validate(space: SpaceData, arch: Architecture) -> None:
    """Raise ArchitectureError with one line naming the first offending layer/field."""
    canonical = decode(space, encode(space, arch))
    if canonical == arch:
        return
    if canonical.hidden != arch.hidden:
        raise ArchitectureError(f"hidden={arch.hidden} is not allowed; the member has {canonical.hidden}")
    for i, (got, want) in enumerate(zip(arch.layers, canonical.layers, strict=True)):
        if got == want:
            continue
        for name in ("block", *(f for f in got.to_dict() | want.to_dict() if f != "block")):
            if getattr(got, name) != getattr(want, name):
                raise ArchitectureError(
                    f"layer {i}.{name}={_short(getattr(got, name))} is not allowed in space "
                    f"{space.name!r} ({_reason(space, name, got, want)}); the nearest member has "
                    f"{name}={_short(getattr(want, name))}"
                )
    raise ArchitectureError(f"architecture is not a member of space {space.name!r}")  # pragma: no cover


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 8:
        return f"({', '.join(map(str, value[:8]))}, ... {len(value)} ids)"
    return repr(value)


def _reason(space: SpaceData, name: str, got: LayerArch, want: LayerArch) -> str:
    if name == "block" and space.identity_at_block_end:
        return "identity layers must come last in each block"
    if name == "block" and any(g.target == "depth" for g in space.groups):
        return "depth keeps the first layers: only trailing layers may be identity"
    if name == "block" and space.min_depth:
        return f"at least {space.min_depth} layer(s) must be kept"
    if name == "block" and space.drop_empty and want.is_identity:
        return "a layer with 0 heads and 0 ffn units is identity"
    if name == "block":
        return "layers past the depth are identity"
    for a, b in space.divisible:
        if name == a:
            return f"{a} must be a multiple of {b}={got.__getattribute__(b)}"
    for rule in space.rules:
        if rule.field == name and rule.applies(got.block):
            return f"{name} is fixed by the space: {rule.value} + width * {rule.mul} // {rule.div}"
    for g in space.groups:
        if UNIT_TARGETS.get(g.target) == name or (g.target in UNIT_TARGETS and name == g.target):
            return f"{name} follows the kept ids: heads/ffn = len(head_ids/ffn_ids)"
        if g.target == name and g.scope == "global" and g.applies(got.block):
            return f"all layers share one {name}"
        if g.target == name and g.scope == "block":
            return f"all layers of a block share one {name}"
    return f"{name} does not apply to block {got.block!r} here (leave it at its default)"
