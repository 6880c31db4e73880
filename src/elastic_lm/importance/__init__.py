"""Importance: score heads and FFN units by name (activation, magnitude, gradient), then reorder the
network so that "keep the first k" keeps the most important k (DynaBERT, OFA, Minitron).

Every recipe that inherits weights reorders before its super-network trains; pruning reorders its
fine-tuned model the same way. Reordering is a permutation: the full model's function is unchanged.
"""

from elastic_lm.importance.reorder import (
    IMPORTANCE_MEASURES,
    register_measure,
    reorder_attention,
    reorder_by_importance,
    reorder_ffn,
)
from elastic_lm.importance.scores import SCORES, activation_importance, gradient_importance, importance_scores

__all__ = [
    "IMPORTANCE_MEASURES",
    "SCORES",
    "activation_importance",
    "gradient_importance",
    "importance_scores",
    "register_measure",
    "reorder_attention",
    "reorder_by_importance",
    "reorder_ffn",
]
