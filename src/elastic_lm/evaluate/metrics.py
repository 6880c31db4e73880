"""Pure metric functions on predictions and targets (numpy arrays), no model involved.

The one home of accuracy, F1, correlations, perplexity and prediction error: search, pruning,
downstream evaluation, latency profiling and the report all score with these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels))) if len(labels) else float("nan")


def _f1(predictions: np.ndarray, labels: np.ndarray, positive: int) -> float:
    tp = float(np.sum((predictions == positive) & (labels == positive)))
    fp = float(np.sum((predictions == positive) & (labels != positive)))
    fn = float(np.sum((predictions != positive) & (labels == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_binary(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's F1 for MRPC/QQP)."""
    return _f1(np.asarray(predictions), np.asarray(labels), positive)


def f1_macro(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over ``num_classes`` classes (absent classes score 0)."""
    p, y = np.asarray(predictions), np.asarray(labels)
    return float(np.mean([_f1(p, y, c) for c in range(num_classes)]))


def mean_squared_error(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Mean of squared differences."""
    d = np.asarray(predictions, dtype=float) - np.asarray(targets, dtype=float)
    return float(np.mean(d * d))


def perplexity_from_nll(mean_nll: float) -> float:
    """exp(mean next-token negative log-likelihood), capped so a diverged model gives a huge number,
    not an overflow."""
    return float(np.exp(min(float(mean_nll), 700.0)))


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error as a fraction (0.05 = 5 %) of ``predicted`` against ``measured``."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if len(p) != len(m) or len(m) == 0:
        raise ValueError("mape needs two non-empty sequences of the same length")
    if np.any(m == 0):
        raise ValueError("mape is undefined when a measured value is 0")
    return float(np.mean(np.abs(p - m) / np.abs(m)))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; nan when either side is constant."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman needs)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of tie-averaged ranks)."""
    return pearson(_ranks(x), _ranks(y))


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float | list[float]]:
    """Mean of ``a - b`` per item, its standard error and a 95 % normal interval.

    Two models scored on the same items share the items' difficulty, so the per-item differences carry
    the comparison's own noise; two independent errors would overstate it.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two aligned 1-D score vectors of 2+ items, got {a.shape} and {b.shape}")
    diff = a - b
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / len(diff) ** 0.5)
    return {"difference": mean, "standard_error": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se]}
