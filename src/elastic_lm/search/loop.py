"""The ask/tell search loop: budget, evaluation cache, constraint filter, resume, progress.

``n_trials`` is the size the *study* should reach (finished trials: feasible or infeasible), not
how many this call adds: re-running the same call after a crash finishes the job, and several
workers given the same number share one budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.progress import Progress, quiet_optuna
from elastic_lm.search.objectives import Constraint, Objective, check_names, feasible
from elastic_lm.search.pareto import hypervolume, normalise, to_losses
from elastic_lm.search.result import SearchResult
from elastic_lm.search.strategies import make_sampler
from elastic_lm.search.study import (
    ARCH_ATTR,
    CACHED_ATTR,
    FEASIBLE_ATTR,
    KEY_ATTR,
    METRIC_PREFIX,
    RETRY_ATTR,
    SURPLUS_ATTR,
    WORKER_ATTR,
    SpaceLike,
    arch_of,
    metric_attrs,
    metrics_of,
    open_study,
    param_distributions,
    params_of,
    stores_values,
)
from elastic_lm.search.workers import (
    CLAIM_PREFIX,
    Reclaim,
    WorkerSeededSampler,
    _Heartbeat,
    reclaim_stale,
    worker_id,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_search(
    space: SpaceLike,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    strategy: str | optuna.samplers.BaseSampler = "random",
    n_trials: int = 100,
    storage: str | Path | BaseStorage | None = None,
    seed: int | None = None,
    study_name: str = "search",
    initial_design: bool = True,
    study_attrs: dict[str, Any] | None = None,
    progress: bool = True,
    strategy_options: dict[str, Any] | None = None,
    size_fn: Callable[[Architecture], float] | None = None,
    reclaim: Reclaim = "dead",
    heartbeat_s: float | None = 30.0,
    poll_s: float = 0.05,
    initial_archs: Sequence[Architecture] = (),
) -> SearchResult:
    """Search ``space`` until the study holds ``n_trials`` finished trials; return all results.

    ``storage``: None (in memory), a SQLite path, a journal path (.log/.journal/.jsonl) or any
    Optuna storage URL. ``seed`` makes a run reproducible; each worker derives its own from it and
    the number of its first trial (:func:`~elastic_lm.search.workers.trial_seed`).
    A RUNNING trial whose worker died (its process is gone, or no heartbeat for
    ``5 * heartbeat_s``) is failed and its architecture retried; see :func:`reclaim_stale`.
    ``study_attrs`` are extra study user attributes (e.g. the config hash) written at creation.
    ``initial_archs`` are evaluated right after the initial design (e.g. members spread over size).
    """
    stale_after = 5 * heartbeat_s if heartbeat_s else None
    quiet_optuna()  # Optuna's per-trial INFO lines would drown the progress (shown under --verbose)
    if n_trials < 1:
        raise ConfigError(f"n_trials={n_trials} must be at least 1")
    check_names(objectives, constraints)
    cheap = [o for o in objectives if o.cheap]
    sampler: optuna.samplers.BaseSampler
    if isinstance(strategy, str):
        name, options = strategy, dict(strategy_options or {})
        sampler = WorkerSeededSampler(
            lambda s: make_sampler(
                name,
                space,
                seed=s,
                constraints=constraints,
                size_fn=size_fn or (cheap[0].fn if cheap else None),
                **options,
            ),
            seed,
        )
        sampler.inner  # noqa: B018  (an unknown strategy fails here, before the study is touched)
    else:
        sampler = strategy
    study, created = open_study(
        study_name,
        storage,
        [o.direction for o in objectives],
        sampler,
        metric_names=[o.name for o in objectives],
        user_attrs=_describe(space, objectives, constraints, strategy) | dict(study_attrs or {}),
    )
    reclaim_stale(study, reclaim, stale_after)
    values = stores_values(study)
    if initial_design and created:  # by one worker only, even when several start together
        _enqueue_initial_design(study, space, constraints, values, initial_archs)

    evaluator = _Evaluator(space, objectives, constraints, poll_s, values)
    evaluator.heartbeat_s = heartbeat_s
    evaluator.on_wait = lambda: reclaim_stale(study, reclaim, stale_after)
    distributions = param_distributions(space, values)
    already = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    bar = Progress(n_trials, "search", initial=min(already, n_trials), unit="trial", enabled=progress)
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if progress:
                bar.set_postfix(_summary(trials, objectives))
            bar.set(min(finished, n_trials))
            if finished >= n_trials:
                break
            if finished + running >= n_trials:  # the rest of the budget is being run elsewhere
                reclaim_stale(study, reclaim, stale_after)
                time.sleep(poll_s)
                continue
            try:
                trial = study.ask(fixed_distributions=distributions)
                if not _claim(study, trial):
                    if isinstance(sampler, WorkerSeededSampler):
                        sampler.forget(trial.number)  # its number must not seed us as well
                    continue  # another worker popped the same enqueued trial and runs it
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            trial.set_user_attr(WORKER_ATTR, worker_id())
            ahead = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if sum(t.number < trial.number for t in ahead) >= n_trials:
                trial.set_user_attr(SURPLUS_ATTR, True)  # another worker took the last slot
                study.tell(trial, state=TrialState.FAIL)
                continue
            evaluator.run(study, trial)
    finally:
        bar.close()
    return SearchResult.from_study(study, objectives)


def _claim(study: optuna.Study, trial: Trial) -> bool:
    """Make sure no other worker runs this trial too.

    Optuna pops an enqueued (WAITING) trial without a row lock; our SQLite storages serialise
    their transactions, but a storage the caller built may not. Each writes its own claim; all
    read them back and agree on the earliest one.
    """
    mine = f"{CLAIM_PREFIX}{worker_id()}"
    trial.set_user_attr(mine, time.time_ns())
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    claims = {k: v for k, v in frozen.user_attrs.items() if k.startswith(CLAIM_PREFIX)}
    return min(claims.items(), key=lambda kv: (kv[1], kv[0]))[0] == mine


def _enqueue_initial_design(
    study: optuna.Study,
    space: SpaceLike,
    constraints: Sequence[Constraint],
    values: bool = True,
    extra: Sequence[Architecture] = (),
) -> None:
    """Smallest, largest and middle members first: they anchor the front and the bounds."""
    seen: set[str] = set()
    for arch in (space.smallest(), space.largest(), space.middle(), *extra):
        if arch.key() in seen or not feasible(arch, constraints):
            continue
        seen.add(arch.key())
        study.enqueue_trial(params_of(space, arch, values))


class _Evaluator:
    """Evaluates one asked trial: reuse, else constraints, cheap and then expensive objectives."""

    def __init__(
        self,
        space: SpaceLike,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint],
        poll_s: float,
        values: bool = True,
    ) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.poll_s = poll_s
        self.values = values
        self.heartbeat_s: float | None = None
        self.on_wait: Callable[[], object] = lambda: None

    def run(self, study: optuna.Study, trial: Trial) -> None:
        arch = arch_of(self.space, trial.params, self.values)
        key = arch.key()
        trial.set_user_attr(ARCH_ATTR, arch.to_json())
        trial.set_user_attr(KEY_ATTR, key)
        try:
            with _Heartbeat(trial, self.heartbeat_s):  # also while waiting for another worker
                previous = self._previous(study, trial.number, key)
                if previous is None:
                    metrics, ok = self.evaluate(arch)
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)  # stopped by the user: retried on resume
            study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})
            raise
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)  # a bug or a user error: not retried
            raise
        if previous is not None:
            for name, value in metrics_of(previous).items():
                trial.set_user_attr(METRIC_PREFIX + name, value)
            trial.set_user_attr(FEASIBLE_ATTR, previous.user_attrs.get(FEASIBLE_ATTR, True))
            trial.set_user_attr(CACHED_ATTR, previous.number)
            for name, value in previous.constraints.items():
                trial.set_constraint(name, value)
            if previous.state == TrialState.COMPLETE:
                study.tell(trial, list(previous.values))
            else:
                study.tell(trial, state=TrialState.PRUNED)
            return
        for name, value in metric_attrs(metrics).items():
            trial.set_user_attr(name, value)
        trial.set_user_attr(FEASIBLE_ATTR, ok)
        for c in self.constraints:
            violation = c.violation(metrics[c.name])
            trial.set_constraint(c.name, violation if math.isfinite(violation) else 1e12)
        if all(o.name in metrics for o in self.objectives):  # feasible, or every objective cheap
            study.tell(trial, [metrics[o.name] for o in self.objectives])
        else:  # stopped before its expensive objectives: its constraints tell samplers why
            study.tell(trial, state=TrialState.PRUNED)

    def evaluate(self, arch: Architecture) -> tuple[dict[str, float], bool]:
        """Metrics of ``arch`` and whether it is feasible; expensive objectives only if it is."""
        metrics: dict[str, float] = {}
        ok = True
        for c in self.constraints:
            metrics[c.name] = float(c.fn(arch))
            ok = ok and c.violation(metrics[c.name]) == 0.0
        for o in self.objectives:
            if o.cheap or ok:
                metrics[o.name] = float(o.fn(arch))
        return metrics, ok

    def _key(self, trial: FrozenTrial) -> str | None:
        """The architecture key of a trial, read from its parameters as soon as they are all set.

        Its ``arch_key`` attribute is written a moment later; reading only that let two workers
        with the same architecture miss each other and both evaluate it.
        """
        if KEY_ATTR in trial.user_attrs:
            return str(trial.user_attrs[KEY_ATTR])
        if trial.state != TrialState.RUNNING or len(trial.params) != len(self.space.dimensions()):
            return None
        return arch_of(self.space, trial.params, self.values).key()

    def _previous(self, study: optuna.Study, number: int, key: str) -> FrozenTrial | None:
        """A finished evaluation of the same architecture, waiting for one still running.

        Of two workers holding the same architecture, the lower trial number evaluates it and
        the other waits and reuses its result: no architecture is evaluated twice. A lower trial
        still being asked (its parameters not all written, so its key unknown) may turn out the
        same: it is waited on too, for the milliseconds its ``ask`` takes (or until reclaimed).
        """
        while True:
            trials = [t for t in study.get_trials(deepcopy=False) if t.number != number]
            keys = {t.number: self._key(t) for t in trials}
            done = [t for t in trials if t.state in FINISHED and keys[t.number] == key]
            if done:
                return min(done, key=lambda t: t.number)
            earlier = [t for t in trials if t.state == TrialState.RUNNING and t.number < number]
            if not any(keys[t.number] in (key, None) for t in earlier):
                return None
            self.on_wait()  # the one we wait for may belong to a dead worker
            time.sleep(self.poll_s)


def _summary(trials: Sequence[FrozenTrial], objectives: Sequence[Objective]) -> str:
    """Best value per objective and the hypervolume so far, for the progress bar."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(FEASIBLE_ATTR, True)]
    values = np.array([t.values for t in done], dtype=float).reshape(-1, len(objectives))
    if not len(values):
        return "no feasible evaluation yet"
    directions = [o.direction for o in objectives]
    parts = []
    for j, o in enumerate(objectives):
        best = values[:, j].max() if o.direction == "maximize" else values[:, j].min()
        parts.append(f"{o.name}={best:.4g}")
    bounds = []
    for j, o in enumerate(objectives):
        low, high = o.bounds or (float(values[:, j].min()), float(values[:, j].max()))
        bounds.append((low, high if high > low else low + 1.0))
    hv = hypervolume(normalise(to_losses(values, directions), bounds, directions))
    parts.append(f"hv={hv:.4f}" if math.isfinite(hv) else "hv=?")
    return " ".join(parts)


def _describe(
    space: SpaceLike,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    strategy: str | optuna.samplers.BaseSampler,
) -> dict[str, Any]:
    """Study user attributes that say what the search is, for optuna-dashboard and later readers."""
    dims = space.dimensions()
    return {
        "objectives": [f"{o.name} ({o.direction})" for o in objectives],
        "constraints": [c.name for c in constraints],
        "strategy": strategy if isinstance(strategy, str) else type(strategy).__name__,
        "space_dimensions": len(dims),
        "space": {d.name: list(d.choices) for d in dims[:64]},
    }
