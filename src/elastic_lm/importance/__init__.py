"""Importance: score the parts of a network on the user's text, then reorder it so that "keep the first
k" keeps the most important k (DynaBERT, OFA, Minitron).

Heads and FFN units of any elastic model are scored by name in :mod:`elastic_lm.importance.scores`
(``activation``, ``magnitude``, ``gradient``, ``fisher``) and permuted by
:mod:`elastic_lm.importance.reorder`;
decoder scores (hidden channels, blocks, removal perplexity) live in :mod:`elastic_lm.importance.decoder`.
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
from elastic_lm.importance.scores import (
    SCORES,
    activation_importance,
    fisher_importance,
    gradient_importance,
    importance_scores,
)

__all__ = [
    "IMPORTANCE_MEASURES",
    "SCORES",
    "activation_importance",
    "fisher_importance",
    "gradient_importance",
    "importance_scores",
    "register_measure",
    "reorder_attention",
    "reorder_by_importance",
    "reorder_ffn",
]
