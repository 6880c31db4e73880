"""How progressive shrinking ranks sub-networks: validation loss, or agreement with the teacher.

Kept apart from :mod:`elastic_lm.train.build` so the wiring module stays small.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.train.loop import MODEL_INPUT_KEYS
from elastic_lm.train.representation import sentence_embeddings, unmasked_inputs


def subnet_score_fn(
    model: nn.Module, batches: Sequence[dict[str, Any]], teacher: nn.Module | None = None
) -> Callable[[Architecture], float]:
    """Validation loss of the sub-network ``arch`` on fixed batches (lower is better).

    The model's own label loss, in eval mode without gradients; with a ``teacher`` (the
    representation path, where no head is trained) 1 - the mean cosine between the sub-network's and
    the teacher's sentence embeddings instead. Under ``torchrun`` rank 0's value is broadcast so
    every rank shrinks the same way.
    """
    if not batches:
        raise ConfigError(
            "progressive-shrinking scores sub-networks on validation data, but there is none; "
            "set data.validation_ratio > 0 (or pass val_data)"
        )

    @torch.no_grad()
    def score(arch: Architecture) -> float:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        total = 0.0
        try:
            with cast(Any, model).using(arch):
                for batch in batches:
                    if teacher is not None:
                        inputs = unmasked_inputs(batch, device)
                        s = sentence_embeddings(model, inputs)
                        t = sentence_embeddings(teacher.to(device), inputs)[:, : s.shape[-1]]
                        total += 1.0 - float((s * F.normalize(t, dim=-1)).sum(-1).mean())
                        continue
                    inputs = {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}
                    out = model(**inputs, labels=batch["labels"].to(device))
                    total += float(out.loss)
        finally:
            model.train(was_training)
        value = torch.tensor(total / len(batches), dtype=torch.float64, device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(value, src=0)
        return float(value)

    return score


__all__ = ["subnet_score_fn"]
