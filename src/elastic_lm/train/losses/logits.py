"""Logit distillation: KL to the teacher's (or the largest's) output distribution, full or top-k."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses.base import IGNORE_INDEX, Loss, _masked_mean, _token_mask, teacher_outputs


def _kl_positions(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) per position, softened by ``temperature``; shape of logits[..., 0]."""
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def _position_mask(batch: Mapping[str, Any], logits: Tensor, positions: str) -> Tensor:
    if logits.dim() == 2:  # sequence-level logits [B, C]
        return torch.ones(logits.shape[:1], device=logits.device)
    if positions == "labels":
        return (batch["labels"] != IGNORE_INDEX).float()
    return _token_mask(batch, logits.shape[:2], logits.device)


class LogitDistillation(Loss):
    """Soft-label distillation (Hinton et al. 2015): KL at temperature T, scaled by T^2.

    The T^2 factor keeps gradient magnitudes comparable across temperatures. ``positions`` picks
    the averaged tokens: ``"attention"`` (all real tokens) or ``"labels"`` (MLM-masked ones).
    """

    name = "logit-kd"
    needs_teacher = True
    default_when: ClassVar[tuple[str, ...]] = ("teacher", "largest")

    def __init__(self, temperature: float = 1.0, positions: str = "attention") -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0; use e.g. 1.0 or 2.0")
        if positions not in ("attention", "labels"):
            raise ConfigError(f"positions={positions!r} is unknown; use 'attention' or 'labels'")
        self.temperature = float(temperature)
        self.positions = positions

    @property
    def labelled_positions_only(self) -> bool:
        return self.positions == "labels"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        t_logits = teacher_outputs(teacher, self.name).logits.detach()
        kl = _kl_positions(student.logits, t_logits, self.temperature)
        mask = _position_mask(batch, student.logits, self.positions)
        return _masked_mean(kl, mask) * self.temperature**2


class TopKLogitDistillation(LogitDistillation):
    """Logit distillation from cached teacher top-k logits (see ``teacher_cache``).

    Approximation: only the teacher's k largest logits are kept, so both distributions are
    renormalised over those k classes: KL(softmax(top-k teacher / T) || softmax(student at the
    same k classes / T)). The tail mass (small for k of 32-128 on a peaked LM) is ignored, and the
    student is not pushed down on classes outside the teacher's top k.
    """

    name = "topk-kd"
    needs_teacher = False
    default_when = ("teacher",)

    @property
    def labelled_positions_only(self) -> bool:
        return False  # the cache holds every position's top k: the student needs full logits

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        if "teacher_topk_values" not in batch:
            raise DataError("batch has no 'teacher_topk_values'; attach the cache with TopKLogitCache.attach")
        values = batch["teacher_topk_values"].to(student.logits.device)
        indices = batch["teacher_topk_indices"].to(student.logits.device).long()
        picked = student.logits.gather(-1, indices)
        kl = _kl_positions(picked, values, self.temperature)
        mask = _position_mask(batch, student.logits, self.positions)
        return _masked_mean(kl, mask) * self.temperature**2


__all__ = ["LogitDistillation", "TopKLogitDistillation"]
