"""Task metrics of a (sub-)network on fixed batches: accuracy, macro-F1 and loss (or MSE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.architecture import Architecture

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def fixed_batches(rows: Any, collator: Any, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Collate ``rows`` once, in order, so every architecture is scored on identical batches."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        out.append(collator(chunk))
    return out


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged F1 (binary tasks: the mean of both classes' F1, robust to imbalance)."""
    scores = []
    for c in range(num_classes):
        tp = int(((predictions == c) & (labels == c)).sum())
        fp = int(((predictions == c) & (labels != c)).sum())
        fn = int(((predictions != c) & (labels == c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(sum(scores) / len(scores))


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    task: str,
    arch: Architecture | None = None,
) -> dict[str, float]:
    """``accuracy``, ``f1``, ``loss`` (classification) or ``loss`` = MSE (regression).

    ``arch`` selects a sub-network of an elastic super-network; stock models are run as they are.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits_all, labels_all = [], []
    try:
        if arch is not None:
            model.set_architecture(arch)  # type: ignore[operator]
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}
            logits_all.append(model(**inputs).logits.float().cpu())
            labels_all.append(batch["labels"])
    finally:
        if arch is not None:
            model.reset()  # type: ignore[operator]
        model.train(was_training)
    logits = torch.cat(logits_all)
    labels = torch.cat(labels_all)
    if task == "regression":
        return {"loss": float(F.mse_loss(logits.reshape(-1), labels.float().reshape(-1)))}
    predictions = logits.argmax(-1)
    return {
        "accuracy": float((predictions == labels).float().mean()),
        "f1": macro_f1(predictions, labels, logits.shape[-1]),
        "loss": float(F.cross_entropy(logits, labels)),
    }


__all__ = ["evaluate_model", "fixed_batches", "macro_f1"]
