"""``ElasticConfig``: the shape of a super-network (or, with ``architecture`` set, of one extracted
model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from transformers import PreTrainedConfig

from elastic_lm.architecture import BLOCK_TYPES, Architecture, LayerArch
from elastic_lm.errors import ConfigError

TASKS: tuple[str, ...] = ("masked-lm", "causal-lm", "sequence-classification")

# The fields one entry of ``layer_sizes[i][block]`` may override (a resized position's own maxima).
LAYER_SIZE_FIELDS: tuple[str, ...] = ("intermediate_size", "num_attention_heads", "num_key_value_heads")


class ElasticConfig(PreTrainedConfig):
    """Upper bounds of every elastic dimension plus the fixed choices (norm, positions, task).

    ``block_candidates[i]`` lists the block types layer position ``i`` can take ("identity" is
    always
    allowed). ``architecture`` (an :meth:`Architecture.to_dict`) is set only for an extracted model:
    then each layer is built at exactly that layer's size and ``block_candidates`` has one entry
    each.

    ``layer_sizes[i][block]`` (optional) overrides ``intermediate_size``, ``num_attention_heads``
    and ``num_key_value_heads`` for one block type at position ``i``: ELM dynamic modules widen or
    prune single positions, so a position may be built smaller or wider than its neighbours. The
    global fields stay upper bounds of every position.
    """

    model_type = "elastic-lm"
    # the standard name transformers' generation and cache code reads (one KV-cache slot per position)
    attribute_map: ClassVar[dict[str, str]] = {"num_hidden_layers": "num_layers"}

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_size: int = 768
    num_layers: int = 12
    block_candidates: list | None = None
    num_attention_heads: int = 12
    head_dim: int = 64
    num_key_value_heads: int = 0  # 0: as many as query heads (plain multi-head attention)
    intermediate_size: int = 3072
    bottleneck_size: int = 128
    ffn_stack: int = 4
    conv_kernel_size: int = 7
    hidden_act: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-12
    positions: str = "learned"
    rope_theta: float = 10000.0
    position_offset: int = 0  # RoBERTa: positions count from pad_token_id + 1, skipping padding
    embedding_norm: bool = True
    final_norm: bool = False
    use_bias: bool = True
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    task: str = "masked-lm"
    pooling: str = "first"
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True
    architecture: dict | None = None
    layer_sizes: list | None = None  # [{block: {field: size}}] per position; see the class docstring

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if not self.num_key_value_heads:
            self.num_key_value_heads = self.num_attention_heads
        if self.block_candidates is None:
            self.block_candidates = [["bert"] for _ in range(self.num_layers)]
        self.block_candidates = [list(c) for c in self.block_candidates]
        if self.layer_sizes is not None:  # plain JSON-safe copies (a saved config reloads equal)
            self.layer_sizes = [
                {str(b): {str(k): int(v) for k, v in sizes.items()} for b, sizes in dict(entry).items()}
                for entry in self.layer_sizes
            ]
        self._check()

    def _check(self) -> None:
        def bad(field: str, value: object, fix: str) -> ConfigError:
            return ConfigError(f"ElasticConfig.{field}={value!r} is not allowed; {fix}")

        if self.task not in TASKS:
            raise bad("task", self.task, f"use one of {', '.join(TASKS)}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise bad("norm", self.norm, "use 'layernorm' or 'rmsnorm'")
        if self.positions not in ("learned", "rope"):
            raise bad("positions", self.positions, "use 'learned' or 'rope'")
        if self.pooling not in ("first", "last"):
            raise bad("pooling", self.pooling, "use 'first' or 'last'")
        if len(self.block_candidates) != self.num_layers:
            raise bad(
                "block_candidates",
                f"<{len(self.block_candidates)} entries>",
                f"give one list per layer position (num_layers={self.num_layers})",
            )
        for cands in self.block_candidates:
            for b in cands:
                if b not in BLOCK_TYPES:
                    raise bad("block_candidates", b, f"use block types from {', '.join(BLOCK_TYPES)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise bad(
                "num_key_value_heads",
                self.num_key_value_heads,
                "it must divide num_attention_heads",
            )
        if self.conv_kernel_size % 2 != 1:
            raise bad("conv_kernel_size", self.conv_kernel_size, "use an odd kernel (e.g. 7)")
        self._check_layer_sizes(bad)

    def _check_layer_sizes(self, bad: Any) -> None:
        """Each override names a candidate block, a known field, and stays within the global bound."""
        if self.layer_sizes is None:
            return
        if len(self.layer_sizes) != self.num_layers:
            raise bad(
                "layer_sizes",
                f"<{len(self.layer_sizes)} entries>",
                f"give one dict per layer position (num_layers={self.num_layers}), {{}} for none",
            )
        for i, entry in enumerate(self.layer_sizes):
            for block, sizes in entry.items():
                if block not in self.block_candidates[i] or block == "identity":
                    raise bad(
                        f"layer_sizes[{i}]",
                        block,
                        f"use block types that are candidates there ({self.block_candidates[i]})",
                    )
                for key, value in sizes.items():
                    if key not in LAYER_SIZE_FIELDS:
                        raise bad(
                            f"layer_sizes[{i}][{block!r}]",
                            key,
                            f"use keys from {', '.join(LAYER_SIZE_FIELDS)}",
                        )
                    bound = getattr(self, key)
                    if not 1 <= value <= bound:
                        raise bad(
                            f"layer_sizes[{i}][{block!r}][{key!r}]",
                            value,
                            f"use 1..{bound} (the global {key} bounds every position; raise it first)",
                        )
                heads, kv = self.layer_heads(i, block)
                if heads % kv:
                    raise bad(
                        f"layer_sizes[{i}][{block!r}]",
                        sizes,
                        f"its {kv} KV heads must divide its {heads} query heads",
                    )

    def layer_override(self, layer: int | None, block: str) -> dict[str, int]:
        """The ``layer_sizes`` entry of ``block`` at position ``layer`` ({} when none)."""
        if layer is None or self.layer_sizes is None:
            return {}
        return self.layer_sizes[layer].get(block, {})

    def layer_heads(self, layer: int | None, block: str) -> tuple[int, int]:
        """(query heads, KV heads) position ``layer`` builds for ``block``.

        A position that overrides only the query heads of a multi-head config stays multi-head (its
        KV heads follow): that is what removing heads from a multi-head layer leaves.
        """
        over = self.layer_override(layer, block)
        heads = over.get("num_attention_heads", self.num_attention_heads)
        mha = self.num_key_value_heads == self.num_attention_heads
        kv = over.get("num_key_value_heads", heads if mha else self.num_key_value_heads)
        return heads, kv

    @property
    def is_causal(self) -> bool:
        return self.task == "causal-lm"

    @property
    def fixed_architecture(self) -> Architecture | None:
        return None if self.architecture is None else Architecture.from_dict(self.architecture)

    @classmethod
    def for_supernet(
        cls,
        largest: Architecture,
        block_types: Sequence[Sequence[str]],
        vocab_size: int,
        task: str = "masked-lm",
        extra_layers: Sequence[LayerArch] = (),
        **shape: Any,
    ) -> ElasticConfig:
        """A super-network big enough for every member of a search space.

        ``largest`` is the space's largest member (its per-layer sizes become the upper bounds) and
        ``block_types[i]`` the block types layer ``i`` can take; ``extra_layers`` adds bounds that
        ``largest`` cannot show (the widest MobileBERT where the largest member is all BERT). Other
        fields (``head_dim``, ``norm``, ``positions``...) come from ``shape``.
        """
        if len(block_types) != len(largest.layers):
            raise ConfigError(
                f"block_types has {len(block_types)} entries but the largest architecture has "
                f"{len(largest.layers)} layers; give one tuple of block types per layer"
            )

        every = [*largest.layers, *extra_layers]

        def biggest(name: str, default: int) -> int:
            values = [getattr(layer, name) for layer in every]
            if name == "heads":
                values += [len(la.head_ids) for la in every if la.head_ids is not None]
            if name == "ffn":
                values += [len(la.ffn_ids) for la in every if la.ffn_ids is not None]
            return max([v for v in values if v] or [default])

        hidden = max([largest.hidden] + [la.hidden for la in every])
        fields: dict[str, Any] = {
            "hidden_size": hidden,
            "num_layers": len(largest.layers),
            "block_candidates": [list(b) for b in block_types],
            "num_attention_heads": biggest("heads", 12),
            "num_key_value_heads": biggest("kv_heads", 0),
            "intermediate_size": biggest("ffn", 4 * hidden),
            "bottleneck_size": biggest("bottleneck", 128),
            "ffn_stack": biggest("ffn_stack", 1),
            "conv_kernel_size": biggest("kernel", 7),
        }
        fields["head_dim"] = shape.pop("head_dim", max(1, hidden // fields["num_attention_heads"]))
        fields.update(shape)
        return cls(vocab_size=vocab_size, task=task, **fields)

    @classmethod
    def from_space(cls, space: Any, vocab_size: int, task: str = "masked-lm", **shape: Any) -> ElasticConfig:
        """:meth:`for_supernet` from a search space (duck-typed: ``largest()``,
        ``block_types(layer)`` and, where it has one, ``largest_layer(layer, block)``)."""
        largest = space.largest()
        block_types = [tuple(space.block_types(i)) for i in range(len(largest.layers))]
        extra: list[LayerArch] = []
        if hasattr(space, "largest_layer"):
            for i, types in enumerate(block_types):
                extra += [space.largest_layer(i, b) for b in types if b != "identity"]
        return cls.for_supernet(largest, block_types, vocab_size, task, extra_layers=extra, **shape)
