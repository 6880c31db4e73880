"""The base every loss shares (name, teacher need, when it applies) and the token masks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

IGNORE_INDEX = -100


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Student layer ``i`` <- teacher layer ``ceil((i + 1) * n_teacher / n_student) - 1``.

    The last student layer always meets the last teacher layer, and a deeper student repeats teacher
    layers instead of running off the end (as in TinyBERT's uniform strategy).
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got {n_student} and {n_teacher}")
    return [-(-(i + 1) * n_teacher // n_student) - 1 for i in range(n_student)]


def _token_mask(batch: Mapping[str, Any], shape: torch.Size, device: torch.device) -> Tensor:
    """[B, T] float mask of real tokens (all ones when the batch has no ``attention_mask``)."""
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(shape, device=device)
    return mask.to(device=device, dtype=torch.float32)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` [B, T] over positions where ``mask`` [B, T] is 1."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def teacher_outputs(teacher: Any | None, loss: str) -> Any:
    """The teacher's forward outputs, which a distillation loss cannot do without."""
    if teacher is None:
        raise ValueError(f"loss {loss!r} needs the teacher's outputs, and none were given")
    return teacher


class Loss(nn.Module):
    """Base: ``default_when`` lists the task targets at which a loss applies unless configured."""

    name: ClassVar[str] = "loss"
    needs_teacher: ClassVar[bool] = False
    default_when: ClassVar[tuple[str, ...]] = ("labels", "teacher", "largest")
    # reads token logits at labelled positions only, or none at all (hidden states, attentions)
    logits_at_labels_only: ClassVar[bool] = False
    # extra model outputs the loss reads (the loop asks the forward pass for them)
    reads_hidden_states: ClassVar[bool] = False
    reads_attentions: ClassVar[bool] = False

    @property
    def labelled_positions_only(self) -> bool:
        """True when the loss reads token logits only at labelled (MLM-masked) positions, so the model
        may compute its vocabulary projection there alone (``logits_positions``)."""
        return self.logits_at_labels_only

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        raise NotImplementedError


__all__ = ["IGNORE_INDEX", "Loss", "teacher_outputs", "uniform_layer_map"]
