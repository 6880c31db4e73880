"""The elastic backbone ``ElasticModel`` and the shared sub-network API (set / reset / extract).

Layer positions of a super-network hold one module per candidate block type
(``layers.{i}.{block}``);
an extracted model holds exactly one block per kept layer (``layers.{i}``), built at its exact size.
``set_architecture`` narrows every module once and records a plan (module, width) per position, so
the
forward pass is a plain loop with no per-call bookkeeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.model.attention import LayerContext
from elastic_lm.model.blocks import build_block
from elastic_lm.model.config import ElasticConfig
from elastic_lm.model.embeddings import ElasticEmbeddings, RotaryEmbedding
from elastic_lm.model.feedforward import ElasticDepthwiseConv
from elastic_lm.model.primitives import (
    ElasticLayerNorm,
    ElasticRMSNorm,
    fit_width,
    make_norm,
)
from elastic_lm.model.shapes import built_shape, max_shape, resolve


class ElasticPreTrainedModel(PreTrainedModel):
    """Hugging Face plumbing plus the sub-network API every elastic model shares."""

    config_class = ElasticConfig
    config: ElasticConfig
    base_model_prefix = "model"
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, ElasticLayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ElasticRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, ElasticDepthwiseConv):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.bias)
        elif isinstance(module, RotaryEmbedding):
            init.copy_(module.inv_freq, module.compute_inv_freq())
        elif getattr(module, "zero_bias_init", False):
            init.zeros_(module.bias)

    # -- the sub-network API -------------------------------------------------------------------
    @property
    def backbone(self) -> ElasticModel:
        return getattr(self, self.base_model_prefix, self)  # type: ignore[return-value]

    @property
    def architecture(self) -> Architecture:
        """The architecture currently selected (the largest one after ``reset``)."""
        return self.backbone._arch

    def set_architecture(self, arch: Architecture) -> None:
        """Narrow every layer to ``arch``; raises ``ArchitectureError`` when it does not fit."""
        self.backbone._set(arch)
        self._select_head(arch.hidden)

    def reset(self) -> None:
        """Back to the largest network."""
        self.set_architecture(self.backbone.largest())

    def _select_head(self, width: int) -> None:
        """Task heads narrow themselves to the output width; the backbone has none."""

    @contextmanager
    def using(self, arch: Architecture) -> Iterator[Self]:
        """Run with ``arch`` selected, then restore what was selected before."""
        previous = self.architecture
        self.set_architecture(arch)
        try:
            yield self
        finally:
            self.set_architecture(previous)

    def extract(self, arch: Architecture | None = None) -> Self:
        """A standalone model of the same class holding exactly the sub-network ``arch``.

        Its config carries the resolved architecture (explicit sizes, identity layers removed) and
        its weights are copies, so training it does not touch the super-network.
        """
        arch = arch if arch is not None else self.architecture
        shapes = resolve(self.config, arch)
        kept = [(i, s) for i, s in enumerate(shapes) if s is not None]
        fixed = Architecture(
            hidden=arch.hidden, layers=tuple(s.to_layer_arch() for _, s in kept), meta=arch.meta
        )
        data = self.config.to_dict()
        data.update(
            hidden_size=arch.hidden,
            num_layers=len(kept),
            block_candidates=[[s.block] for _, s in kept],
            architecture=fixed.to_dict(),
            layer_sizes=[s.layer_sizes_entry() for _, s in kept],
        )
        for key in ("model_type", "transformers_version"):
            data.pop(key, None)
        new_config = ElasticConfig(**data)
        new = type(self)(new_config)
        source_fixed = self.config.fixed_architecture is not None
        layer_of = {str(n): (i, s.block) for n, (i, s) in enumerate(kept)}
        pattern = re.compile(r"^((?:[\w.]*\.)?layers)\.(\d+)")

        def source_name(owner: str) -> str:
            def sub(m: re.Match[str]) -> str:
                i, block = layer_of[m.group(2)]
                return f"{m.group(1)}.{i}" if source_fixed else f"{m.group(1)}.{i}.{block}"

            return pattern.sub(sub, owner, count=1)

        modules = dict(self.named_modules())
        with self.using(arch), torch.no_grad():
            for name, param in new.named_parameters():
                owner, pname = name.rsplit(".", 1) if "." in name else ("", name)
                mod = modules[source_name(owner)]
                tensor = mod.sliced()[pname] if hasattr(mod, "sliced") else getattr(mod, pname)
                for dim, size in enumerate(param.shape):
                    tensor = tensor.narrow(dim, 0, size)
                param.copy_(tensor)
        ref = next(self.parameters())
        return new.to(device=ref.device, dtype=ref.dtype)


class ElasticModel(ElasticPreTrainedModel):
    """The elastic transformer backbone: embeddings, layer positions, optional final norm."""

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__(config)
        fixed = config.fixed_architecture
        self.embeddings = ElasticEmbeddings(config, config.hidden_size)
        if fixed is None:
            self.layers = nn.ModuleList(  # each position at its own size (``layer_sizes``)
                nn.ModuleDict(
                    {b: build_block(config, max_shape(config, b, layer=i)) for b in cands if b != "identity"}
                )
                for i, cands in enumerate(config.block_candidates)
            )
        else:
            self.layers = nn.ModuleList(
                build_block(config, built_shape(config, fixed, i)) for i in range(config.num_layers)
            )
        self.final_norm = (
            make_norm(config.norm, config.hidden_size, config.norm_eps) if config.final_norm else None
        )
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.rope_theta) if config.positions == "rope" else None
        )
        self._plan: list[tuple[nn.Module, int] | None] = []
        self._cacheable = True
        self._arch = self.largest()
        self._width = config.hidden_size
        self.post_init()
        self._set(self._arch)

    def largest(self) -> Architecture:
        """The full network: the fixed architecture, or every position at its first block type."""
        fixed = self.config.fixed_architecture
        if fixed is not None:
            return fixed
        layers = []
        for i, cands in enumerate(self.config.block_candidates):
            real = [b for b in cands if b != "identity"]
            if real:
                layers.append(max_shape(self.config, real[0], layer=i).to_layer_arch())
            else:
                layers.append(LayerArch(block="identity"))
        return Architecture(hidden=self.config.hidden_size, layers=tuple(layers))

    def _set(self, arch: Architecture) -> None:
        previous = getattr(self, "_arch", None)
        try:
            self._select_layers(arch)
        except ArchitectureError:
            if previous is not None and previous is not arch:  # never leave a half-set model
                self._select_layers(previous)
            raise

    def _select_layers(self, arch: Architecture) -> None:
        shapes = resolve(self.config, arch)
        fixed = self.config.fixed_architecture is not None
        plan: list[tuple[nn.Module, int] | None] = []
        for i, (la, s) in enumerate(zip(arch.layers, shapes, strict=True)):
            if s is None:
                plan.append(None)
                if not fixed:
                    for other in self.layers[i].values():
                        other.reset()
                continue
            module = self.layers[i] if fixed else self.layers[i][la.block]
            module.select(la, s.hidden)
            if not fixed:  # idle candidates go back to full size, so no stale selection lingers
                for name, other in self.layers[i].items():
                    if name != la.block:
                        other.reset()
            plan.append((module, s.hidden))
        self.embeddings.select(arch.hidden)
        self._plan, self._width, self._arch = plan, arch.hidden, arch
        self._number_cache_slots()

    def _number_cache_slots(self) -> None:
        """Give each kept attention layer its KV-cache slot (0, 1, ... in order); layers without
        attention (or without heads) take none, so slot 0 always holds the sequence length."""
        slot, self._cacheable = 0, True
        for step in self._plan:
            if step is None:
                continue
            attention = getattr(step[0], "attention", None)
            if attention is not None and attention.n_heads > 0:
                attention.cache_index = slot
                slot += 1
            elif hasattr(step[0], "conv"):  # a convolution reads neighbouring tokens, not cached
                self._cacheable = False

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word

    def context(
        self,
        shape: tuple[int, int],
        device: torch.device,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        dtype: torch.dtype,
        output_attentions: bool = False,
        cache: Cache | None = None,
    ) -> LayerContext:
        """Masks and RoPE tables for one forward pass (shared by every layer).

        With a ``cache`` holding ``P`` earlier tokens, the ``T`` new queries sit at positions
        ``P..P+T-1`` and see ``P + T`` keys; ``attention_mask`` then covers all of them (as
        ``generate`` passes it).
        """
        B, T = shape
        causal = self.config.is_causal
        past = cache.get_seq_length() if cache is not None else 0
        keys = past + T
        if attention_mask is not None and attention_mask.shape[-1] != keys:
            raise ArchitectureError(
                f"attention_mask covers {attention_mask.shape[-1]} tokens but the cache holds {past} and "
                f"the input adds {T}; pass a mask over all {keys} tokens"
            )
        bias = token_mask = None
        padded = attention_mask is not None and not bool(attention_mask.all())
        if padded or (causal and past and T > 1):
            allowed = torch.ones(B, 1, 1, keys, dtype=torch.bool, device=device)
            if padded:
                assert attention_mask is not None
                token_mask = attention_mask[:, past:]
                allowed = attention_mask.bool()[:, None, None, :]
            if causal:  # query i (at position past + i) sees keys 0..past + i
                tril = torch.ones(T, keys, dtype=torch.bool, device=device).tril(diagonal=past)
                allowed = allowed & tril
            bias = torch.zeros(allowed.shape, dtype=dtype, device=device)
            bias = bias.masked_fill(~allowed, torch.finfo(dtype).min)
        rope = None
        if self.rotary is not None:
            if position_ids is None:
                position_ids = torch.arange(past, keys, device=device).unsqueeze(0).expand(B, T)
            rope = self.rotary(position_ids, dtype)
        is_causal = causal and bias is None and past == 0
        return LayerContext(bias, is_causal, rope, token_mask, output_attentions, cache)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """``hidden_states`` has the embedding output and one entry per layer position (a dropped
        layer repeats its input), each in that layer's width.

        ``use_cache`` (or a ``past_key_values`` cache) keeps every attention layer's keys and values,
        so the next call feeds only the new tokens: what ``generate`` does for causal models.
        """
        cache = past_key_values
        if use_cache and cache is None:
            cache = DynamicCache()
        if cache is not None and not self._cacheable:
            raise ArchitectureError(
                "a KV cache cannot hold separable-convolution layers; run without use_cache "
                "(generate(..., use_cache=False))"
            )
        past = cache.get_seq_length() if cache is not None else 0
        learned = self.embeddings.position is not None
        if learned and position_ids is None and past:
            position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None]
        x = self.embeddings(input_ids, token_type_ids, position_ids if learned else None)
        ctx = self.context(
            (x.shape[0], x.shape[1]),
            x.device,
            attention_mask,
            None if learned else position_ids,
            x.dtype,
            bool(output_attentions),
            cache,
        )
        states: tuple[torch.Tensor, ...] | None = (x,) if output_hidden_states else None
        attns: tuple[torch.Tensor | None, ...] | None = () if output_attentions else None
        for step in self._plan:
            if step is not None:
                block, width = step
                x, w = block(fit_width(x, width), ctx)
                if attns is not None:
                    attns += (w,)
            if states is not None:
                states += (x,)
        x = fit_width(x, self._width)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return BaseModelOutputWithPast(
            last_hidden_state=x, past_key_values=cache, hidden_states=states, attentions=attns
        )

    def forward_layer(
        self,
        index: int,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run only layer position ``index`` (as selected) on ``hidden``: block-wise distillation
        feeds each student block its teacher's previous output. Input of another width is fitted
        (sliced / zero-padded); the output has the layer's width."""
        if not 0 <= index < len(self._plan):
            raise ArchitectureError(f"layer index={index} is outside 0..{len(self._plan) - 1}")
        step = self._plan[index]
        if step is None:
            return hidden
        block, width = step
        shape = (hidden.shape[0], hidden.shape[1])
        ctx = self.context(shape, hidden.device, attention_mask, position_ids, hidden.dtype)
        return block(fit_width(hidden, width), ctx)[0]


__all__ = ["ElasticModel", "ElasticPreTrainedModel"]
