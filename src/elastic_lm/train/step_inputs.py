"""What a training step asks of the model: extra outputs the losses read, MLM logits only where labelled."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from elastic_lm.architecture import Architecture
from elastic_lm.train.settings import TrainSettings
from elastic_lm.train.strategies import Strategy


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def detached(outputs: Any) -> Any:
    """A copy of model outputs with every tensor detached (the in-place teacher)."""
    if isinstance(outputs, Tensor):
        return outputs.detach()
    if isinstance(outputs, tuple | list):
        return type(outputs)(detached(o) for o in outputs)
    if isinstance(outputs, Mapping):  # HF ModelOutput is an OrderedDict subclass
        return type(outputs)(**{k: detached(v) for k, v in outputs.items()})
    if is_dataclass(outputs) and not isinstance(outputs, type):
        return replace(outputs, **{f.name: detached(getattr(outputs, f.name)) for f in fields(outputs)})
    return outputs


def needs(losses: nn.Module, target: str, *, reference: bool = False) -> dict[str, Any]:
    """Which extra outputs the losses applying at ``target`` read (of the reference when asked:
    block-wise distillation reads the teacher's hidden states but runs the student's layers)."""
    applying = [
        loss
        for label, loss in getattr(losses, "parts", {}).items()
        if (reference or not getattr(loss, "layerwise_loss", False))
        and target in getattr(losses, "when", {}).get(label, (target,))
    ]
    flags: dict[str, Any] = {}
    if any(getattr(loss, "reads_hidden_states", False) for loss in applying):
        flags["output_hidden_states"] = True
    if any(getattr(loss, "reads_attentions", False) for loss in applying):
        flags["output_attentions"] = True
    return flags


def logits_positions(
    model: nn.Module, losses: nn.Module, targets: Sequence[str], batch: Mapping[str, Any], enabled: bool
) -> dict[str, Tensor]:
    """``{"logits_positions": labels != -100}`` when the model can restrict its MLM logits and every
    loss applying at ``targets`` reads only those; else nothing (full logits)."""
    labels = batch.get("labels")
    if not enabled or not getattr(model, "supports_logits_positions", False):
        return {}
    if not isinstance(labels, Tensor) or labels.dim() != 2:
        return {}
    when = getattr(losses, "when", None)
    if when is None:
        return {}
    for label, loss in getattr(losses, "parts", {}).items():
        applies = any(t in when.get(label, ()) for t in targets)
        if applies and not getattr(loss, "labelled_positions_only", False):
            return {}
    return {"logits_positions": labels != -100}


def eval_archs(strategy: Strategy, settings: TrainSettings) -> dict[str, Architecture]:
    if settings.eval_archs is not None:
        return dict(settings.eval_archs)
    space = getattr(strategy, "space", None)
    if space is None:
        return {}
    archs = {"largest": space.largest(), "smallest": space.smallest()}
    if hasattr(space, "middle"):
        archs["middle"] = space.middle()
    elif hasattr(space, "sample"):
        archs["middle"] = space.sample(random.Random(f"elastic-lm:val:{settings.seed}"))
    return archs


__all__ = ["detached", "eval_archs", "logits_positions", "needs", "to_device"]
