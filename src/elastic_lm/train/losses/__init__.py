"""Training losses: small modules, combined by a weighted spec list.

Every loss is called as ``loss(student, batch, teacher=None) -> scalar``, where ``student`` and
``teacher`` look like a Hugging Face ``ModelOutput`` (``.logits``, ``.hidden_states``,
``.attentions``) and ``batch`` is the mapping fed to the model (``labels``, ``attention_mask``, and
for the cached teacher ``teacher_topk_values`` / ``teacher_topk_indices``). Teacher tensors are
always detached here, so in-place distillation from the largest sub-network cannot leak gradients.

Where student and teacher differ in depth, student layer ``i`` is compared with teacher layer
``m(i)`` (:func:`uniform_layer_map` unless a ``layer_map`` is given); a ``None`` entry in a student
tuple (a dropped layer) is skipped. Where widths differ, learned projections (parameters of the
loss, so hand ``CombinedLoss.parameters()`` to the optimiser) map the student into the teacher's
width; a sub-network narrower than the projection's input uses its first columns, as elastic
slicing keeps the first channels. Without a projection a narrower student is compared with the
teacher's first channels (the in-place case: the teacher is the largest sub-network).
"""

from __future__ import annotations

from elastic_lm.train.losses.base import IGNORE_INDEX, Loss, uniform_layer_map
from elastic_lm.train.losses.blockwise import BlockwiseDistillation, blockwise_loss
from elastic_lm.train.losses.combined import CombinedLoss
from elastic_lm.train.losses.hidden import (
    AttentionDistillation,
    HiddenStateDistillation,
    RelationalLoss,
    standardise_tokens,
)
from elastic_lm.train.losses.logits import LogitDistillation, TopKLogitDistillation
from elastic_lm.train.losses.registry import LOSSES, make_loss
from elastic_lm.train.losses.task import ClassificationLoss, CLMLoss, MLMLoss, RegressionLoss

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "AttentionDistillation",
    "BlockwiseDistillation",
    "CLMLoss",
    "ClassificationLoss",
    "CombinedLoss",
    "HiddenStateDistillation",
    "LogitDistillation",
    "Loss",
    "MLMLoss",
    "RegressionLoss",
    "RelationalLoss",
    "TopKLogitDistillation",
    "blockwise_loss",
    "make_loss",
    "standardise_tokens",
    "uniform_layer_map",
]
