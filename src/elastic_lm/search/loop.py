"""The ask/tell search loop: budget, evaluation cache, constraint filter, resume, progress.

``n_trials`` is the size the *study* should reach (finished trials: feasible or infeasible), not
how many this call adds: re-running the same call after a crash finishes the job, and several
workers given the same number share one budget.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState
from tqdm.auto import tqdm

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
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
    create_or_load_study,
    metric_attrs,
    metrics_of,
    param_distributions,
    params_of,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIM_PREFIX = "claim:"
Reclaim = Literal["dead", "all", "none"]


def worker_id() -> str:
    """Who runs a trial: host and process id, so a dead owner can be recognised on resume."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_dead(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False  # another machine: cannot tell from here (use reclaim="all" when sure)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reclaim_stale(study: optuna.Study, mode: Reclaim = "dead") -> list[int]:
    """Fail trials left RUNNING by a dead worker and enqueue their parameters again.

    ``"dead"``: owners on this host whose process is gone. ``"all"``: every RUNNING trial not
    ours (only when no other worker is alive). Returns the numbers of the reclaimed trials. Two
    workers reclaiming at once is safe: only the one whose ``tell`` succeeds re-enqueues.
    """
    if mode == "none":
        return []
    me = worker_id()
    reclaimed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER_ATTR)
        if not (_owner_dead(owner) if mode == "dead" else owner != me):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished or reclaimed by someone else meanwhile
        study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
        reclaimed.append(t.number)
    return reclaimed


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
    progress: bool = True,
    strategy_options: dict[str, Any] | None = None,
    size_fn: Callable[[Architecture], float] | None = None,
    reclaim: Reclaim = "dead",
    poll_s: float = 0.05,
) -> SearchResult:
    """Search ``space`` until the study holds ``n_trials`` finished trials; return all results.

    ``storage``: None (in memory), a SQLite path, a journal path (.log/.journal/.jsonl) or any
    Optuna storage URL. ``seed`` makes one worker reproducible; give each worker its own seed.
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials={n_trials} must be at least 1")
    check_names(objectives, constraints)
    cheap = [o for o in objectives if o.cheap]
    if isinstance(strategy, str):
        sampler = make_sampler(
            strategy,
            space,
            seed=seed,
            constraints=constraints,
            size_fn=size_fn or (cheap[0].fn if cheap else None),
            **(strategy_options or {}),
        )
    else:
        sampler = strategy
    study = create_or_load_study(
        study_name,
        storage,
        [o.direction for o in objectives],
        sampler,
        metric_names=[o.name for o in objectives],
    )
    reclaim_stale(study, reclaim)
    if initial_design and not study.get_trials(deepcopy=False):
        _enqueue_initial_design(study, space, constraints)

    evaluator = _Evaluator(space, objectives, constraints, poll_s)
    distributions = param_distributions(space)
    bar = tqdm(total=n_trials, file=sys.stderr, disable=not progress, desc=f"search {study_name}")
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            bar.n = min(finished, n_trials)
            if progress:
                bar.set_postfix_str(_summary(trials, objectives), refresh=True)
            if finished >= n_trials:
                break
            if finished + running >= n_trials:  # the rest of the budget is being run elsewhere
                reclaim_stale(study, reclaim)
                time.sleep(poll_s)
                continue
            try:
                trial = study.ask(fixed_distributions=distributions)
                if not _claim(study, trial):
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

    SQLite has no row locks, so two processes can both take the same enqueued (WAITING) trial.
    Each writes its own claim; all read them back and agree on the earliest one.
    """
    mine = f"{CLAIM_PREFIX}{worker_id()}"
    trial.set_user_attr(mine, time.time_ns())
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    claims = {k: v for k, v in frozen.user_attrs.items() if k.startswith(CLAIM_PREFIX)}
    return min(claims.items(), key=lambda kv: (kv[1], kv[0]))[0] == mine


def _enqueue_initial_design(
    study: optuna.Study, space: SpaceLike, constraints: Sequence[Constraint]
) -> None:
    """Smallest, largest and middle members first: they anchor the front and the bounds."""
    seen: set[str] = set()
    for arch in (space.smallest(), space.largest(), space.middle()):
        if arch.key() in seen or not feasible(arch, constraints):
            continue
        seen.add(arch.key())
        study.enqueue_trial(params_of(space, arch))


class _Evaluator:
    """Evaluates one asked trial: reuse, else constraints, cheap and then expensive objectives."""

    def __init__(
        self,
        space: SpaceLike,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint],
        poll_s: float,
    ) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.poll_s = poll_s

    def run(self, study: optuna.Study, trial: Trial) -> None:
        arch = arch_of(self.space, trial.params)
        key = arch.key()
        trial.set_user_attr(ARCH_ATTR, arch.to_json())
        trial.set_user_attr(KEY_ATTR, key)
        previous = self._previous(study, trial.number, key)
        if previous is not None:
            for name, value in metrics_of(previous).items():
                trial.set_user_attr(METRIC_PREFIX + name, value)
            trial.set_user_attr(FEASIBLE_ATTR, previous.user_attrs.get(FEASIBLE_ATTR, True))
            trial.set_user_attr(CACHED_ATTR, previous.number)
            if previous.state == TrialState.COMPLETE:
                study.tell(trial, list(previous.values))
            else:
                study.tell(trial, state=TrialState.PRUNED)
            return
        try:
            metrics, ok = self.evaluate(arch)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        for name, value in metric_attrs(metrics).items():
            trial.set_user_attr(name, value)
        trial.set_user_attr(FEASIBLE_ATTR, ok)
        if ok:
            study.tell(trial, [metrics[o.name] for o in self.objectives])
        else:
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

    def _previous(self, study: optuna.Study, number: int, key: str) -> FrozenTrial | None:
        """A finished evaluation of the same architecture, waiting for one still running.

        Of two workers holding the same architecture, the lower trial number evaluates it and
        the other waits and reuses its result: no architecture is evaluated twice.
        """
        while True:
            same = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.number != number and t.user_attrs.get(KEY_ATTR) == key
            ]
            done = [t for t in same if t.state in FINISHED]
            if done:
                return min(done, key=lambda t: t.number)
            if not any(t.state == TrialState.RUNNING and t.number < number for t in same):
                return None
            time.sleep(self.poll_s)


def _summary(trials: Sequence[FrozenTrial], objectives: Sequence[Objective]) -> str:
    """Best value per objective and the hypervolume so far, for the progress bar."""
    values = np.array(
        [t.values for t in trials if t.state == TrialState.COMPLETE], dtype=float
    ).reshape(-1, len(objectives))
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
