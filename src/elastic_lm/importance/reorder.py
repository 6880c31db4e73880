"""Importance reordering: permute heads (with their KV groups) and FFN units, most important first,
so that "keep the first k" keeps the best k. A permutation leaves the full network's function
unchanged.

A measure maps one sub-layer (``ElasticAttention`` -> one score per query head; ``ElasticFFN`` ->
one
score per hidden unit) to a 1-D tensor; register new ones with :func:`register_measure`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from elastic_lm.errors import ConfigError
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.model.modeling import ElasticPreTrainedModel
from elastic_lm.model.primitives import ElasticLinear

Measure = Callable[[nn.Module], torch.Tensor]
IMPORTANCE_MEASURES: dict[str, Measure] = {}


def register_measure(name: str) -> Callable[[Measure], Measure]:
    """Decorator: make a measure available as ``reorder_by_importance(..., measure=name)``."""

    def deco(fn: Measure) -> Measure:
        IMPORTANCE_MEASURES[name] = fn
        return fn

    return deco


def _row_norms(lin: ElasticLinear, groups: int) -> torch.Tensor:
    return lin.weight.detach().float().reshape(groups, -1).norm(dim=1)


def _col_norms(lin: ElasticLinear, groups: int) -> torch.Tensor:
    w = lin.weight.detach().float()
    return w.reshape(w.shape[0], groups, -1).norm(dim=(0, 2))


@register_measure("magnitude")
def magnitude(module: nn.Module) -> torch.Tensor:
    """L2 norm of the weights that read into and write out of each head / unit."""
    if isinstance(module, ElasticAttention):
        return _row_norms(module.q, module.max_heads) + _col_norms(module.o, module.max_heads)
    if isinstance(module, ElasticFFN):
        score = _row_norms(module.up, module.inner) + _col_norms(module.down, module.inner)
        if module.gate is not None:
            score = score + _row_norms(module.gate, module.inner)
        return score
    raise TypeError(f"no magnitude for {type(module).__name__}")


def _permute(lin: ElasticLinear, dim: int, rows: torch.Tensor) -> None:
    lin.weight.data = lin.weight.data.index_select(dim, rows.to(lin.weight.device))
    if dim == 0 and lin.bias is not None:
        lin.bias.data = lin.bias.data.index_select(0, rows.to(lin.bias.device))


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def reorder_attention(att: ElasticAttention, score: torch.Tensor) -> None:
    """Sort KV groups by their summed score, and query heads by score inside each group."""
    group = att.max_heads // att.max_kv
    per_group = score.reshape(att.max_kv, group)
    kv_order = per_group.sum(1).argsort(descending=True, stable=True)
    q_order = torch.cat([g * group + per_group[g].argsort(descending=True, stable=True) for g in kv_order])
    q_rows, kv_rows = _head_rows(q_order, att.head_dim), _head_rows(kv_order, att.head_dim)
    _permute(att.q, 0, q_rows)
    _permute(att.k, 0, kv_rows)
    _permute(att.v, 0, kv_rows)
    _permute(att.o, 1, q_rows)


def reorder_ffn(ffn: ElasticFFN, score: torch.Tensor) -> None:
    order = score.argsort(descending=True, stable=True)
    _permute(ffn.up, 0, order)
    if ffn.gate is not None:
        _permute(ffn.gate, 0, order)
    _permute(ffn.down, 1, order)


def reorder_by_importance(
    model: ElasticPreTrainedModel,
    scores: Mapping[str, torch.Tensor] | None = None,
    measure: str | Measure = "magnitude",
) -> dict[str, torch.Tensor]:
    """Permute every attention and FFN sub-layer of ``model`` in place, most important first.

    ``scores`` maps a sub-layer's module name (``model.layers.3.bert.attention``) to its scores and
    overrides ``measure`` there. Returns the scores used, by module name. The model is reset to its
    largest architecture (explicit ``head_ids`` chosen before reordering would mean other heads).
    """
    if isinstance(measure, str):
        if measure not in IMPORTANCE_MEASURES:
            raise ConfigError(
                f"importance measure={measure!r} is unknown; use one of {sorted(IMPORTANCE_MEASURES)}"
            )
        measure = IMPORTANCE_MEASURES[measure]
    model.reset()
    used: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, ElasticAttention | ElasticFFN):
                continue
            score = scores[name] if scores is not None and name in scores else measure(module)
            score = score.detach().float().cpu()
            if isinstance(module, ElasticAttention):
                reorder_attention(module, score)
            else:
                reorder_ffn(module, score)
            used[name] = score
    model.reset()
    return used
