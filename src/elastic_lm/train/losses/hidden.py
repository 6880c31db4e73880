"""Distillation of hidden states, attention maps and relational (per-channel Pearson) structure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses.base import (
    Loss,
    _masked_mean,
    _token_mask,
    teacher_outputs,
    uniform_layer_map,
)


class _LayerProjections(nn.Module):
    """One learned student->teacher width projection per student layer, elastic in its input."""

    def __init__(self, n_layers: int, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.enabled = student_width != teacher_width
        self.proj = nn.ModuleList(
            [nn.Linear(student_width, teacher_width) for _ in range(n_layers if self.enabled else 0)]
        )

    def pair(self, index: int, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Bring one student/teacher feature pair to a common width."""
        if self.enabled:
            if index >= len(self.proj):
                raise ConfigError(
                    f"student has layer {index} but n_student_layers={len(self.proj)}; "
                    "set n_student_layers to the super-network's layer count"
                )
            layer = self.proj[index]
            width = student.shape[-1]
            weight, bias = cast(Tensor, layer.weight), cast(Tensor, layer.bias)
            return F.linear(student, weight[:, :width], bias), teacher
        if student.shape[-1] > teacher.shape[-1]:
            raise ConfigError(
                f"student width {student.shape[-1]} exceeds teacher width {teacher.shape[-1]}; "
                "set student_width and teacher_width so a projection is learned"
            )
        return student, teacher[..., : student.shape[-1]]


def _mapped_pairs(
    student_states: Sequence[Tensor | None] | None,
    teacher_states: Sequence[Tensor | None] | None,
    layer_map: Sequence[int] | None,
    what: str,
) -> list[tuple[int, Tensor, Tensor]]:
    """(student index, student tensor, detached teacher tensor) for every compared layer."""
    if not student_states or not teacher_states:
        raise DataError(f"model outputs have no {what}; call the model with output_{what}=True")
    mapping = list(layer_map) if layer_map is not None else None
    if mapping is None:
        mapping = uniform_layer_map(len(student_states), len(teacher_states))
    if len(mapping) < len(student_states):
        raise ConfigError(
            f"layer_map has {len(mapping)} entries for {len(student_states)} student layers; "
            "give one teacher layer per student layer"
        )
    pairs = []
    for i, s in enumerate(student_states):
        t = teacher_states[mapping[i]]
        if s is not None and t is not None:
            pairs.append((i, s, t.detach()))
    if not pairs:
        raise DataError(f"no student/teacher {what} pair to compare (all layers dropped?)")
    return pairs


class HiddenStateDistillation(Loss):
    """MSE between mapped hidden states (TinyBERT-style), through learned projections if needed."""

    name = "hidden"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(
        self,
        n_student_layers: int = 1,
        student_width: int = 0,
        teacher_width: int = 0,
        layer_map: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.projections = _LayerProjections(n_student_layers, student_width, teacher_width)
        self.layer_map = layer_map

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        pairs = _mapped_pairs(
            student.hidden_states,
            teacher_outputs(teacher, self.name).hidden_states,
            self.layer_map,
            "hidden_states",
        )
        losses = []
        for i, s, t in pairs:
            s, t = self.projections.pair(i, *self._prepare(s, t))
            losses.append(self.pair_loss(s, t, _token_mask(batch, s.shape[:2], s.device)))
        return torch.stack(losses).mean()

    def _prepare(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        return student, teacher

    def pair_loss(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        """The loss of one mapped layer pair ([B, T, H] each, same width; ``mask`` [B, T])."""
        return _masked_mean((student - teacher).pow(2).mean(-1), mask)


class AttentionDistillation(Loss):
    """KL between attention distributions of mapped layers (MiniLM / TinyBERT).

    Heads are compared one to one when counts match, else each side is averaged over its heads.
    """

    name = "attention"
    reads_attentions = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(self, layer_map: Sequence[int] | None = None, eps: float = 1e-12) -> None:
        super().__init__()
        self.layer_map = layer_map
        self.eps = eps

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        pairs = _mapped_pairs(
            student.attentions, teacher_outputs(teacher, self.name).attentions, self.layer_map, "attentions"
        )
        losses = []
        for _, s, t in pairs:
            if s.shape[1] != t.shape[1]:
                s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
            s, t = s.float().clamp_min(self.eps), t.float().clamp_min(self.eps)
            kl = (t * (t.log() - s.log())).sum(-1).mean(1)  # [B, T]: per query row, heads averaged
            mask = _token_mask(batch, kl.shape, kl.device)
            losses.append(_masked_mean(kl, mask))
        return torch.stack(losses).mean()


def standardise_tokens(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit variance per channel over the valid tokens of each sequence.

    ``x`` [B, T, H], ``mask`` [B, T]; padded positions come out as 0.
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(1, keepdim=True) / n
    centred = (x - mean) * m
    var = centred.pow(2).sum(1, keepdim=True) / n
    return centred / torch.sqrt(var + eps)


class RelationalLoss(HiddenStateDistillation):
    """ELM relational loss (Wang 2025): per block, mean over channels of (1 - Pearson r).

    Features are standardised per channel over the valid tokens of a sequence, so only how each
    channel varies across tokens is matched, not its scale or offset: the student may represent
    the teacher's structure with any per-channel affine code. A learned projection is used where
    widths differ.
    """

    name = "relational"

    def __init__(
        self,
        n_student_layers: int = 1,
        student_width: int = 0,
        teacher_width: int = 0,
        layer_map: Sequence[int] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(n_student_layers, student_width, teacher_width, layer_map)
        self.eps = eps

    def _prepare(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        return student.float(), teacher.float()

    def pair_loss(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        zs = standardise_tokens(student, mask, self.eps)
        zt = standardise_tokens(teacher, mask, self.eps)
        n = mask.sum(1).clamp_min(1.0).unsqueeze(-1)  # [B, 1]
        r = (zs * zt).sum(1) / n  # [B, H] Pearson r per sequence and channel
        return (1.0 - r).mean()


__all__ = ["AttentionDistillation", "HiddenStateDistillation", "RelationalLoss", "standardise_tokens"]
