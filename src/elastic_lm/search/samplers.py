"""Search strategies that know the search space, written as Optuna samplers.

They propose a whole architecture at once (relative sampling over the encoding), so they run
through the same study, storage and ask/tell loop as Optuna's own samplers. They keep no state of
their own beyond a seeded RNG: population and archive are read from the study's finished trials,
which is what makes them resumable and usable by several workers at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from elastic_lm.architecture import Architecture
from elastic_lm.search.objectives import Constraint, feasible
from elastic_lm.search.pareto import crowding_distance, nondominated_ranks, pareto_mask, to_losses
from elastic_lm.search.study import (
    FEASIBLE_ATTR,
    KEY_ATTR,
    SpaceLike,
    param_distributions,
    params_of,
    stored_arch,
    stores_values,
)


class SpaceSampler(BaseSampler):
    """Uniform random members of the space (``space.sample``), new and feasible when possible.

    Subclasses override :meth:`propose`. Candidates already in the study, or violating a
    constraint, are redrawn up to ``max_tries`` times: constraints are cheap, evaluations are not.
    """

    def __init__(
        self,
        space: SpaceLike,
        seed: int | None = None,
        constraints: Sequence[Constraint] = (),
        max_tries: int = 50,
    ) -> None:
        self._space = space
        self._rng = random.Random(seed)
        self._constraints = tuple(constraints)
        self._max_tries = max_tries
        self._distributions = {v: param_distributions(space, v) for v in (True, False)}

    # --- Optuna sampler interface -------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._rng = random.Random()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._distributions[stores_values(study)])

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued trial (initial design, retry): its parameters are given
        history = _History(study)
        arch = self.propose(history)
        return params_of(self._space, arch, stores_values(study))

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # Only reached for a parameter outside the encoding; draw it uniformly.
        return optuna.samplers.RandomSampler(seed=self._rng.getrandbits(32)).sample_independent(
            study, trial, param_name, param_distribution
        )

    # --- strategy ----------------------------------------------------------------------------
    def propose(self, history: _History) -> Architecture:
        return self.new_candidate(history, lambda: self._space.sample(self._rng))

    def new_candidate(self, history: _History, draw: Callable[[], Architecture | None]) -> Architecture:
        """First candidate from ``draw`` that is new and feasible; else the last feasible one."""
        fallback: Architecture | None = None
        for _ in range(self._max_tries):
            arch = draw()
            if arch is None:
                break
            if not feasible(arch, self._constraints):
                continue
            fallback = arch
            if arch.key() not in history.seen:
                return arch
        return fallback if fallback is not None else self._space.sample(self._rng)


class StratifiedSampler(SpaceSampler):
    """Random members spread evenly over ``n_bins`` bins of a size function (e.g. parameters).

    Plain uniform sampling of a layered space piles up at medium sizes; stratifying gives the
    small and the large models their share of the budget.
    """

    def __init__(
        self,
        space: SpaceLike,
        size_fn: Callable[[Architecture], float],
        n_bins: int = 10,
        seed: int | None = None,
        constraints: Sequence[Constraint] = (),
        max_tries: int = 50,
    ) -> None:
        super().__init__(space, seed, constraints, max_tries)
        self._size_fn = size_fn
        self._n_bins = n_bins
        self._pending: list[Architecture] = []

    def _draw(self) -> Architecture:
        if not self._pending:
            drawn = self._space.sample_stratified(self._rng, self._size_fn, self._n_bins)  # type: ignore[attr-defined]
            self._pending = [drawn] if isinstance(drawn, Architecture) else list(drawn)
        return self._pending.pop(0)

    def propose(self, history: _History) -> Architecture:
        return self.new_candidate(history, self._draw)


class LocalSearchSampler(SpaceSampler):
    """Pareto local search: an unevaluated neighbour of a member of the current Pareto archive.

    The archive is the non-dominated set of feasible evaluations. When every neighbour of every
    archive member has been evaluated (a local optimum), it restarts from a random member.
    """

    def propose(self, history: _History) -> Architecture:
        archive = [history.archs[i] for i in np.flatnonzero(history.front())]
        self._rng.shuffle(archive)
        for member in archive:
            options = [
                n
                for n in self._space.neighbours(member)  # type: ignore[attr-defined]
                if n.key() not in history.seen and feasible(n, self._constraints)
            ]
            if options:
                return self._rng.choice(options)
        return super().propose(history)


class MOREASampler(SpaceSampler):
    """Multi-objective regularised evolution (Real et al. 2019, with NSGA-II style selection).

    The population is the ``population_size`` most recent feasible evaluations (the oldest age
    out). A tournament of ``tournament_size`` members picks the best by non-dominated rank, then
    crowding distance (both within the population); the winner is mutated. Until the population
    is full, members are random.
    """

    def __init__(
        self,
        space: SpaceLike,
        population_size: int = 20,
        tournament_size: int = 5,
        mutation_rate: float = 0.2,
        seed: int | None = None,
        constraints: Sequence[Constraint] = (),
        max_tries: int = 50,
    ) -> None:
        super().__init__(space, seed, constraints, max_tries)
        self._population_size = population_size
        self._tournament_size = tournament_size
        self._mutation_rate = mutation_rate

    def propose(self, history: _History) -> Architecture:
        if len(history.archs) < self._population_size:
            return super().propose(history)
        population = history.archs[-self._population_size :]
        losses = history.losses[-self._population_size :]
        ranks = nondominated_ranks(losses)
        crowding = np.zeros(len(population))
        for rank in np.unique(ranks):
            members = ranks == rank
            crowding[members] = crowding_distance(losses[members])
        entrants = self._rng.sample(range(len(population)), self._tournament_size)
        winner = min(entrants, key=lambda i: (ranks[i], -crowding[i], i))
        parent = population[winner]
        return self.new_candidate(
            history,
            lambda: self._space.mutate(parent, self._rng, self._mutation_rate),  # type: ignore[attr-defined]
        )


class _History:
    """The study's evaluations as the samplers need them: feasible, unique, oldest first."""

    def __init__(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        self.seen: set[str] = {t.user_attrs[KEY_ATTR] for t in trials if KEY_ATTR in t.user_attrs}
        directions = [d.name.lower() for d in study.directions]
        done: dict[str, FrozenTrial] = {}
        for t in trials:
            if t.state == TrialState.COMPLETE and t.user_attrs.get(FEASIBLE_ATTR, True):
                done.setdefault(t.user_attrs.get(KEY_ATTR, str(t.params)), t)
        ordered = sorted(done.values(), key=lambda t: t.number)
        self.archs: list[Architecture] = [_arch(t) for t in ordered]
        self.losses = to_losses(np.array([t.values for t in ordered]), directions)

    def front(self) -> np.ndarray:
        return pareto_mask(self.losses) if len(self.archs) else np.zeros(0, dtype=bool)


def _arch(trial: FrozenTrial) -> Architecture:
    arch = stored_arch(trial)
    if arch is None:  # a trial told by someone else without our attributes
        raise ValueError(f"trial {trial.number} has no stored architecture")
    return arch


__all__ = [
    "LocalSearchSampler",
    "MOREASampler",
    "SpaceSampler",
    "StratifiedSampler",
]
