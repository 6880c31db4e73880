"""Gradient-based importance of heads and FFN units (Michel et al. 2019; Klein et al. 2024).

The importance of head h is E|dL/d xi_h| where xi_h scales the head's output. Since the head's output
enters only through the columns of the output projection W_o, dL/d xi_h = sum(W_o[:, h] * dL/dW_o[:, h])
on each batch, so no head masks are needed: we accumulate |that sum| over batches. FFN units use the
columns of the down projection the same way. Scores feed ``reorder_by_importance`` and head pruning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.prune.evaluation import MODEL_INPUTS


def gradient_importance(
    model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Per-head and per-unit scores by module name (``...attention`` / ``...ffn``) at full size."""
    model.reset()  # type: ignore[operator]
    was_training = model.training
    model.eval()
    subs = {n: m for n, m in model.named_modules() if isinstance(m, ElasticAttention | ElasticFFN)}
    scores = {n: torch.zeros(_count(m)) for n, m in subs.items()}
    for batch in batches:
        model.zero_grad(set_to_none=True)
        inputs = {k: v for k, v in batch.items() if k in (*MODEL_INPUTS, "labels")}
        model(**inputs).loss.backward()
        with torch.no_grad():
            for name, m in subs.items():
                w = m.o.weight if isinstance(m, ElasticAttention) else m.down.weight
                if w.grad is None:
                    continue
                prod = (w * w.grad).float().sum(0)  # one value per input column
                scores[name] += prod.reshape(_count(m), -1).sum(1).abs().cpu()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return scores


def _count(m: torch.nn.Module) -> int:
    return m.max_heads if isinstance(m, ElasticAttention) else m.inner  # type: ignore[return-value]


__all__ = ["gradient_importance"]
