"""Block-wise distillation (NAS-BERT): each student block regresses its teacher block."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses.base import Loss, _masked_mean, uniform_layer_map


def blockwise_loss(
    student_layer: Callable[[int, Tensor, Tensor | None], Tensor],
    teacher_hidden: Sequence[Tensor],
    mask: Tensor | None = None,
    n_student_blocks: int | None = None,
    layer_map: Sequence[int] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """NAS-BERT block-wise distillation (Xu et al. 2021): every block trains on its own.

    ``teacher_hidden`` holds the teacher's embedding output followed by each teacher block's
    output (HF ``hidden_states`` convention, length L+1). Student block ``i`` receives the
    detached teacher state at ``m(i-1)`` and regresses (MSE over valid tokens) the teacher state
    after block ``m(i)``, so no gradient crosses from one block into another and blocks can train
    in parallel. A student block narrower than the teacher is compared with the teacher's first
    channels (what elastic slicing keeps). Returns the mean over blocks and the per-block losses.
    """
    n_teacher = len(teacher_hidden) - 1
    if n_teacher < 1:
        raise DataError("teacher_hidden needs the embedding output plus at least one block output")
    n_student = n_teacher if n_student_blocks is None else n_student_blocks
    if n_student == 0:  # every layer dropped: nothing to regress
        zero = teacher_hidden[0].new_zeros(())
        return zero, []
    mapping = list(layer_map) if layer_map is not None else uniform_layer_map(n_student, n_teacher)
    parts = []
    previous = -1
    for i in range(n_student):
        inputs = teacher_hidden[previous + 1].detach()
        target = teacher_hidden[mapping[i] + 1].detach()
        previous = mapping[i]
        output = student_layer(i, inputs, mask)
        if output.shape[-1] > target.shape[-1]:
            raise ConfigError(
                f"student block {i} is {output.shape[-1]} wide but the teacher only "
                f"{target.shape[-1]}; block-wise distillation needs a teacher at least as wide"
            )
        target = target[..., : output.shape[-1]]
        token_mask = mask.float() if mask is not None else torch.ones(output.shape[:2], device=output.device)
        parts.append(_masked_mean((output - target).pow(2).mean(-1), token_mask))
    return torch.stack(parts).mean(), parts


class BlockwiseDistillation(Loss):
    """NAS-BERT block-wise distillation as a loss spec (``{name: blockwise}``).

    It runs the student's layers itself (``model.backbone.forward_layer``) on the teacher's hidden
    states, so the training loop calls :meth:`layerwise` instead of ``forward``. The selected
    sub-network's non-identity layers are mapped onto the teacher's layers (uniform map, or
    ``layer_map`` with one teacher layer per active student layer); see :func:`blockwise_loss`.
    """

    name = "blockwise"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    layerwise_loss = True
    default_when = ("teacher",)

    def __init__(self, layer_map: Sequence[int] | None = None) -> None:
        super().__init__()
        self.layer_map = list(layer_map) if layer_map is not None else None

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        raise ConfigError("loss 'blockwise' runs the model's layers; call CombinedLoss(..., model=model)")

    def layerwise(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any) -> Tensor:
        """Mean over the active student blocks of their block-wise regression losses."""
        backbone: Any = getattr(model, "backbone", model)
        if not hasattr(backbone, "forward_layer"):
            raise ConfigError(
                f"loss 'blockwise' needs a model with forward_layer (an elastic model), not "
                f"{type(model).__name__}"
            )
        states = getattr(teacher, "hidden_states", None)
        if not states:
            raise DataError("teacher outputs have no hidden_states; call it with output_hidden_states=True")
        layers = cast(Any, model).architecture.layers
        active = [i for i, layer in enumerate(layers) if layer.block != "identity"]
        mask = batch.get("attention_mask")

        def run(k: int, hidden: Tensor, m: Tensor | None) -> Tensor:
            return backbone.forward_layer(active[k], hidden, m)

        total, _ = blockwise_loss(run, states, mask, n_student_blocks=len(active), layer_map=self.layer_map)
        return total


__all__ = ["BlockwiseDistillation", "blockwise_loss"]
