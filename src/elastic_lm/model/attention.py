"""Multi-head attention with elastic heads, grouped-query KV heads and optional RoPE.

Head selection rule (grouped-query attention): query head ``i`` of the full layer reads KV head
``i // G`` with ``G = max_heads // max_kv_heads``. A sub-network with ``h`` heads and ``k`` KV heads
keeps the first ``k`` KV groups; sub-group ``j`` takes the first ``h // k`` query heads of group
``j``, so every kept head still reads the KV head it was trained with. Only when ``h // k > G``
(fewer KV heads than the space allows per group) does a sub-group borrow the remaining heads of the
dropped groups, in order. For plain multi-head attention (``G == 1``) this is "the first h heads".
An explicit ``head_ids`` subset keeps the groups it touches; each kept group must keep the same
number of heads. ``heads == 0`` keeps no head (the sub-layer then adds only its output bias).

With a KV cache (``LayerContext.cache``, a transformers ``Cache``), keys and values of the kept KV
heads are appended at the layer's ``cache_index`` and attention runs over every cached token; the
model builds the mask for queries that start after the cached ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.errors import ArchitectureError
from elastic_lm.model.primitives import ElasticLinear, make_selection


@dataclass
class LayerContext:
    """What every layer of one forward pass shares; built once per forward, not per layer."""

    attn_bias: torch.Tensor | None  # additive float mask, broadcastable to (B, heads, T, T)
    is_causal: bool  # True only when no attn_bias is given (SDPA's fast causal path)
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (cos, sin), each (B, T, head_dim)
    token_mask: torch.Tensor | None  # (B, T) 1.0 for real tokens, for convolutions
    output_attentions: bool = False
    cache: Any = None  # a transformers ``Cache`` (keys / values of earlier tokens), or None


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def select_heads(
    max_heads: int,
    max_kv: int,
    heads: int = 0,
    kv_heads: int = 0,
    head_ids: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """The kept query heads and KV heads (see the module docstring).

    ``kv_heads == 0`` picks the fewest KV heads that keep at most ``G`` heads per group.
    """
    if max_heads == 0 or (heads == 0 and head_ids is None):
        if head_ids:
            raise ArchitectureError(f"head_ids={list(head_ids)} but this layer has no heads left")
        return [], []
    group = max_heads // max_kv
    if head_ids is not None:
        ids = sorted(int(i) for i in head_ids)
        if len(set(ids)) != len(ids) or any(i < 0 or i >= max_heads for i in ids):
            raise ArchitectureError(f"head_ids={list(head_ids)} must be distinct heads in 0..{max_heads - 1}")
        kv = sorted({i // group for i in ids})
        if group > 1 and ids and len(ids) % len(kv) != 0:
            raise ArchitectureError(
                f"head_ids={ids} keep unequal numbers of heads per KV group (group size {group}); "
                "keep the same number of heads in each group"
            )
        if group > 1 and kv_heads and kv_heads != len(kv):
            raise ArchitectureError(
                f"kv_heads={kv_heads} does not match the {len(kv)} KV groups that head_ids touch"
            )
        return ids, kv if group > 1 else ids
    h = heads
    if h > max_heads:
        raise ArchitectureError(f"heads={h} exceeds this layer's {max_heads}; choose at most {max_heads}")
    if group == 1:
        if kv_heads and kv_heads != h:
            raise ArchitectureError(
                f"kv_heads={kv_heads} on a multi-head (non-GQA) layer; leave kv_heads 0 or equal to heads={h}"
            )
        return list(range(h)), list(range(h))
    k = kv_heads or _default_kv(h, max_kv, group)
    if k > max_kv or h % k != 0:
        raise ArchitectureError(
            f"heads={h}, kv_heads={k} do not fit {max_kv} KV groups; "
            f"kv_heads must divide heads and be at most {max_kv}"
        )
    per = h // k
    pool = [g * group + j for g in range(k, max_kv) for j in range(group)]  # dropped groups' heads
    q: list[int] = []
    for g in range(k):
        own = [g * group + j for j in range(min(per, group))]
        need = per - len(own)
        q += own + pool[:need]
        pool = pool[need:]
    return q, list(range(k))


def _default_kv(heads: int, max_kv: int, group: int) -> int:
    divisors = [d for d in range(1, min(heads, max_kv) + 1) if heads % d == 0]
    fitting = [d for d in divisors if heads // d <= group]
    return fitting[0] if fitting else divisors[-1]


def _rows(heads: list[int], head_dim: int) -> list[int]:
    return [h * head_dim + j for h in heads for j in range(head_dim)]


class ElasticAttention(nn.Module):
    """Self-attention on ``F.scaled_dot_product_attention``; heads are sliced, never masked."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if heads and (kv_heads <= 0 or heads % kv_heads != 0):
            raise ArchitectureError(f"kv_heads={kv_heads} must divide heads={heads}")
        self.max_heads, self.max_kv, self.head_dim, self.hidden = heads, kv_heads, head_dim, hidden
        self.q = ElasticLinear(hidden, heads * head_dim, bias)
        self.k = ElasticLinear(hidden, kv_heads * head_dim, bias)
        self.v = ElasticLinear(hidden, kv_heads * head_dim, bias)
        self.o = ElasticLinear(heads * head_dim, hidden, bias)
        self.dropout = dropout
        self.n_heads, self.n_kv = heads, kv_heads
        self.cache_index = 0  # this layer's slot in a KV cache (set by the model per architecture)

    def select(
        self,
        width: int,
        heads: int = 0,
        kv_heads: int = 0,
        head_ids: Sequence[int] | None = None,
    ) -> None:
        q_heads, kv = select_heads(self.max_heads, self.max_kv, heads, kv_heads, head_ids)
        hid = make_selection(width, self.hidden)
        q_rows = make_selection(_rows(q_heads, self.head_dim), self.max_heads * self.head_dim)
        kv_rows = make_selection(_rows(kv, self.head_dim), self.max_kv * self.head_dim)
        self.q.select(q_rows, hid)
        self.k.select(kv_rows, hid)
        self.v.select(kv_rows, hid)
        self.o.select(hid, q_rows)
        self.n_heads, self.n_kv = len(q_heads), len(kv)

    def reset(self) -> None:
        for lin in (self.q, self.k, self.v, self.o):
            lin.reset()
        self.n_heads, self.n_kv = self.max_heads, self.max_kv

    def forward(self, x: torch.Tensor, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = x.shape
        d = self.head_dim
        if self.n_heads == 0:  # nothing to cache either: the model gives this layer no cache slot
            return self.o(x.new_zeros(B, T, 0)), None
        q = self.q(x).view(B, T, self.n_heads, d).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv, d).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv, d).transpose(1, 2)
        if ctx.rope is not None:
            cos, sin = ctx.rope[0].unsqueeze(1), ctx.rope[1].unsqueeze(1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        if ctx.cache is not None:  # keys / values of every token so far (this step's appended)
            k, v = ctx.cache.update(k, v, self.cache_index)
        p = self.dropout if self.training else 0.0
        weights = None
        if ctx.output_attentions:
            out, weights = self._eager(q, k, v, ctx, p)
        else:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=ctx.attn_bias,
                dropout_p=p,
                is_causal=ctx.is_causal,
                enable_gqa=self.n_kv != self.n_heads,
            )
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * d)
        return self.o(out), weights

    def _eager(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: LayerContext, p: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same attention written out, for when the caller asks for the weights."""
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        T = q.shape[-2]
        if ctx.is_causal:  # only set without a cache offset, so queries and keys have one length
            causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        if ctx.attn_bias is not None:
            scores = scores + ctx.attn_bias
        weights = scores.softmax(-1)
        return F.dropout(weights, p, self.training) @ v, weights
