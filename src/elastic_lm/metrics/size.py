"""Analytic size of a sub-network: parameters and FLOPs, from the config and the architecture alone.

``count_params`` equals ``sum(p.numel() for p in model.extract(arch).parameters())`` (tied weights
counted once). ``count_flops`` counts a forward pass over one sequence of ``seq_len`` tokens as
2 x multiply-accumulates of every matrix product: linear layers, attention scores (Q K^T) and
weighted values (A V), the depthwise convolution, and the task head (for classification, on the one
pooled token). Embedding look-ups, norms, activations, softmax and bias additions are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from elastic_lm.architecture import Architecture
from elastic_lm.model.config import ElasticConfig
from elastic_lm.model.shapes import LayerShape, resolve


@dataclass
class _Tally:
    params: int = 0
    token_macs: int = 0  # per token (linear layers, depthwise conv)
    seq2_macs: int = 0  # per token pair (attention: T x T)

    def linear(self, n_in: int, n_out: int, bias: bool) -> None:
        self.params += n_in * n_out + (n_out if bias else 0)
        self.token_macs += n_in * n_out


def _norm(config: ElasticConfig, width: int) -> int:
    return width if config.norm == "rmsnorm" else 2 * width


def _attention(t: _Tally, c: ElasticConfig, width: int, heads: int, kv: int) -> None:
    d, b = c.head_dim, c.use_bias
    t.linear(width, heads * d, b)
    t.linear(width, kv * d, b)
    t.linear(width, kv * d, b)
    t.linear(heads * d, width, b)
    t.seq2_macs += 2 * heads * d


def _ffn(t: _Tally, c: ElasticConfig, width: int, units: int, gated: bool) -> None:
    t.linear(width, units, c.use_bias)
    if gated:
        t.linear(width, units, c.use_bias)
    t.linear(units, width, c.use_bias)


def _layer(t: _Tally, c: ElasticConfig, s: LayerShape) -> None:
    w = s.hidden
    if s.block in ("bert", "llama", "gpt2"):
        _attention(t, c, w, s.heads, s.kv_heads)
        _ffn(t, c, w, s.ffn, gated=s.block == "llama")
        t.params += 2 * _norm(c, w)
    elif s.block == "attention":
        _attention(t, c, w, s.heads, s.kv_heads)
        t.params += _norm(c, w)
    elif s.block == "ffn":
        _ffn(t, c, w, s.ffn, gated=False)
        t.params += _norm(c, w)
    elif s.block == "sepconv":
        t.params += w * s.kernel + w
        t.token_macs += w * s.kernel
        t.linear(w, w, c.use_bias)
        t.params += _norm(c, w)
    elif s.block == "mobilebert":
        b = s.bottleneck
        t.linear(w, b, c.use_bias)
        _attention(t, c, b, s.heads, s.kv_heads)
        for _ in range(s.ffn_stack):
            _ffn(t, c, b, s.ffn, gated=False)
        t.linear(b, w, c.use_bias)
        t.params += (2 + s.ffn_stack) * _norm(c, b) + _norm(c, w)
    else:  # pragma: no cover - resolve() rejects unknown blocks
        raise ValueError(s.block)


def _tally(config: ElasticConfig, arch: Architecture) -> tuple[_Tally, int, int]:
    """Body tally, embedding-table parameters, and head parameters / head per-token MACs."""
    t = _Tally()
    for shape in resolve(config, arch):
        if shape is not None:
            _layer(t, config, shape)
    H = arch.hidden
    emb = config.vocab_size * H
    if config.positions == "learned":
        emb += config.max_position_embeddings * H
    if config.type_vocab_size > 0:
        emb += config.type_vocab_size * H
    if config.embedding_norm:
        t.params += _norm(config, H)
    if config.final_norm:
        t.params += _norm(config, H)
    return t, emb, H


def count_params(config: ElasticConfig, arch: Architecture, include_embeddings: bool = True) -> int:
    """Parameters of the extracted sub-network ``arch`` (task head included, tied weights once)."""
    t, emb, H = _tally(config, arch)
    params = t.params + (emb if include_embeddings else 0)
    if config.task == "masked-lm":
        params += H * H + (H if config.use_bias else 0) + _norm(config, H) + config.vocab_size
    elif config.task == "causal-lm":
        params += 0 if config.tie_word_embeddings else H * config.vocab_size
    else:
        params += H * H + (H if config.use_bias else 0) + H * config.num_labels + config.num_labels
    return params


def count_flops(config: ElasticConfig, arch: Architecture, seq_len: int) -> int:
    """Forward FLOPs (2 x multiply-accumulates) for one sequence of ``seq_len`` tokens."""
    t, _, H = _tally(config, arch)
    macs = seq_len * t.token_macs + seq_len * seq_len * t.seq2_macs
    if config.task == "masked-lm":
        macs += seq_len * (H * H + H * config.vocab_size)
    elif config.task == "causal-lm":
        macs += seq_len * H * config.vocab_size
    else:
        macs += H * H + H * config.num_labels
    return 2 * macs
