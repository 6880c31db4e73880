"""Evaluation: sub-networks with inherited weights on fixed batches (search), and exported models
fine-tuned on downstream tasks (:mod:`elastic_lm.evaluate.downstream`).

Public API: :func:`evaluate_subnetwork`, :func:`fixed_eval_batches` and the pure metric helpers.
"""

from elastic_lm.evaluate.batches import fixed_eval_batches
from elastic_lm.evaluate.metrics import (
    accuracy,
    f1_binary,
    f1_macro,
    mape,
    mean_squared_error,
    pearson,
    perplexity_from_nll,
    spearman,
)
from elastic_lm.evaluate.subnetwork import TASK_KINDS, evaluate_subnetwork, task_kind

__all__ = [
    "TASK_KINDS",
    "accuracy",
    "evaluate_subnetwork",
    "f1_binary",
    "f1_macro",
    "fixed_eval_batches",
    "mape",
    "mean_squared_error",
    "pearson",
    "perplexity_from_nll",
    "spearman",
    "task_kind",
]
