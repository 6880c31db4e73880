"""Importance scores of attention heads and FFN units, by name: ``activation``, ``magnitude``, ``gradient``,
``fisher``.

Each score maps a model and a few batches to ``{module name: 1-D scores}`` for every attention
sub-layer (one value per query head) and FFN sub-layer (one per hidden unit), at full size; they feed
:func:`elastic_lm.importance.reorder_by_importance`.

* ``activation`` (Minitron, Muralidharan et al. 2024): the mean L2 norm of each head's context
  vector and the mean |activation| of each FFN unit over the real tokens of the user's text. It
  needs no labels and no head, so it works for a teacher that ships without an MLM head.
* ``magnitude``: the weight norms reading into and writing out of each unit (no data).
* ``gradient`` (Michel et al. 2019): E|dL/d xi_h| where xi_h scales the head's output. Since the
  head's output enters only through the columns of the output projection W_o,
  dL/d xi_h = sum(W_o[:, h] * dL/dW_o[:, h]) on each batch; FFN units use the down projection's
  columns the same way. Needs the model's own loss (``labels`` in the batches).
* ``fisher`` (Kwon et al. 2022): the empirical Fisher information of a mask variable on each head
  and unit, the sum over examples of the squared per-example mask gradient
  (:mod:`elastic_lm.importance.fisher`). Needs a classification or regression head and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn

from elastic_lm.errors import ConfigError
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.model.heads import ElasticForSequenceClassification

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
Batches = Sequence[dict[str, torch.Tensor]]


def _sublayers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ElasticAttention | ElasticFFN)}


def _output_projection(m: nn.Module) -> nn.Linear:
    """The linear layer whose input columns are a sub-layer's heads or FFN units."""
    return cast(nn.Linear, m.o if isinstance(m, ElasticAttention) else m.down)


def _count(m: nn.Module) -> int:
    return m.max_heads if isinstance(m, ElasticAttention) else m.inner  # type: ignore[return-value]


@contextmanager
def _scoring(model: nn.Module) -> Iterator[tuple[dict[str, nn.Module], dict[str, torch.Tensor]]]:
    """Full size, eval mode, zeroed scores per sub-layer; the training mode is restored after."""
    model.reset()  # type: ignore[operator]
    was_training = model.training
    model.eval()
    subs = _sublayers(model)
    try:
        yield subs, {n: torch.zeros(_count(m)) for n, m in subs.items()}
    finally:
        model.train(was_training)


@torch.no_grad()
def activation_importance(model: nn.Module, batches: Batches) -> dict[str, torch.Tensor]:
    """Per-head context norms and per-unit mean |activation| over real tokens, at full size."""
    with _scoring(model) as (subs, scores):
        return _activation_pass(model, batches, subs, scores)


def _activation_pass(
    model: nn.Module, batches: Batches, subs: dict[str, nn.Module], scores: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def hook_for(name: str, m: nn.Module) -> Callable[..., None]:
        def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].float()  # [B, T, units] (attention: heads * head_dim)
            if isinstance(m, ElasticAttention):
                x = x.reshape(*x.shape[:-1], m.max_heads, -1).norm(dim=-1)
            else:
                x = x.abs()
            mask = current["mask"]
            w = torch.ones(x.shape[:2], device=x.device) if mask is None else mask.to(x.device, torch.float32)
            scores[name] += ((x * w.unsqueeze(-1)).sum((0, 1)) / w.sum().clamp_min(1.0)).cpu()

        return hook

    handles = [_output_projection(m).register_forward_pre_hook(hook_for(n, m)) for n, m in subs.items()]
    device = next(model.parameters()).device
    try:
        for batch in batches:
            inputs = {k: batch[k].to(device) for k in _INPUTS if k in batch}
            current["mask"] = inputs.get("attention_mask")
            backbone = getattr(model, "backbone", model)
            backbone(**inputs)
    finally:
        for h in handles:
            h.remove()
    return scores


def magnitude_importance(model: nn.Module, batches: Batches = ()) -> dict[str, torch.Tensor]:
    """Weight-norm scores (no data): see ``reorder.magnitude``."""
    from elastic_lm.importance.reorder import magnitude

    return {n: magnitude(m) for n, m in _sublayers(model).items()}


def gradient_importance(model: nn.Module, batches: Batches) -> dict[str, torch.Tensor]:
    """Per-head and per-unit scores by module name (``...attention`` / ``...ffn``) at full size."""
    with _scoring(model) as (subs, scores):
        for batch in batches:
            model.zero_grad(set_to_none=True)
            inputs = {k: v for k, v in batch.items() if k in (*_INPUTS, "labels")}
            model(**inputs).loss.backward()
            with torch.no_grad():
                for name, m in subs.items():
                    w = _output_projection(m).weight
                    if w.grad is None:
                        continue
                    prod = (w * w.grad).float().sum(0)  # one value per input column
                    scores[name] += prod.reshape(_count(m), -1).sum(1).abs().cpu()
        model.zero_grad(set_to_none=True)
    return scores


def fisher_importance(model: nn.Module, batches: Batches) -> dict[str, torch.Tensor]:
    """The Fisher diagonal of every head's and unit's mask; a classification or regression head only."""
    from elastic_lm.importance.fisher import fisher_diagonal, mask_gradients

    if not isinstance(model, ElasticForSequenceClassification):
        raise ConfigError(
            "importance 'fisher' needs a sequence-classification model; use gradient or activation"
        )
    task = "regression" if model.config.num_labels == 1 else "classification"
    return fisher_diagonal(mask_gradients(model, batches, task))


SCORES: dict[str, Callable[[nn.Module, Batches], dict[str, torch.Tensor]]] = {
    "activation": activation_importance,
    "magnitude": magnitude_importance,
    "gradient": gradient_importance,
    "fisher": fisher_importance,
}


def importance_scores(name: str, model: nn.Module, batches: Batches) -> dict[str, Any]:
    """The score ``name`` of every head and FFN unit of ``model``."""
    if name not in SCORES:
        raise ConfigError(f"importance {name!r} is unknown; use one of {', '.join(SCORES)}")
    return SCORES[name](model, batches)


__all__ = [
    "SCORES",
    "activation_importance",
    "fisher_importance",
    "gradient_importance",
    "importance_scores",
    "magnitude_importance",
]
