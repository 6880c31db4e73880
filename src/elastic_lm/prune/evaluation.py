"""Task metrics of a model on fixed batches, the same numbers for a sliced super-network and for a
stock Hugging Face model (so an exported model reproduces the accuracy the search recorded).

Elastic models go through ``elastic_lm.evaluate.evaluate_subnetwork``; anything else (a stock
``BertForSequenceClassification`` loaded from an export folder) through the same metric helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.architecture import Architecture
from elastic_lm.evaluate import accuracy, evaluate_subnetwork, f1_binary, f1_macro, pearson, spearman

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def fixed_batches(rows: Any, collator: Any, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Collate all ``rows`` once, in order, so every model is scored on identical batches."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        out.append(collator(chunk))
    return out


def evaluate_model(
    model: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    task: str,
    arch: Architecture | None = None,
) -> dict[str, float]:
    """``loss``, ``accuracy``, ``f1`` (macro) [, ``f1_binary``] or regression ``loss``/``pearson``...

    ``arch`` selects a sub-network of an elastic model (default: its full size).
    """
    if hasattr(model, "using"):
        arch = arch if arch is not None else model.model.largest()  # type: ignore[union-attr,operator]
        return evaluate_subnetwork(model, arch, batches, task)  # type: ignore[arg-type]
    return _evaluate_plain(model, batches, task)


@torch.inference_mode()
def logits_and_labels(
    model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stock model's float logits and the labels, over all ``batches`` in order (per-example scores)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits_all, labels_all = [], []
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}
            logits_all.append(model(**inputs).logits.float().cpu())
            labels_all.append(batch["labels"])
    finally:
        model.train(was_training)
    return torch.cat(logits_all), torch.cat(labels_all)


def _evaluate_plain(
    model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], task: str
) -> dict[str, float]:
    logits, labels = logits_and_labels(model, batches)
    if task == "regression":
        pred, target = logits.reshape(-1), labels.float().reshape(-1)
        loss = float(F.mse_loss(pred, target))
        p, t = pred.numpy(), target.numpy()
        return {"loss": loss, "mse": loss, "pearson": pearson(p, t), "spearman": spearman(p, t)}
    pred, target = logits.argmax(-1).numpy(), labels.numpy()
    n = logits.shape[-1]
    out = {
        "loss": float(F.cross_entropy(logits, labels.long())),
        "accuracy": accuracy(pred, target),
        "f1": f1_macro(pred, target, n),
    }
    if n == 2:
        out["f1_binary"] = f1_binary(pred, target)
    return out


__all__ = ["evaluate_model", "fixed_batches", "logits_and_labels"]
