"""Transformer blocks, one readable class each. Every block maps (B, T, h) -> (B, T, h).

Post-LN blocks (BERT, MobileBERT, the NAS-BERT ops) normalise after the residual sum; pre-norm
blocks
(Llama, GPT-2) normalise the sub-layer input and leave the residual stream untouched.
``select(layer, width)`` narrows a block to a sub-network layer; ``reset()`` restores its full size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from elastic_lm.architecture import LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.model.attention import ElasticAttention, LayerContext
from elastic_lm.model.config import ElasticConfig
from elastic_lm.model.feedforward import ElasticFFN, ElasticSepConv
from elastic_lm.model.primitives import ElasticLinear, make_norm, make_selection
from elastic_lm.model.shapes import LayerShape

AttnOut = tuple[torch.Tensor, torch.Tensor | None]


def _attention(config: ElasticConfig, s: LayerShape, width: int) -> ElasticAttention:
    return ElasticAttention(
        width,
        s.heads,
        s.kv_heads,
        config.head_dim,
        bias=config.use_bias,
        dropout=config.attention_probs_dropout_prob,
    )


class BertBlock(nn.Module):
    """BERT layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: ElasticConfig, s: LayerShape) -> None:
        super().__init__()
        self.attention = _attention(config, s, s.hidden)
        self.norm1 = make_norm(config.norm, s.hidden, config.norm_eps)
        self.ffn = ElasticFFN(s.hidden, s.ffn, config.hidden_act, False, config.use_bias)
        self.norm2 = make_norm(config.norm, s.hidden, config.norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def select(self, la: LayerArch, width: int) -> None:
        self.attention.select(width, la.heads, la.kv_heads, la.head_ids)
        self.ffn.select(width, la.ffn, la.ffn_ids)

    def reset(self) -> None:
        self.attention.reset()
        self.ffn.reset()

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        a, w = self.attention(x, ctx)
        x = self.norm1(x + self.dropout(a))
        x = self.norm2(x + self.dropout(self.ffn(x)))
        return x, w


class AttentionBlock(nn.Module):
    """NAS-BERT attention op: x = LN(x + Attn(x))."""

    def __init__(self, config: ElasticConfig, s: LayerShape) -> None:
        super().__init__()
        self.attention = _attention(config, s, s.hidden)
        self.norm = make_norm(config.norm, s.hidden, config.norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def select(self, la: LayerArch, width: int) -> None:
        self.attention.select(width, la.heads, la.kv_heads, la.head_ids)

    def reset(self) -> None:
        self.attention.reset()

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        a, w = self.attention(x, ctx)
        return self.norm(x + self.dropout(a)), w


class FFNBlock(nn.Module):
    """NAS-BERT feed-forward op: x = LN(x + FFN(x))."""

    def __init__(self, config: ElasticConfig, s: LayerShape) -> None:
        super().__init__()
        self.ffn = ElasticFFN(s.hidden, s.ffn, config.hidden_act, False, config.use_bias)
        self.norm = make_norm(config.norm, s.hidden, config.norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def select(self, la: LayerArch, width: int) -> None:
        self.ffn.select(width, la.ffn, la.ffn_ids)

    def reset(self) -> None:
        self.ffn.reset()

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        return self.norm(x + self.dropout(self.ffn(x))), None


class SepConvBlock(nn.Module):
    """NAS-BERT separable convolution op: x = LN(x + Pointwise(act(Depthwise_k(x))))."""

    def __init__(self, config: ElasticConfig, s: LayerShape) -> None:
        super().__init__()
        self.conv = ElasticSepConv(s.hidden, s.kernel, config.hidden_act, config.use_bias)
        self.norm = make_norm(config.norm, s.hidden, config.norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def select(self, la: LayerArch, width: int) -> None:
        self.conv.select(width, la.kernel)

    def reset(self) -> None:
        self.conv.reset()

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        return self.norm(x + self.dropout(self.conv(x, ctx.token_mask))), None


class MobileBertBlock(nn.Module):
    """MobileBERT-style bottleneck: project h -> b, attention and ``ffn_stack`` FFNs at width b,
    project b -> h, then x = LN(x + out).
    """

    def __init__(self, config: ElasticConfig, s: LayerShape) -> None:
        super().__init__()
        b = s.bottleneck
        self.hidden, self.bottleneck = s.hidden, b
        self.bottleneck_in = ElasticLinear(s.hidden, b, config.use_bias)
        self.norm_in = make_norm(config.norm, b, config.norm_eps)
        self.attention = _attention(config, s, b)
        self.norm_attn = make_norm(config.norm, b, config.norm_eps)
        self.ffns = nn.ModuleList(
            ElasticFFN(b, s.ffn, config.hidden_act, False, config.use_bias) for _ in range(s.ffn_stack)
        )
        self.ffn_norms = nn.ModuleList(make_norm(config.norm, b, config.norm_eps) for _ in range(s.ffn_stack))
        self.bottleneck_out = ElasticLinear(b, s.hidden, config.use_bias)
        self.norm_out = make_norm(config.norm, s.hidden, config.norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.n_ffn = s.ffn_stack

    def select(self, la: LayerArch, width: int) -> None:
        b = la.bottleneck or self.bottleneck
        n = la.ffn_stack or len(self.ffns)
        if b > self.bottleneck or n > len(self.ffns):
            raise ArchitectureError(
                f"mobilebert bottleneck={b}, ffn_stack={n} exceed "
                f"{self.bottleneck}, {len(self.ffns)}; choose smaller values"
            )
        hid, bot = make_selection(width, self.hidden), make_selection(b, self.bottleneck)
        self.bottleneck_in.select(bot, hid)
        self.attention.select(b, la.heads, la.kv_heads, la.head_ids)
        for ffn in self.ffns:
            ffn.select(b, la.ffn, la.ffn_ids)
        self.bottleneck_out.select(hid, bot)
        self.n_ffn = n

    def reset(self) -> None:
        self.bottleneck_in.reset()
        self.bottleneck_out.reset()
        self.attention.reset()
        for ffn in self.ffns:
            ffn.reset()
        self.n_ffn = len(self.ffns)

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        z = self.norm_in(self.bottleneck_in(x))
        a, w = self.attention(z, ctx)
        z = self.norm_attn(z + self.dropout(a))
        for i in range(self.n_ffn):
            z = self.ffn_norms[i](z + self.dropout(self.ffns[i](z)))
        return self.norm_out(x + self.dropout(self.bottleneck_out(z))), w


class PreNormBlock(nn.Module):
    """Llama / GPT-2 layer: x = x + Attn(N(x)); x = x + FFN(N(x)). Llama's FFN is gated (SwiGLU)."""

    def __init__(self, config: ElasticConfig, s: LayerShape, gated: bool) -> None:
        super().__init__()
        self.norm1 = make_norm(config.norm, s.hidden, config.norm_eps)
        self.attention = _attention(config, s, s.hidden)
        self.norm2 = make_norm(config.norm, s.hidden, config.norm_eps)
        self.ffn = ElasticFFN(s.hidden, s.ffn, config.hidden_act, gated, config.use_bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    select = BertBlock.select
    reset = BertBlock.reset

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> AttnOut:
        a, w = self.attention(self.norm1(x), ctx)
        x = x + self.dropout(a)
        return x + self.dropout(self.ffn(self.norm2(x))), w


# Block type -> its module class, called as ``cls(config, shape)``. A new block type goes here, in
# ``architecture.BLOCK_TYPES`` and in ``shapes.USES`` (which sizes it reads).
BLOCKS: dict[str, Callable[[ElasticConfig, LayerShape], nn.Module]] = {
    "bert": BertBlock,
    "mobilebert": MobileBertBlock,
    "attention": AttentionBlock,
    "ffn": FFNBlock,
    "sepconv": SepConvBlock,
    "llama": functools.partial(PreNormBlock, gated=True),
    "gpt2": functools.partial(PreNormBlock, gated=False),
}


def build_block(config: ElasticConfig, s: LayerShape) -> nn.Module:
    """The module for one block type at the given size."""
    return BLOCKS[s.block](config, s)
