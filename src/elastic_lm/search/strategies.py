"""Search strategies by name: ours (space-aware) and Optuna's (encoding-only), one interface.

Every strategy is an Optuna sampler, so each runs through the same study and storage. Optuna's
samplers see only the integer encoding; ours use the space's own sample / neighbours / mutate.
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
