"""Task losses on the labels: masked LM, causal LM, classification, regression."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from elastic_lm.train.losses.base import IGNORE_INDEX, Loss


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean CE over labelled positions; 0 (not NaN) when a batch has none, e.g. nothing masked."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1).long().to(logits.device)
    summed = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return summed / (labels != IGNORE_INDEX).sum().clamp_min(1)  # no host sync, no NaN


class MLMLoss(Loss):
    """Masked-LM cross-entropy over the masked positions (labels -100 elsewhere).

    Logits [N, V] (computed only at the labelled positions, ``logits_positions``) meet the labels
    at those positions, in the same row-major order.
    """

    name = "mlm"
    logits_at_labels_only = True

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        labels = batch["labels"]
        if student.logits.dim() == 2 and labels.dim() == 2:
            labels = labels[labels != IGNORE_INDEX]
        return _cross_entropy(student.logits, labels)


class CLMLoss(Loss):
    """Causal-LM cross-entropy: position t predicts token t+1 (labels unshifted, as in HF)."""

    name = "clm"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        return _cross_entropy(student.logits[:, :-1], batch["labels"][:, 1:])


class ClassificationLoss(Loss):
    """Sequence classification cross-entropy on ``logits`` [B, C]."""

    name = "classification"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        return _cross_entropy(student.logits, batch["labels"])


class RegressionLoss(Loss):
    """Mean squared error for regression tasks (STS-B style), ``logits`` [B, 1] or [B]."""

    name = "regression"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        prediction = student.logits.reshape(-1)
        return F.mse_loss(prediction, batch["labels"].to(prediction.dtype).reshape(-1))


__all__ = ["CLMLoss", "ClassificationLoss", "MLMLoss", "RegressionLoss"]
