"""A thin layer over an Optuna study: storage choice, the encoding as parameters, stored attributes.

Every strategy runs through the same study, so a search can be resumed, shared by several workers
and opened in ``optuna-dashboard`` whatever sampler drove it. Each dimension of the space is one
parameter holding its *real* value (``layer3.ffn = 1024``, ``layer0.block = "bert"``): evenly
spaced integer choices are an ``IntDistribution(low, high, step)`` (ordered, so TPE, GP and NSGA-II
model them as numbers), anything else a ``CategoricalDistribution`` of the choices. Studies created
before this stored choice indices (``IntDistribution(0, n - 1)``); they carry no ``params`` study
attribute and keep that encoding, so they resume unchanged.
"""

from __future__ import annotations

import itertools
import random
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError

JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")

# Keys of trial user attributes: the architecture and bookkeeping; metrics live under METRIC_PREFIX.
ARCH_ATTR = "arch"
KEY_ATTR = "arch_key"
FEASIBLE_ATTR = "feasible"
WORKER_ATTR = "worker"
CACHED_ATTR = "cached_from"
RETRY_ATTR = "retry_of"
SURPLUS_ATTR = "surplus"
METRIC_PREFIX = "metric:"
# Study user attribute that says parameters hold real values; absent on studies of choice indices.
PARAMS_ATTR = "params"
PARAMS_VALUES = "values"


class Dimension(Protocol):
    name: str
    choices: tuple[Any, ...]


class SpaceLike(Protocol):
    """What the search needs from a search space (``elastic_lm.space.SearchSpace`` has it)."""

    def dimensions(self) -> list[Any]: ...
    def encode(self, arch: Architecture) -> list[int]: ...
    def decode(self, vector: Sequence[int]) -> Architecture: ...
    def sample(self, rng: Any) -> Architecture: ...
    def smallest(self) -> Architecture: ...
    def largest(self) -> Architecture: ...
    def middle(self) -> Architecture: ...


def resolve_storage(storage: str | Path | BaseStorage | None) -> BaseStorage | None:
    """Turn what a user writes into an Optuna storage.

    ``None`` is in-memory (nothing survives); a URL (``sqlite:///``, ``postgresql://``...) is an
    RDB storage; a path ending in .log/.journal/.jsonl is a journal file (safe for several
    processes and machines on a shared file system); any other path is a SQLite file.
    """
    if storage is None or isinstance(storage, BaseStorage):
        return storage
    text = str(storage)
    try:
        if "://" in text:
            return _rdb(text)
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in JOURNAL_SUFFIXES:
            return JournalStorage(JournalFileBackend(str(path)))
        return _rdb(f"sqlite:///{path.resolve()}")
    except (ImportError, sqlalchemy.exc.ArgumentError, sqlalchemy.exc.SQLAlchemyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ConfigError(
            f"study storage {_hide_password(text)!r} cannot be opened ({first}); use a .db (SQLite) or "
            f".log (journal) path, sqlite:///PATH, or postgresql://USER@HOST/DB with a running server "
            f"and pip install 'elastic-lm[postgres]'"
        ) from None


def _hide_password(url: str) -> str:
    """``url`` without the password, for error messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _rdb(url: str, attempts: int = 20) -> RDBStorage:
    """An RDB storage whose schema is created once even when several workers start together.

    Optuna creates the tables and the version row on first use; two processes doing it at the
    same moment make one fail (``IntegrityError``, "table already exists"; on PostgreSQL a
    ``ProgrammingError``, "relation ... already exists"). The loser finds the
    schema made by the winner when it tries again, so we retry with a small random back-off.
    """
    sqlite = url.startswith("sqlite")
    # SQLite shared by several workers: wait for the file lock instead of failing at once; pysqlite
    # must not open transactions itself, so ours (below) can take the write lock when they begin.
    engine_kwargs = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else {}
    for attempt in range(attempts):
        try:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs)
            if sqlite:
                _serialise_sqlite_transactions(storage.engine)
            return storage
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.ProgrammingError,  # PostgreSQL: DuplicateTable "relation ... already exists"
        ) as error:
            if attempt == attempts - 1 or not _schema_race(error):
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _serialise_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Begin every transaction with the write lock (``BEGIN IMMEDIATE``).

    SQLite has no row locks: Optuna's pop of an enqueued trial (read WAITING, then write RUNNING)
    let two processes take the same trial, several times in 5 runs of 4 workers. Transactions that
    lock first run one at a time, so each enqueued trial goes to one worker.
    """
    sqlalchemy.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections opened while the storage set itself up start afresh


def _schema_race(error: Exception) -> bool:
    """Whether ``error`` is another worker creating the same schema (worth retrying)."""
    text = str(error).lower()
    return any(s in text for s in ("already exists", "unique constraint", "duplicate key", "locked"))


def param_distributions(space: SpaceLike, values: bool = True) -> dict[str, BaseDistribution]:
    """One parameter per dimension, named after it: its real values, or (``values=False``) indices."""
    dims = space.dimensions()
    names = [d.name for d in dims]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"search space dimensions {repeated} repeat; dimension names must be unique")
    if not values:
        return {d.name: IntDistribution(0, len(d.choices) - 1) for d in dims}
    return {d.name: value_distribution(d.choices) for d in dims}


def value_distribution(choices: Sequence[Any]) -> BaseDistribution:
    """``IntDistribution(low, high, step)`` for evenly spaced increasing integers, else categorical."""
    ints = all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
    if ints and len(choices) == 1:
        return IntDistribution(int(choices[0]), int(choices[0]))
    if ints:
        steps = {b - a for a, b in itertools.pairwise(choices)}
        if len(steps) == 1 and (step := steps.pop()) > 0:
            return IntDistribution(int(choices[0]), int(choices[-1]), step=int(step))
    return CategoricalDistribution(tuple(choices))


def params_of(space: SpaceLike, arch: Architecture, values: bool = True) -> dict[str, Any]:
    """The trial parameters that encode ``arch`` (real values, or indices for an old study)."""
    dims = space.dimensions()
    vector = [int(v) for v in space.encode(arch)]
    if not values:
        return {d.name: i for d, i in zip(dims, vector, strict=True)}
    return {d.name: d.choices[i] for d, i in zip(dims, vector, strict=True)}


def arch_of(space: SpaceLike, params: dict[str, Any], values: bool = True) -> Architecture:
    """Decode trial parameters back into a (always valid) member of the space."""
    dims = space.dimensions()
    if not values:
        return space.decode([int(params[d.name]) for d in dims])
    return space.decode([list(d.choices).index(params[d.name]) for d in dims])


def stores_values(study: optuna.Study) -> bool:
    """Whether ``study`` keeps real values as parameters (every study this version creates)."""
    return study.user_attrs.get(PARAMS_ATTR) == PARAMS_VALUES


def metric_attrs(metrics: dict[str, float]) -> dict[str, float]:
    return {METRIC_PREFIX + k: float(v) for k, v in metrics.items()}


def metrics_of(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    n = len(METRIC_PREFIX)
    return {k[n:]: v for k, v in trial.user_attrs.items() if k.startswith(METRIC_PREFIX)}


def stored_arch(trial: optuna.trial.FrozenTrial) -> Architecture | None:
    text = trial.user_attrs.get(ARCH_ATTR)
    return Architecture.from_json(text) if text else None


def create_or_load_study(
    name: str,
    storage: str | Path | BaseStorage | None,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    metric_names: Sequence[str] | None = None,
    user_attrs: dict[str, Any] | None = None,
) -> optuna.Study:
    """Open study ``name`` if it exists (resume / join as a worker), else create it.

    Refuses to resume a study whose directions or objective names differ: mixing them would make
    the Pareto front meaningless. ``user_attrs`` (space, objectives, config hash...) are written
    when missing, so a study opened in optuna-dashboard says what run made it.
    """
    return open_study(name, storage, directions, sampler, metric_names, user_attrs)[0]


def open_study(
    name: str,
    storage: str | Path | BaseStorage | None,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    metric_names: Sequence[str] | None = None,
    user_attrs: dict[str, Any] | None = None,
) -> tuple[optuna.Study, bool]:
    """:func:`create_or_load_study`, also saying whether this call created the study.

    Of several workers started together on a new storage exactly one creates the study (the
    storage refuses a second study of the same name), so only that one seeds the initial design.
    """
    resolved = resolve_storage(storage)
    try:
        study = optuna.create_study(
            study_name=name, storage=resolved, directions=cast(list[Any], list(directions)), sampler=sampler
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        assert resolved is not None, "an in-memory study cannot already exist"
        study = optuna.load_study(study_name=name, storage=resolved, sampler=sampler)
        created = False
    if created or (PARAMS_ATTR not in study.user_attrs and not study.get_trials(deepcopy=False)):
        study.set_user_attr(PARAMS_ATTR, PARAMS_VALUES)  # new study: real values (old ones: indices)
    for key, value in (user_attrs or {}).items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    stored = [d.name.lower() for d in study.directions]
    if stored != [d.lower() for d in directions]:
        raise ConfigError(
            f"study {name!r} was created with directions {stored}, not {list(directions)}; "
            f"use another study name or the original objectives"
        )
    if metric_names is not None:
        if study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still there in 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(metric_names))
        elif list(study.metric_names) != list(metric_names):
            raise ConfigError(
                f"study {name!r} has objectives {study.metric_names}, not {list(metric_names)}; "
                f"use another study name or the original objectives"
            )
    return study, created
