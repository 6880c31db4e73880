"""Search strategies by name: ours (space-aware) and Optuna's (parameters only), one interface.

Every strategy is an Optuna sampler, so each runs through the same study and storage. Optuna's
samplers see only the parameters; ours use the space's own sample / neighbours / mutate.

Constraints, one rule for all: every evaluated trial records each constraint's violation with
Optuna's ``Trial.set_constraint`` (<= 0 is feasible; Optuna 5 deprecates ``constraints_func`` for
this). An infeasible trial is COMPLETE when every objective is cheap (all were measured), else
PRUNED: stopped before its expensive objectives, which are never spent on it. Optuna's constrained
samplers (NSGA-II, TPE/MOTPE, GP) read the constraints from the trials themselves (TPE learns from
infeasible pruned trials too), ``study.best_trials`` and ``plot_pareto_front`` leave infeasible
trials out, and optuna-dashboard shows the violations. Ours check the constraints before proposing,
so they rarely produce an infeasible trial at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.search.objectives import Constraint
from elastic_lm.search.samplers import (
    LocalSearchSampler,
    MOREASampler,
    SpaceSampler,
    StratifiedSampler,
)
from elastic_lm.search.study import SpaceLike

STRATEGIES: tuple[str, ...] = ("random", "stratified", "local", "mo-rea", "nsga2", "motpe", "gp")


def make_sampler(
    strategy: str,
    space: SpaceLike,
    seed: int | None = None,
    constraints: Sequence[Constraint] = (),
    size_fn: Callable[[Architecture], float] | None = None,
    **options: Any,
) -> optuna.samplers.BaseSampler:
    """The sampler for ``strategy``; ``options`` go to its constructor (e.g. ``population_size``).

    ``size_fn`` is needed by "stratified" only (the run loop passes the first cheap objective).
    """
    if strategy == "random":
        return SpaceSampler(space, seed=seed, constraints=constraints, **options)
    if strategy == "stratified":
        if size_fn is None:
            raise ConfigError(
                "strategy='stratified' needs a size function; mark one objective cheap=True "
                "(e.g. parameters) or pass size_fn"
            )
        return StratifiedSampler(space, size_fn, seed=seed, constraints=constraints, **options)
    if strategy == "local":
        return LocalSearchSampler(space, seed=seed, constraints=constraints, **options)
    if strategy == "mo-rea":
        return MOREASampler(space, seed=seed, constraints=constraints, **options)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if strategy == "motpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, **options)
    if strategy == "gp":
        # GPSampler handles several objectives (log-EHVI) since Optuna 4.x. Our objectives are
        # deterministic (fixed batches, counted sizes, cached by architecture), so say so. Known
        # limit (benchmarks/search.py): it still spends most trials on parameter vectors that decode
        # to architectures already seen (27-32 distinct in 100 trials on a real super-network; the
        # per-layer choices of dropped layers change the vector, not the architecture).
        options = {"deterministic_objective": True, **options}
        return optuna.samplers.GPSampler(seed=seed, **options)
    raise ConfigError(f"strategy={strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
