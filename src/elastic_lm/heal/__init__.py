"""Healing by distillation: a cut decoder trained briefly from the full model (logit KD, top-k allowed,
plus the representation losses of :mod:`elastic_lm.train.losses`), then re-evaluated.

:mod:`.distill` is the loop, :mod:`.baselines` the layer-dropping and uniform-width comparisons,
:mod:`.run` the ``heal`` stage of the decoder recipe. For encoders, :mod:`.reconstruct` (least-squares
re-fit) and :mod:`.encoder` (a member distilled alone) act at export, on the super-network.
"""

from elastic_lm.heal.distill import HealBudget, HealResult, heal_model, kd_divergence

__all__ = ["HealBudget", "HealResult", "heal_model", "kd_divergence"]
