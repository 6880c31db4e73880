"""SearchSpace: the one object that knows the dimensions of a search.

It is the declarative data of :class:`~elastic_lm.space.model.SpaceData` plus behaviour delegated to
small modules (codec, count, operators). Nothing outside this package needs to know a dimension's
name: samplers see index vectors, the super-network asks :meth:`SearchSpace.block_types` and
:meth:`SearchSpace.largest`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.space import codec, count, operators
from elastic_lm.space.model import UNIT_TARGETS, Dimension, SpaceData


@dataclass(frozen=True)
class SearchSpace(SpaceData):
    """A search space over :class:`~elastic_lm.architecture.Architecture` values.

    Build one with :func:`elastic_lm.space.preset` or :meth:`from_dict`. It is immutable: methods
    that change it (``with_choices``) return a new space.
    """

    def __post_init__(self) -> None:
        self.check()

    # ---- encoding ------------------------------------------------------------------------------
    @cached_property
    def _dimensions(self) -> tuple[Dimension, ...]:
        return tuple(
            Dimension(self.dimension_name(g, p), codec.choices_of(self, g, p)) for g, p in codec.layout(self)
        )

    def dimensions(self) -> list[Dimension]:
        """The fixed-order, fixed-length dimensions of the encoding."""
        return list(self._dimensions)

    def encode(self, arch: Architecture) -> list[int]:
        """Index into each dimension's choices; unused dimensions get 0."""
        return codec.encode(self, arch)

    def decode(self, vector: Sequence[int]) -> Architecture:
        """The canonical member for a vector; inconsistent vectors are repaired, never rejected."""
        return codec.decode(self, vector)

    def validate(self, arch: Architecture) -> None:
        """Raise ArchitectureError (one line: layer, field, value, allowed) for a non-member."""
        codec.validate(self, arch)

    def contains(self, arch: Architecture) -> bool:
        try:
            codec.validate(self, arch)
        except ArchitectureError:
            return False
        return True

    # ---- members -------------------------------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct members (a Python int, possibly huge)."""
        return self._size

    @cached_property
    def _size(self) -> int:
        return count.size(self)

    def smallest(self) -> Architecture:
        """First choice in every dimension (choices are ordered cheapest first)."""
        return self.decode(operators.extreme_vector(self, "smallest"))

    def largest(self) -> Architecture:
        """Last choice in every dimension: the super-network the others are cut from."""
        return self.decode(operators.extreme_vector(self, "largest"))

    def middle(self) -> Architecture:
        """The middle choice (index n // 2) in every dimension."""
        return self.decode(operators.extreme_vector(self, "middle"))

    def block_types(self, layer: int) -> tuple[str, ...]:
        """Block types ``layer`` may take, in choice order ("identity" included when reachable)."""
        if not 0 <= layer < self.num_layers:
            raise ArchitectureError(f"layer={layer} out of range; use 0..{self.num_layers - 1}")
        op = next((g for g in self.groups if g.target == "op"), None)
        names = op.choices_at(0 if op.scope == "global" else layer) if op else (None,)
        blocks = [self.op_template(n)["block"] if n is not None else self.block for n in names]
        if "identity" not in blocks and self._identity_reachable(layer, blocks):
            blocks.append("identity")
        return tuple(dict.fromkeys(blocks))

    def largest_layer(self, layer: int, block: str) -> LayerArch:
        """The widest ``block`` position ``layer`` can hold (field-wise maximum over its members).

        The super-network builds each block type at this size; ``largest()`` alone is not enough
        where a position may hold several block types (ELM: BERT or MobileBERT).
        """
        if block not in self.block_types(layer) or block == "identity":
            raise ArchitectureError(
                f"layer {layer} cannot hold block {block!r}; allowed: {self.block_types(layer)}"
            )
        base = operators.extreme_vector(self, "largest")
        candidates: list[LayerArch] = []
        dims = codec.dimension_table(self)
        op_dims = [d for d, (g, _, _) in enumerate(dims) if g.target == "op"]
        names = {name for d in op_dims for name in dims[d][2]}
        for name in sorted(n for n in names if self.op_template(n)["block"] == block):
            vector = list(base)
            for d in op_dims:  # the same op everywhere: no identity, so nothing moves
                vector[d] = dims[d][2].index(name) if name in dims[d][2] else vector[d]
            candidates.append(self.decode(vector).layers[layer])
        if not op_dims:
            candidates.append(self.decode(base).layers[layer])
        widest: dict[str, Any] = {}
        for cand in candidates:
            if cand.block != block:
                continue
            for key, value in cand.to_dict().items():
                if key == "block":
                    continue
                if isinstance(value, list):
                    value = tuple(sorted(set(widest.get(key, ())) | set(value)))
                widest[key] = max(widest.get(key, value), value)
        return LayerArch(block=block, **widest)

    def _identity_reachable(self, layer: int, blocks: list[str]) -> bool:
        for g in self.groups:
            if g.target == "keep" and self.num_layers > self.min_depth:
                return True
            if g.target == "depth" and any(self.min_depth <= c <= layer for c in g.choices):
                return True
            if g.target == "op" and self.identity_at_block_end:
                b = self.block_of(layer)
                same_block = [i for i in range(self.num_layers) if self.block_of(i) == b]
                if any(
                    self.op_template(o)["block"] == "identity"
                    for i in same_block
                    for o in g.choices_at(0 if g.scope == "global" else i)
                ):
                    return True
        return self.drop_empty and self._can_be_empty(layer, blocks)

    def _can_be_empty(self, layer: int, blocks: list[str]) -> bool:
        for block in blocks:
            names = codec.empty_fields(self, block)
            if names and all(0 in codec.field_values(self, layer, n) or self._unit_group(n) for n in names):
                return True
        return False

    def _unit_group(self, field: str) -> bool:
        return any(g.scope == "unit" and UNIT_TARGETS[g.target] == field for g in self.groups)

    # ---- search operators ----------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Architecture:
        """Uniform over the encoding, then decode (so repaired members are somewhat more likely)."""
        return self.decode(operators.sample_vector(self, rng))

    def sample_stratified(
        self,
        rng: random.Random,
        size_fn: Callable[[Architecture], float],
        n_bins: int = 5,
    ) -> Architecture:
        """A member from a uniformly chosen size bin, so small and large sub-networks both appear.

        Bin edges are quantiles of ``size_fn`` over a fixed-seed sample of the space, computed once
        per (size_fn, n_bins); with discrete sizes equal edges merge, leaving fewer bins.
        """
        return operators.sample_stratified(self, rng, size_fn, self.size_bins(size_fn, n_bins))

    def size_bins(self, size_fn: Callable[[Architecture], float], n_bins: int = 5) -> list[float]:
        """Inner bin edges of ``sample_stratified`` (bin k: edges[k-1] <= size < edges[k])."""
        key = (size_fn, n_bins)
        if key not in self._bin_cache:
            self._bin_cache[key] = operators.size_bin_edges(self, size_fn, n_bins)
        return self._bin_cache[key]

    @cached_property
    def _bin_cache(self) -> dict[Any, list[float]]:
        return {}

    def mutate(self, arch: Architecture, rng: random.Random, rate: float = 0.2) -> Architecture:
        return operators.mutate(self, arch, rng, rate)

    def crossover(self, a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
        return operators.crossover(self, a, b, rng)

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Members one step away in one dimension of the encoding (repaired where needed)."""
        return operators.neighbours(self, arch)

    # ---- changing and saving -------------------------------------------------------------------
    def with_choices(self, dimension_name_or_group: str, choices: Sequence[Any]) -> SearchSpace:
        """A new space where a group ("heads") or one dimension ("layer3.heads") has new choices.

        ELM's dynamic modules grow and shrink widths during training: that is a new space with the
        same dimensions and other choices, so encodings keep their length.
        """
        new = tuple(choices)
        group = self.group(dimension_name_or_group)
        if group is not None:
            changed = replace(group, choices=new, overrides=())
            return self._with_group(changed)
        for g, pos in codec.layout(self):
            if self.dimension_name(g, pos) == dimension_name_or_group:
                index = self.position_index(g, pos)
                overrides = dict(g.overrides)
                overrides[index] = new
                changed = replace(g, overrides=tuple(sorted(overrides.items())))
                return self._with_group(changed)
        groups = ", ".join(g.name for g in self.groups)
        raise ConfigError(
            f"space {self.name!r} has no group or dimension {dimension_name_or_group!r}; groups: "
            f"{groups}; dimensions look like {self._dimensions[-1].name!r}"
        )

    def _with_group(self, changed: Any) -> SearchSpace:
        groups = tuple(changed if g.name == changed.name else g for g in self.groups)
        return replace(self, groups=groups)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Inverse of :meth:`to_dict` (the format of YAML/JSON space files)."""
        return cls(**SpaceData.kwargs_from_dict(data))

    def __repr__(self) -> str:
        return (
            f"SearchSpace(name={self.name!r}, layers={self.num_layers}, "
            f"dimensions={len(self._dimensions)}, groups={[g.name for g in self.groups]})"
        )
