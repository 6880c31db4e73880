"""Multi-objective architecture search over any search space, through a persistent Optuna study.

Public API: :class:`Objective`, :class:`Constraint`, :func:`run_search`, :class:`SearchResult`,
:func:`create_or_load_study`, :func:`make_sampler` and the strategy samplers.
"""

from elastic_lm.search.loop import reclaim_stale, run_search
from elastic_lm.search.objectives import Constraint, Objective
from elastic_lm.search.pareto import hypervolume, normalise, pareto_mask, to_losses
from elastic_lm.search.result import Evaluation, SearchResult
from elastic_lm.search.samplers import (
    LocalSearchSampler,
    MOREASampler,
    SpaceSampler,
    StratifiedSampler,
)
from elastic_lm.search.strategies import STRATEGIES, make_sampler
from elastic_lm.search.study import create_or_load_study, resolve_storage

__all__ = [
    "STRATEGIES",
    "Constraint",
    "Evaluation",
    "LocalSearchSampler",
    "MOREASampler",
    "Objective",
    "SearchResult",
    "SpaceSampler",
    "StratifiedSampler",
    "create_or_load_study",
    "hypervolume",
    "make_sampler",
    "normalise",
    "pareto_mask",
    "reclaim_stale",
    "resolve_storage",
    "run_search",
    "to_losses",
]
