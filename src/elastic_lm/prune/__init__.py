"""Structural pruning of a fine-tuned encoder by NAS (Klein et al., TMLR 2024): what is specific to
pruning and is not a stage (task data, fine-tuning helpers, baselines, vocabulary pruning).

The stages themselves are a recipe of the one engine, :mod:`elastic_lm.pipeline.recipes.prune`;
``run_prune`` and ``PruneResult`` are re-exported from there (imported on first use, so this package
never imports the recipe that uses it)::

    from elastic_lm.config import load_config
    from elastic_lm.prune import run_prune
    result = run_prune(load_config("configs/prune-sentiment.yaml", budget="quick"), baselines=True)

See ``docs/pruning.md``.
"""

from __future__ import annotations

from typing import Any

from elastic_lm.importance import gradient_importance
from elastic_lm.prune.data import TaskData, load_search_data
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.final import final_evaluation
from elastic_lm.prune.vocab import kept_token_ids, prune_vocabulary_folder

_FROM_RECIPE = ("PruneResult", "run_prune")


def __getattr__(name: str) -> Any:
    if name in _FROM_RECIPE:
        from elastic_lm.pipeline.recipes import prune as recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'elastic_lm.prune' has no attribute {name!r}")


__all__ = [
    "PruneResult",
    "TaskData",
    "evaluate_model",
    "final_evaluation",
    "fixed_batches",
    "gradient_importance",
    "kept_token_ids",
    "load_search_data",
    "prune_vocabulary_folder",
    "run_prune",
]
