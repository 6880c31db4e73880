"""Several workers on one study: who owns a trial, when its owner is dead, and per-worker seeds.

A worker can die anywhere: between asking for a trial and claiming it, or while evaluating it.
Its RUNNING trial must then be failed and its architecture re-queued, never waited on forever.
Optuna's own heartbeat (``fail_stale_trials``) only covers RDB storages inside ``optimize`` and
knows nothing of a trial whose heartbeat never started, so the claim, our heartbeat and the
trial's start time serve as signs of life here, for every storage.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, Trial, TrialState

from elastic_lm.search.study import RETRY_ATTR, WORKER_ATTR

CLAIM_PREFIX = "claim:"
HEARTBEAT_ATTR = "heartbeat"
Reclaim = Literal["dead", "all", "none"]
# A trial nobody claimed (its worker died right after asking for it) is stale after this long
# even when heartbeats are off: claiming takes milliseconds.
UNCLAIMED_GRACE_S = 60.0


def worker_id() -> str:
    """Who runs a trial: host and process id, so a dead owner can be recognised on resume."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner(trial: FrozenTrial) -> str | None:
    """The worker attribute, else the earliest claim (a worker killed right after claiming)."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    if owner:
        return str(owner)
    claims = sorted((v, k) for k, v in trial.user_attrs.items() if k.startswith(CLAIM_PREFIX))
    return claims[0][1][len(CLAIM_PREFIX) :] if claims else None


def _owner_dead(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False  # another machine: its heartbeat tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _last_sign_of_life(trial: FrozenTrial) -> float | None:
    """Wall-clock seconds of the owner's last heartbeat; the claim, else the start, is the first."""
    stamps = [v / 1e9 for k, v in trial.user_attrs.items() if k.startswith(CLAIM_PREFIX)]
    if HEARTBEAT_ATTR in trial.user_attrs:
        stamps.append(float(trial.user_attrs[HEARTBEAT_ATTR]))
    if not stamps and trial.datetime_start is not None:
        stamps.append(trial.datetime_start.timestamp())  # asked, never claimed
    return max(stamps) if stamps else None


def _is_stale(trial: FrozenTrial, mode: Reclaim, stale_after_s: float | None) -> bool:
    owner = _owner(trial)
    if mode == "all":
        return owner != worker_id()
    if _owner_dead(owner):
        return True
    limit = stale_after_s if owner or stale_after_s is not None else UNCLAIMED_GRACE_S
    last = _last_sign_of_life(trial)
    return limit is not None and last is not None and time.time() - last > limit


def reclaim_stale(
    study: optuna.Study, mode: Reclaim = "dead", stale_after_s: float | None = 300.0
) -> list[int]:
    """Fail trials left RUNNING by a dead worker and enqueue their parameters again.

    ``"dead"``: owners on this host whose process is gone, and trials anywhere with no sign of
    life (claim, heartbeat, or start when never claimed) for ``stale_after_s``. ``"all"``:
    every RUNNING trial not ours (only when no other worker is alive). Returns the numbers of
    the reclaimed trials. Two workers reclaiming at once is safe: only the one whose ``tell``
    succeeds re-enqueues.
    """
    if mode == "none":
        return []
    reclaimed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(t, mode, stale_after_s):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished or reclaimed by someone else meanwhile
        study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
        reclaimed.append(t.number)
    return reclaimed


class _Heartbeat:
    """Writes the time into the trial every ``interval_s`` while an evaluation runs.

    Optuna's own heartbeat only runs inside ``study.optimize`` and only for RDB storages; this one
    works with ask/tell and every storage, so a worker on another machine can tell a dead one.
    """

    def __init__(self, trial: Trial, interval_s: float | None) -> None:
        self._trial, self._interval = trial, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self._interval:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self._trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # reclaimed by another worker: nothing left to keep alive

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def trial_seed(seed: int | None, first_trial: int) -> int | None:
    """The seed of a worker whose first trial has number ``first_trial``.

    Trial numbers are handed out atomically by the storage, so workers started together get
    different seeds; a single worker on a new study (first trial 0) keeps ``seed`` itself, and a
    resumed one gets the same derived seed every time: reproducible without a process id.
    """
    if seed is None or first_trial == 0:
        return seed
    return zlib.crc32(f"{seed}:{first_trial}".encode())


class WorkerSeededSampler(BaseSampler):
    """A sampler built at this worker's first trial, seeded by :func:`trial_seed`.

    ``make(seed)`` builds the real sampler; every call is delegated to it. If another worker
    wins the claim on that first trial, :meth:`forget` lets the next trial choose the seed.
    """

    def __init__(self, make: Callable[[int | None], BaseSampler], seed: int | None) -> None:
        self._make, self._seed = make, seed
        self._inner: BaseSampler | None = None
        self._first: int | None = None

    @property
    def inner(self) -> BaseSampler:
        if self._inner is None:  # used before any trial (not by Optuna today): the bare seed
            self._inner = self._make(self._seed)
        return self._inner

    def forget(self, number: int) -> None:
        """Trial ``number`` went to another worker: if it chose our seed, choose again."""
        if self._first == number:
            self._first, self._inner = None, None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._first is None:
            self._first = trial.number
            self._inner = self._make(trial_seed(self._seed, trial.number))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
