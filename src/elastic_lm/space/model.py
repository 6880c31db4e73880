"""The declarative data of a search space: groups of dimensions, fixed/derived rules, constraints.

A space is plain data (it round-trips through JSON exactly); the behaviour (decode, count, sample)
lives in sibling modules that read this data. A *group* is one searched quantity ("heads", "depth",
"hidden") with one list of choices; its *scope* says how many dimensions it expands to (one, one per
layer, one per block of layers, one per head/unit of every layer). Choices are ordered from
cheapest to most expensive, so the first/last choice of every dimension gives the smallest/largest
member.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from elastic_lm.architecture import BLOCK_TYPES, LayerArch
from elastic_lm.errors import ConfigError

SCOPES: tuple[str, ...] = ("global", "layer", "block", "unit")
# Targets that are not plain LayerArch fields.
SPECIAL_TARGETS: tuple[str, ...] = ("depth", "keep", "op")
# A unit group keeps/drops single heads or FFN units; the matching count field is set to len(ids).
UNIT_TARGETS: dict[str, str] = {"head_ids": "heads", "ffn_ids": "ffn"}
_INT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(LayerArch) if f.name not in ("block", "head_ids", "ffn_ids")
)


@dataclass(frozen=True)
class Dimension:
    """One position of the fixed-length encoding; ``choices`` are the values its index selects."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class Group:
    """One searched quantity and the dimensions it expands to.

    ``target`` is a LayerArch field (``heads``, ``ffn``, ``hidden``...), ``head_ids``/``ffn_ids``
    (with scope ``unit``: one keep bit per head/unit), or one of ``depth`` (first k layers kept),
    ``keep`` (a keep bit per layer) and ``op`` (a named layer template from the space's ``ops``).
    ``hidden`` with scope ``global`` is the architecture's width, otherwise a per-layer override.
    ``when`` limits the group to some block types (others ignore it); ``overrides`` gives single
    positions their own choices, which is how :meth:`SearchSpace.with_choices` narrows one layer.
    """

    name: str
    target: str
    scope: str
    choices: tuple[Any, ...]
    when: tuple[str, ...] = ()
    units: int = 0
    overrides: tuple[tuple[int, tuple[Any, ...]], ...] = ()

    def choices_at(self, position: int) -> tuple[Any, ...]:
        for index, choices in self.overrides:
            if index == position:
                return choices
        return self.choices

    def applies(self, block: str) -> bool:
        return not self.when or block in self.when

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "scope": self.scope,
            "choices": list(self.choices),
        }
        if self.when:
            out["when"] = list(self.when)
        if self.units:
            out["units"] = self.units
        if self.overrides:
            out["overrides"] = {str(i): list(c) for i, c in self.overrides}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        _check_keys("group", data, {f.name for f in fields(cls)})
        overrides = data.get("overrides", {})
        return cls(
            name=str(data["name"]),
            target=str(data["target"]),
            scope=str(data["scope"]),
            choices=tuple(data["choices"]),
            when=tuple(data.get("when", ())),
            units=int(data.get("units", 0)),
            overrides=tuple(sorted((int(i), tuple(c)) for i, c in overrides.items())),
        )


@dataclass(frozen=True)
class Rule:
    """A layer field that is not searched: ``value + layer_width * mul // div`` for some blocks.

    Fixed widths (prune-layer keeps full width) use ``value``; NAS-BERT's heads = width / 64 uses
    ``mul=1, div=64``. Rules are how a space states relations such as heads x head_dim = width.
    """

    field: str
    value: int = 0
    mul: int = 0
    div: int = 1
    when: tuple[str, ...] = ()

    def applies(self, block: str) -> bool:
        return not self.when or block in self.when

    def evaluate(self, width: int) -> int:
        return self.value + width * self.mul // self.div

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        for name, default in (("value", 0), ("mul", 0), ("div", 1)):
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        if self.when:
            out["when"] = list(self.when)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        _check_keys("rule", data, {f.name for f in fields(cls)})
        return cls(
            field=str(data["field"]),
            value=int(data.get("value", 0)),
            mul=int(data.get("mul", 0)),
            div=int(data.get("div", 1)),
            when=tuple(data.get("when", ())),
        )


@dataclass(frozen=True)
class SpaceData:
    """Everything that defines a space; :class:`~elastic_lm.space.SearchSpace` adds behaviour.

    Constraints: ``min_depth`` (at least that many kept layers; repaired by keeping the earliest
    dropped layers), ``drop_empty`` (a layer with 0 heads and 0 FFN units is identity),
    ``identity_at_block_end`` (within a block, identity layers come last; repaired by moving them),
    ``divisible`` (pairs ``(a, b)``: field a must be a multiple of field b; repaired by lowering a).
    """

    name: str
    num_layers: int
    hidden: int
    groups: tuple[Group, ...]
    block: str = "bert"
    block_size: int = 0
    ops: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    rules: tuple[Rule, ...] = ()
    min_depth: int = 0
    drop_empty: bool = False
    identity_at_block_end: bool = False
    divisible: tuple[tuple[str, str], ...] = ()
    description: str = ""

    # ---- derived views -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return -(-self.num_layers // self.block_size) if self.block_size else self.num_layers

    def block_of(self, layer: int) -> int:
        return layer // self.block_size if self.block_size else layer

    def op_template(self, name: str) -> dict[str, Any]:
        """The LayerArch fields an op sets; an op not in ``ops`` is the block of that name."""
        for op_name, template in self.ops:
            if op_name == name:
                return dict(template)
        return {"block": name}

    def group(self, name: str) -> Group | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def positions(self, group: Group) -> list[Any]:
        """The positions a group expands to, in encoding order."""
        if group.scope == "global":
            return [0]
        if group.scope == "layer":
            return list(range(self.num_layers))
        if group.scope == "block":
            return list(range(self.num_blocks))
        return [(i, j) for i in range(self.num_layers) for j in range(group.units)]

    def dimension_name(self, group: Group, position: Any) -> str:
        if group.scope == "global":
            return group.name
        if group.scope == "layer":
            return f"layer{position}.{group.name}"
        if group.scope == "block":
            return f"block{position}.{group.name}"
        return f"layer{position[0]}.{group.name}{position[1]}"

    def position_index(self, group: Group, position: Any) -> int:
        """Index used by ``Group.overrides``: the position's rank inside the group."""
        if group.scope == "unit":
            return position[0] * group.units + position[1]
        return int(position)

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "num_layers": self.num_layers,
            "hidden": self.hidden,
            "block": self.block,
            "groups": [g.to_dict() for g in self.groups],
        }
        if self.block_size:
            out["block_size"] = self.block_size
        if self.ops:
            out["ops"] = {name: dict(t) for name, t in self.ops}
        if self.rules:
            out["rules"] = [r.to_dict() for r in self.rules]
        if self.min_depth:
            out["min_depth"] = self.min_depth
        if self.drop_empty:
            out["drop_empty"] = True
        if self.identity_at_block_end:
            out["identity_at_block_end"] = True
        if self.divisible:
            out["divisible"] = [list(p) for p in self.divisible]
        if self.description:
            out["description"] = self.description
        return out

    @staticmethod
    def kwargs_from_dict(data: dict[str, Any]) -> dict[str, Any]:
        _check_keys("search space", data, {f.name for f in fields(SpaceData)})
        for key in ("name", "num_layers", "hidden", "groups"):
            if key not in data:
                raise ConfigError(f"search space: missing field {key!r}; add it to the space dict")
        return {
            "name": str(data["name"]),
            "num_layers": int(data["num_layers"]),
            "hidden": int(data["hidden"]),
            "groups": tuple(Group.from_dict(g) for g in data["groups"]),
            "block": str(data.get("block", "bert")),
            "block_size": int(data.get("block_size", 0)),
            "ops": tuple(  # sorted: order carries no meaning (op choices order the ops)
                sorted((str(n), tuple(sorted(dict(t).items()))) for n, t in data.get("ops", {}).items())
            ),
            "rules": tuple(Rule.from_dict(r) for r in data.get("rules", ())),
            "min_depth": int(data.get("min_depth", 0)),
            "drop_empty": bool(data.get("drop_empty", False)),
            "identity_at_block_end": bool(data.get("identity_at_block_end", False)),
            "divisible": tuple((str(a), str(b)) for a, b in data.get("divisible", ())),
            "description": str(data.get("description", "")),
        }

    # ---- checks --------------------------------------------------------------------------------
    def check(self) -> None:
        """Reject a malformed space at construction, so decode never meets an impossible case."""
        where = f"search space {self.name!r}"
        if self.num_layers < 1:
            raise ConfigError(f"{where}: num_layers={self.num_layers}; use at least 1")
        if self.block not in BLOCK_TYPES:
            raise ConfigError(f"{where}: block={self.block!r}; allowed: {', '.join(BLOCK_TYPES)}")
        names = [g.name for g in self.groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: group name(s) {dupes} appear twice; rename them")
        for op_name, template in self.ops:
            block = dict(template).get("block")
            if block not in BLOCK_TYPES:
                raise ConfigError(f"{where}: op {op_name!r} has block={block!r}; allowed: {BLOCK_TYPES}")
            unknown = set(dict(template)) - {"block", *_INT_FIELDS}
            if unknown:
                raise ConfigError(f"{where}: op {op_name!r} sets unknown field(s) {sorted(unknown)}")
        templates = [tuple(sorted(t)) for _, t in self.ops]
        if len(set(templates)) != len(templates):
            raise ConfigError(f"{where}: two ops have the same template; each op must differ")
        for g in self.groups:
            self._check_group(g, where)
        for r in self.rules:
            if r.field not in _INT_FIELDS or r.div == 0:
                raise ConfigError(f"{where}: rule field={r.field!r} div={r.div}; need an int field")
            if any(g.target == r.field or UNIT_TARGETS.get(g.target) == r.field for g in self.groups):
                raise ConfigError(f"{where}: field {r.field!r} is both searched and set by a rule")
        if self.block_size < 0 or (self.identity_at_block_end and not self.block_size):
            raise ConfigError(f"{where}: identity_at_block_end needs block_size >= 1")
        targets = {g.target for g in self.groups}
        if self.min_depth and not targets & {"depth", "keep"}:
            raise ConfigError(f"{where}: min_depth={self.min_depth} needs a 'depth' or 'keep' group")
        if self.min_depth and (self.drop_empty or self._op_can_be_identity()):
            raise ConfigError(f"{where}: min_depth cannot be combined with drop_empty or an identity op")
        if self.min_depth > self.num_layers:
            raise ConfigError(f"{where}: min_depth={self.min_depth} > num_layers={self.num_layers}")
        depth = next((g for g in self.groups if g.target == "depth"), None)
        if depth is not None:
            if not all(isinstance(c, int) and 0 <= c <= self.num_layers for c in depth.choices):
                raise ConfigError(f"{where}: depth choices {depth.choices} must lie in 0..layers")
            if max(depth.choices) < self.min_depth:
                raise ConfigError(f"{where}: no depth choice reaches min_depth={self.min_depth}")
        for a, b in self.divisible:
            self._check_divisible(a, b, where)

    def _check_group(self, g: Group, where: str) -> None:
        if g.scope not in SCOPES:
            raise ConfigError(f"{where}: group {g.name!r} scope={g.scope!r}; allowed: {SCOPES}")
        allowed_targets = (*SPECIAL_TARGETS, *UNIT_TARGETS, *_INT_FIELDS)
        if g.target not in allowed_targets:
            raise ConfigError(f"{where}: group {g.name!r} target={g.target!r}; allowed: {allowed_targets}")
        if (g.scope == "unit") != (g.target in UNIT_TARGETS):
            raise ConfigError(f"{where}: group {g.name!r}: scope 'unit' goes with head_ids/ffn_ids")
        if g.scope == "unit" and (g.units < 1 or tuple(g.choices) != (0, 1)):
            raise ConfigError(f"{where}: unit group {g.name!r} needs units >= 1 and choices (0, 1)")
        if g.target in ("depth", "op") and g.scope not in ("global", "layer"):
            raise ConfigError(f"{where}: group {g.name!r} target {g.target!r} needs scope global/layer")
        if g.target == "depth" and g.scope != "global":
            raise ConfigError(f"{where}: group {g.name!r}: depth is one global dimension")
        if g.target == "keep" and (g.scope != "layer" or tuple(g.choices) != (0, 1)):
            raise ConfigError(f"{where}: group {g.name!r}: keep is a per-layer bit with choices (0, 1)")
        if g.scope == "block" and not self.block_size:
            raise ConfigError(f"{where}: group {g.name!r} has scope 'block' but block_size is 0")
        all_choices = [g.choices, *(c for _, c in g.overrides)]
        for choices in all_choices:
            if not choices or len(set(choices)) != len(choices):
                raise ConfigError(
                    f"{where}: group {g.name!r} choices {list(choices)} must be unique, not empty"
                )
            if g.target == "op":
                for op in choices:
                    block = self.op_template(op)["block"]
                    if block not in BLOCK_TYPES:
                        raise ConfigError(f"{where}: op {op!r} is neither in ops nor a block type")
            elif not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in choices):
                raise ConfigError(f"{where}: group {g.name!r} choices must be ints >= 0")
        n_positions = len(self.positions(g))
        for index, _ in g.overrides:
            if not 0 <= index < n_positions:
                raise ConfigError(f"{where}: group {g.name!r} override index {index} out of range")

    def _op_can_be_identity(self) -> bool:
        op = next((g for g in self.groups if g.target == "op"), None)
        if op is None:
            return self.block == "identity"
        all_choices = [op.choices, *(c for _, c in op.overrides)]
        return any(self.op_template(o)["block"] == "identity" for c in all_choices for o in c)

    def _check_divisible(self, a: str, b: str, where: str) -> None:
        if a not in _INT_FIELDS or b not in _INT_FIELDS:
            raise ConfigError(f"{where}: divisible ({a!r}, {b!r}) must name int layer fields")
        for layer in range(self.num_layers):
            a_values = field_values(self, layer, a)
            b_values = field_values(self, layer, b)
            if 0 in b_values:
                raise ConfigError(f"{where}: divisible ({a!r}, {b!r}): {b} may not be 0")
            for vb in b_values:
                if a_values and not any(va % vb == 0 for va in a_values):
                    raise ConfigError(
                        f"{where}: layer {layer}: no {a} choice in {sorted(a_values)} is a "
                        f"multiple of {b}={vb}; add one"
                    )


def field_values(space: SpaceData, layer: int, name: str) -> set[int]:
    """Every value searched groups or rules can give field ``name`` at ``layer`` (empty: none)."""
    out: set[int] = set()
    for g in space.groups:
        if g.target != name:
            continue
        if g.scope == "global":
            out.update(g.choices)
        elif g.scope == "layer":
            out.update(g.choices_at(layer))
        elif g.scope == "block":
            out.update(g.choices_at(space.block_of(layer)))
    for rule in space.rules:
        if rule.field == name:
            out.update(rule.evaluate(w) for w in field_values(space, layer, "hidden") or {space.hidden})
    return out


def _check_keys(what: str, data: dict[str, Any], known: set[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}")
