"""The architecture value: what one sub-network is, independent of any search space or model.

An :class:`Architecture` has one :class:`LayerArch` per layer position of the super-network (a fixed
length, so samplers see fixed-length vectors); a dropped layer is ``block="identity"``. It serialises
to JSON and back exactly, and is hashable so evaluations can be cached by architecture.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

BLOCK_TYPES: tuple[str, ...] = (
    "bert",  # post-LN attention + FFN (BERT / RoBERTa / MiniLM)
    "mobilebert",  # bottleneck in/out projections, attention in the bottleneck, stacked FFNs
    "attention",  # NAS-BERT op: multi-head attention sub-layer alone (residual + LN)
    "ffn",  # NAS-BERT op: feed-forward sub-layer alone (residual + LN)
    "sepconv",  # NAS-BERT op: depthwise-separable convolution (kernel 3 / 5 / 7)
    "llama",  # pre-RMSNorm, RoPE, SwiGLU, grouped-query attention
    "gpt2",  # pre-LN, learned positions, GELU FFN, causal attention
    "identity",  # the layer is dropped
)


@dataclass(frozen=True)
class LayerArch:
    """The choices made for one layer position.

    Counts mean "the first k" (after importance reordering); ``head_ids`` / ``ffn_ids`` name an
    explicit subset instead (the prune-large space keeps or drops each head and unit). Fields that do
    not apply to a block type stay 0 / None. ``hidden`` overrides the global width for this layer
    (NAS-BERT gives each block its own width); 0 means the architecture's ``hidden``.
    """

    block: str
    heads: int = 0
    kv_heads: int = 0
    ffn: int = 0
    kernel: int = 0
    bottleneck: int = 0
    ffn_stack: int = 0
    hidden: int = 0
    head_ids: tuple[int, ...] | None = None
    ffn_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {self.block!r}; allowed: {', '.join(BLOCK_TYPES)}")
        for name in ("head_ids", "ffn_ids"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(int(v) for v in value))

    @property
    def is_identity(self) -> bool:
        return self.block == "identity"

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from their default, so JSON stays short and readable."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "block" or value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerArch:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown layer field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Architecture:
    """One sub-network: a global width and one :class:`LayerArch` per super-network layer."""

    hidden: int
    layers: tuple[LayerArch, ...]
    meta: tuple[tuple[str, Any], ...] = field(default=(), compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def depth(self) -> int:
        """Number of layers that are not dropped."""
        return sum(not layer.is_identity for layer in self.layers)

    def layer_hidden(self, index: int) -> int:
        """The width the residual stream has inside layer ``index``."""
        return self.layers[index].hidden or self.hidden

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hidden": self.hidden,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        unknown = set(data) - {"hidden", "layers", "meta"}
        if unknown:
            raise ValueError(f"unknown architecture field(s) {sorted(unknown)}")
        return cls(
            hidden=int(data["hidden"]),
            layers=tuple(LayerArch.from_dict(d) for d in data["layers"]),
            meta=tuple(sorted(data.get("meta", {}).items())),
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.from_dict(json.loads(text))

    def replace_layer(self, index: int, layer: LayerArch) -> Architecture:
        layers = list(self.layers)
        layers[index] = layer
        return Architecture(hidden=self.hidden, layers=tuple(layers), meta=self.meta)

    def key(self) -> str:
        """A stable identity for caching evaluations (meta excluded)."""
        data = asdict(self)
        data.pop("meta")
        return json.dumps(data, sort_keys=True, default=list)
