"""Honest selection: bootstrap confidence intervals of validation and test scores (issue 18).

Choosing the best of a hundred members on a few hundred validation rows overstates the winner: on
538 rows a member can tie the unpruned model on validation and lose two points on test. Every
exported member, baseline and the unpruned model therefore carry 95 % bootstrap intervals of their
accuracy and macro F1 (``val_accuracy_ci_low`` / ``_high``, ``test_f1_ci_low`` ...: plain numbers, so
the report's tables show them as columns), and
:func:`separation_warning` says when the validation split is too small to tell members apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from elastic_lm.architecture import Architecture
from elastic_lm.prune.evaluation import logits_and_labels

BOOTSTRAP = 1000
LEVEL = 0.95


def _macro_f1(pred: np.ndarray, gold: np.ndarray, classes: int) -> float:
    """Macro F1 over the classes present in gold or predictions (the same as ``f1_macro``)."""
    confusion = np.bincount(gold * classes + pred, minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def bootstrap_intervals(
    pred: np.ndarray,
    gold: np.ndarray,
    classes: int,
    *,
    seed: int = 0,
    n: int = BOOTSTRAP,
    level: float = LEVEL,
) -> dict[str, list[float]]:
    """Percentile intervals of accuracy and macro F1 over ``n`` resamples of the rows (seeded)."""
    rng = np.random.default_rng(seed)
    rows = len(gold)
    if rows == 0:
        return {"accuracy_ci": [0.0, 0.0], "f1_ci": [0.0, 0.0]}
    picks = rng.integers(0, rows, size=(n, rows))
    correct = (pred == gold).astype(float)
    accuracy = correct[picks].mean(1)
    f1 = np.array([_macro_f1(pred[p], gold[p], classes) for p in picks])
    tail = (1 - level) / 2 * 100
    return {
        "accuracy_ci": [float(np.percentile(accuracy, tail)), float(np.percentile(accuracy, 100 - tail))],
        "f1_ci": [float(np.percentile(f1, tail)), float(np.percentile(f1, 100 - tail))],
    }


def model_intervals(
    model: Any,
    batches: Sequence[dict[str, torch.Tensor]],
    prefix: str,
    arch: Architecture | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """``{prefix}_accuracy_ci_low`` / ``_high`` and the same of ``f1``, of a classifier (``arch``: a
    sub-network of an elastic model)."""
    if arch is not None and hasattr(model, "using"):
        with model.using(arch):
            logits, labels = logits_and_labels(model, batches)
    else:
        logits, labels = logits_and_labels(model, batches)
    if logits.shape[-1] < 2:
        return {}  # regression: no classes to count
    out = bootstrap_intervals(logits.argmax(-1).numpy(), labels.long().numpy(), logits.shape[-1], seed=seed)
    flat = {}
    for key, (low, high) in out.items():
        flat[f"{prefix}_{key}_low"], flat[f"{prefix}_{key}_high"] = low, high
    return flat


def half_width(interval: Sequence[float]) -> float:
    return (interval[1] - interval[0]) / 2


def separation_warning(
    metrics: dict[str, Any], rows: int, points: float = 1.0, what: str = "accuracy"
) -> str | None:
    """A warning when the validation interval in ``metrics`` is wider than ``points`` either way."""
    if f"val_{what}_ci_low" not in metrics:
        return None
    interval = (metrics[f"val_{what}_ci_low"], metrics[f"val_{what}_ci_high"])
    width = half_width(interval) * 100
    if width <= points:
        return None
    return (
        f"the validation split has {rows} rows: its 95 % interval of {what} is +-{width:.1f} points, wider "
        f"than the {points:g}-point differences between members, so the best-scoring members are partly "
        "luck; compare their test intervals, or give the search more rows (data.validation_ratio)"
    )


__all__ = ["bootstrap_intervals", "half_width", "model_intervals", "separation_warning"]
