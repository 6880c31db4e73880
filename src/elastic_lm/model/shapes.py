"""Concrete per-layer sizes: what a ``LayerArch`` means once its defaults are filled in.

``heads`` and ``ffn`` are counts (0 keeps none: a pruned sub-layer). ``kernel``, ``bottleneck`` and
``ffn_stack`` cannot be 0, so there 0 means the largest; ``kv_heads`` 0 is derived from ``heads``.

The one home of shape arithmetic: shared by the model (to build an extracted layer at exactly its
size), the analytic size metrics and the latency predictors, so that all agree on the same rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.model.attention import select_heads
from elastic_lm.model.config import ElasticConfig


@dataclass(frozen=True)
class LayerShape:
    """Exact sizes of one layer (the resolved form of a ``LayerArch``)."""

    block: str
    hidden: int
    heads: int = 0
    kv_heads: int = 0
    ffn: int = 0
    kernel: int = 0
    bottleneck: int = 0
    ffn_stack: int = 0

    def to_layer_arch(self) -> LayerArch:
        """Explicit sizes (what an extracted model's config records)."""
        return LayerArch(**asdict(self))

    def layer_sizes_entry(self) -> dict[str, dict[str, int]]:
        """This layer's ``ElasticConfig.layer_sizes`` entry: an extracted model records its layers'
        own bounds, since the super-network's per-position sizes no longer line up with its layers.
        A count of 0 (a pruned sub-layer) is left to the explicit architecture."""
        sizes: dict[str, int] = {}
        if self.ffn:
            sizes["intermediate_size"] = self.ffn
        if self.heads:
            sizes["num_attention_heads"], sizes["num_key_value_heads"] = self.heads, self.kv_heads
        return {self.block: sizes} if sizes else {}


USES: dict[str, frozenset[str]] = {
    "bert": frozenset({"heads", "ffn"}),
    "mobilebert": frozenset({"heads", "ffn", "bottleneck", "ffn_stack"}),
    "attention": frozenset({"heads"}),
    "ffn": frozenset({"ffn"}),
    "sepconv": frozenset({"kernel"}),
    "llama": frozenset({"heads", "ffn"}),
    "gpt2": frozenset({"heads", "ffn"}),
    "identity": frozenset(),
}


def max_shape(
    config: ElasticConfig, block: str, hidden: int | None = None, layer: int | None = None
) -> LayerShape:
    """The largest layer of a block type that a super-network config allows (at position ``layer``:
    its ``layer_sizes`` override the global FFN width and head counts, which a resize changed)."""
    uses = USES[block]
    over = config.layer_override(layer, block)
    heads, kv = config.layer_heads(layer, block)
    return LayerShape(
        block=block,
        hidden=hidden or config.hidden_size,
        heads=heads if "heads" in uses else 0,
        kv_heads=kv if "heads" in uses else 0,
        ffn=over.get("intermediate_size", config.intermediate_size) if "ffn" in uses else 0,
        kernel=config.conv_kernel_size if "kernel" in uses else 0,
        bottleneck=config.bottleneck_size if "bottleneck" in uses else 0,
        ffn_stack=config.ffn_stack if "ffn_stack" in uses else 0,
    )


def resolve_layer(la: LayerArch, width: int, full: LayerShape) -> LayerShape:
    """Fill a layer's defaults from ``full`` (its largest size) and check it fits."""
    uses = USES[la.block]
    heads = kv = 0
    if "heads" in uses:
        q, k = select_heads(full.heads, full.kv_heads, la.heads, la.kv_heads, la.head_ids)
        heads, kv = len(q), len(k)
    ffn = 0
    if "ffn" in uses:
        ffn = len(la.ffn_ids) if la.ffn_ids is not None else la.ffn
    out = LayerShape(
        block=la.block,
        hidden=width,
        heads=heads,
        kv_heads=kv,
        ffn=ffn,
        kernel=(la.kernel or full.kernel) if "kernel" in uses else 0,
        bottleneck=(la.bottleneck or full.bottleneck) if "bottleneck" in uses else 0,
        ffn_stack=(la.ffn_stack or full.ffn_stack) if "ffn_stack" in uses else 0,
    )
    for name in ("hidden", "ffn", "kernel", "bottleneck", "ffn_stack"):
        if getattr(out, name) > getattr(full, name):
            raise ArchitectureError(
                f"{la.block} layer {name}={getattr(out, name)} exceeds this position's largest "
                f"{name}={getattr(full, name)}; choose at most {getattr(full, name)}"
            )
    return out


def resolve(config: ElasticConfig, arch: Architecture) -> list[LayerShape | None]:
    """One resolved shape per layer position (``None`` for identity), checked against ``config``."""
    fixed = config.fixed_architecture
    if len(arch.layers) != config.num_layers:
        raise ArchitectureError(
            f"architecture has {len(arch.layers)} layers but the model has {config.num_layers} "
            "layer positions; give one LayerArch per position (identity to drop one)"
        )
    hidden_max = config.hidden_size
    if arch.hidden > hidden_max:
        raise ArchitectureError(f"hidden={arch.hidden} exceeds the model's {hidden_max}; choose less")
    shapes: list[LayerShape | None] = []
    for i, la in enumerate(arch.layers):
        if la.is_identity:
            shapes.append(None)
            continue
        if la.block not in config.block_candidates[i]:
            raise ArchitectureError(
                f"layer {i} block={la.block!r} is not a candidate there; "
                f"choose one of {config.block_candidates[i]} or 'identity'"
            )
        width = arch.layer_hidden(i)
        full = built_shape(config, fixed, i) if fixed is not None else max_shape(config, la.block, layer=i)
        shapes.append(resolve_layer(la, width, full))
    return shapes


def built_shape(config: ElasticConfig, fixed: Architecture, index: int) -> LayerShape:
    """The size layer ``index`` of a model with a fixed architecture is built at."""
    la, width = fixed.layers[index], fixed.layer_hidden(index)
    return resolve_layer(la, width, max_shape(config, la.block, width, layer=index))
