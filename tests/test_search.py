"""The search loop and its strategies on the dummy space (in memory or SQLite; milliseconds)."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import optuna
import pytest

from elastic_lm.architecture import Architecture
from elastic_lm.search import Constraint, Objective, SearchResult, run_search
from elastic_lm.search.study import param_distributions
from search_dummy import DummySpace, accuracy, error, size, skew

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Options that suit an 80-trial budget: NSGA-II's default population (50) would leave it random.
OPTIONS: dict[str, dict[str, Any]] = {
    "random": {},
    "stratified": {},
    "local": {},
    "mo-rea": {"population_size": 10, "tournament_size": 3},
    "nsga2": {"population_size": 8},
    "motpe": {},
    "gp": {"n_startup_trials": 8},
}
GUIDED = ["stratified", "local", "mo-rea", "nsga2", "motpe"]


def two_objectives(counter: Counter[str] | None = None) -> list[Objective]:
    def counted_error(arch: Architecture) -> float:
        if counter is not None:
            counter[arch.key()] += 1
        return error(arch)

    return [
        Objective("size", size, cheap=True, bounds=(0, 48)),
        Objective("error", counted_error, bounds=(0, 192)),
    ]


def three_objectives() -> list[Objective]:
    return [*two_objectives(), Objective("skew", skew, bounds=(0, 24))]


def search(strategy: str, seed: int, n_trials: int = 80, **kwargs: Any) -> SearchResult:
    kwargs.setdefault("objectives", two_objectives())
    return run_search(
        DummySpace(),
        strategy=strategy,
        n_trials=n_trials,
        seed=seed,
        progress=False,
        strategy_options=OPTIONS[strategy],
        **kwargs,
    )


def median_hv(strategy: str, seeds: range, **kwargs: Any) -> float:
    return statistics.median(search(strategy, s, **kwargs).hypervolume() for s in seeds)


@pytest.fixture(scope="module")
def random_hv_2d() -> float:
    return median_hv("random", range(5))


@pytest.mark.parametrize("strategy", GUIDED)
def test_guided_strategy_reaches_random_hypervolume_2d(strategy: str, random_hv_2d: float) -> None:
    assert median_hv(strategy, range(5)) >= random_hv_2d


# In 3-D the front is a surface: covering it needs spread more than local refinement. With 60
# trials, NSGA-II and MOTPE beat random; local search (one step at a time) and size-stratified
# sampling (blind to the third objective) do not yet, which docs/search.md says.
@pytest.mark.parametrize("strategy", ["nsga2", "motpe"])
def test_guided_strategy_reaches_random_hypervolume_3d(strategy: str) -> None:
    kwargs = {"objectives": three_objectives(), "n_trials": 60}
    assert median_hv(strategy, range(5), **kwargs) >= median_hv("random", range(5), **kwargs)


@pytest.mark.slow
def test_gp_reaches_random_hypervolume() -> None:
    # GPSampler (multi-objective log-EHVI) costs ~0.5 s per trial on one core, hence slow.
    assert median_hv("gp", range(3), n_trials=30) >= median_hv("random", range(3), n_trials=30)


@pytest.mark.parametrize("strategy", ["random", "stratified", "local", "mo-rea", "nsga2", "motpe"])
def test_constraints_filter_before_expensive_objectives(strategy: str) -> None:
    counter: Counter[str] = Counter()
    limit = Constraint("size", size, max=20)
    result = search(
        strategy,
        0,
        n_trials=30,
        objectives=two_objectives(counter)[1:],
        constraints=[limit],
        size_fn=size,
    )
    space = DummySpace()
    assert all(size(space.decode(space.encode(Architecture.from_json(k)))) <= 20 for k in counter)
    assert all(e.feasible == (e.metrics["size"] <= 20) for e in result.evaluations)
    assert all("error" not in e.metrics for e in result.evaluations if not e.feasible)
    assert max(counter.values()) == 1  # the cache: no architecture evaluated twice
    assert len(result.evaluations) == 30
    assert all(e.metrics["size"] <= 20 for e in result.pareto())


@pytest.mark.parametrize("strategy", ["random", "stratified", "local", "mo-rea", "nsga2", "motpe"])
def test_reproducible_by_seed(strategy: str) -> None:
    def keys(seed: int) -> list[str]:
        return [e.arch.key() for e in search(strategy, seed, n_trials=25).evaluations]

    first = keys(1)
    assert keys(1) == first
    assert keys(2) != first


def test_initial_design_comes_first() -> None:
    result = search("random", 0, n_trials=5)
    space = DummySpace()
    assert [e.arch for e in result.evaluations[:3]] == [
        space.smallest(),
        space.largest(),
        space.middle(),
    ]


def test_maximise_is_honoured() -> None:
    objectives = [
        Objective("size", size, cheap=True, bounds=(0, 48)),
        Objective("acc", accuracy, direction="maximize", bounds=(0, 1)),
    ]
    result = search("mo-rea", 0, n_trials=40, objectives=objectives)
    front = result.pareto()
    by_size = sorted(front, key=lambda e: e.metrics["size"])
    accs = [e.metrics["acc"] for e in by_size]
    assert accs == sorted(accs)  # larger models on the front are more accurate, not less
    assert by_size[-1].arch == DummySpace().largest()  # acc = 1.0, the maximum
    assert accs[0] == pytest.approx(accuracy(DummySpace().smallest()))


def test_resume_adds_only_the_missing_trials_and_reuses_the_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter: Counter[str] = Counter()
    storage = tmp_path / "study.db"
    search("random", 0, n_trials=10, objectives=two_objectives(counter), storage=storage)
    assert sum(counter.values()) == 10
    result = search("random", 1, n_trials=15, objectives=two_objectives(counter), storage=storage)
    assert len(result.evaluations) == 15
    assert sum(counter.values()) == 15  # 5 new evaluations, none repeated
    again = search("random", 1, n_trials=15, objectives=two_objectives(counter), storage=storage)
    assert sum(counter.values()) == 15  # a finished study is not re-run
    assert [e.number for e in again.evaluations] == [e.number for e in result.evaluations]


def test_duplicate_proposals_reuse_stored_metrics() -> None:
    counter: Counter[str] = Counter()
    # a 2-position, 2-choice space has 4 members: 12 trials must repeat architectures
    result = run_search(
        DummySpace(n=2, k=2),
        [Objective("size", size, cheap=True), two_objectives(counter)[1]],
        strategy="motpe",
        n_trials=12,
        seed=0,
        progress=False,
    )
    cached = [e for e in result.evaluations if e.cached_from is not None]
    assert len(cached) == 12 - len(counter) > 0
    assert max(counter.values()) == 1
    first = {e.number: e for e in result.evaluations}
    assert all(e.metrics == first[e.cached_from].metrics for e in cached)


def test_resuming_with_other_objectives_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = tmp_path / "study.db"
    search("random", 0, n_trials=3, storage=storage)
    flipped = [Objective("size", size), Objective("error", error, direction="maximize")]
    with pytest.raises(Exception, match="directions"):
        search("random", 0, n_trials=3, storage=storage, objectives=flipped)


def test_progress_shows_best_and_hypervolume(caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Off a terminal (as here) the progress is log lines: count, rate, best values, hypervolume."""
    import logging

    monkeypatch.setenv("ELASTIC_LM_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="elastic_lm.progress")
    run_search(DummySpace(), two_objectives(), n_trials=4, seed=0, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "elastic_lm.progress"]
    assert lines[-1].startswith("search: 4/4 trials (100%)")
    assert "size=0" in lines[-1]
    assert "hv=" in lines[-1]


def test_storage_is_chosen_by_what_the_user_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna.storages import JournalStorage, RDBStorage

    from elastic_lm.search import resolve_storage

    assert resolve_storage(None) is None
    assert isinstance(resolve_storage(tmp_path / "a" / "study.db"), RDBStorage)
    assert (tmp_path / "a" / "study.db").exists()
    assert isinstance(resolve_storage(tmp_path / "study.log"), JournalStorage)
    assert isinstance(resolve_storage(f"sqlite:///{tmp_path / 'b.db'}"), RDBStorage)


def test_reclaim_all_retries_running_trials_of_other_workers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from elastic_lm.search import reclaim_stale
    from elastic_lm.search.study import RETRY_ATTR, WORKER_ATTR, create_or_load_study

    study = create_or_load_study("search", tmp_path / "s.db", ["minimize", "minimize"])
    trial = study.ask({"layer0.ffn": optuna.distributions.IntDistribution(0, 4)})
    trial.set_user_attr(WORKER_ATTR, "elsewhere:1")
    assert reclaim_stale(study, "dead") == []  # another host: cannot tell it is dead
    assert reclaim_stale(study, "all") == [trial.number]
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert study.get_trials()[1].user_attrs[RETRY_ATTR] == trial.number


def test_heartbeat_marks_live_trials_and_silence_marks_dead_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from elastic_lm.search import reclaim_stale
    from elastic_lm.search.study import WORKER_ATTR, create_or_load_study
    from elastic_lm.search.workers import HEARTBEAT_ATTR, _Heartbeat

    study = create_or_load_study("search", tmp_path / "s.db", ["minimize", "minimize"])
    dist = {"layer0.ffn": optuna.distributions.IntDistribution(0, 4)}
    alive, silent = study.ask(dist), study.ask(dist)
    for t in (alive, silent):
        t.set_user_attr(WORKER_ATTR, "other-host:1")
    silent.set_user_attr(HEARTBEAT_ATTR, time.time() - 1000)
    with _Heartbeat(alive, 0.01) as beat:
        deadline = time.monotonic() + 120  # a hang guard, far beyond any loaded machine
        while HEARTBEAT_ATTR not in study.get_trials()[0].user_attrs:
            assert time.monotonic() < deadline, "no heartbeat written"
            time.sleep(0.01)
    assert beat._thread is not None
    assert not beat._thread.is_alive()
    assert reclaim_stale(study, "dead", stale_after_s=60) == [silent.number]


def test_interrupted_evaluation_is_retried_on_resume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter: Counter[str] = Counter()
    objectives = two_objectives(counter)

    stopped: list[str] = []

    def interrupted(arch: Architecture) -> float:
        if sum(counter.values()) == 4:
            stopped.append(arch.key())
            raise KeyboardInterrupt
        return objectives[1].fn(arch)

    storage = tmp_path / "study.db"
    with pytest.raises(KeyboardInterrupt):
        search(
            "random",
            0,
            n_trials=8,
            storage=storage,
            objectives=[objectives[0], Objective("error", interrupted)],
        )
    result = search("random", 0, n_trials=8, storage=storage, objectives=objectives)
    assert len(result.evaluations) == 8
    assert sum(counter.values()) == 8  # 4 before, the interrupted one and 3 more
    assert max(counter.values()) == 1
    assert counter[stopped[0]] == 1  # the interrupted architecture was evaluated on resume


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres"])
def test_trial_asked_but_never_claimed_is_reclaimed_not_waited_on(request, tmp_path, kind) -> None:  # type: ignore[no-untyped-def]
    """A worker killed between ``ask`` and its claim leaves an ownerless RUNNING trial."""
    import threading

    from elastic_lm.search import reclaim_stale
    from elastic_lm.search.study import RETRY_ATTR, create_or_load_study

    storage = {"sqlite": tmp_path / "s.db", "journal": tmp_path / "s.log"}.get(kind)
    storage = storage or request.getfixturevalue("postgres_url")
    study = create_or_load_study("search", storage, ["minimize", "minimize"])
    orphan = study.ask(param_distributions(DummySpace()))  # then the worker died
    assert reclaim_stale(study, "dead", stale_after_s=3600) == []  # too recent to tell
    assert reclaim_stale(study, "dead", stale_after_s=0.0) == [orphan.number]
    retry = study.get_trials()[-1]
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.user_attrs[RETRY_ATTR] == orphan.number

    study.ask(param_distributions(DummySpace()))  # a second orphan, found by the loop itself
    out: list[SearchResult] = []
    objectives = [Objective("size", size, cheap=True), Objective("error", error)]
    worker = threading.Thread(
        target=lambda: out.append(
            run_search(
                DummySpace(), objectives, n_trials=4, storage=storage, heartbeat_s=0.05, progress=False
            )
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=300)  # a hang guard, not a speed check
    assert not worker.is_alive(), "the search waited on an orphaned trial"
    assert len(out[0].evaluations) == 4


def test_workers_with_one_seed_get_different_seeds_from_their_first_trial(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from elastic_lm.search.study import create_or_load_study
    from elastic_lm.search.workers import WorkerSeededSampler, trial_seed

    assert trial_seed(5, 0) == 5  # one worker on a new study: the config's seed itself
    assert trial_seed(5, 3) == trial_seed(5, 3) != trial_seed(5, 4)
    assert trial_seed(None, 3) is None
    space = DummySpace()
    seeds: list[int | None] = []

    def make(seed: int | None) -> optuna.samplers.BaseSampler:
        seeds.append(seed)
        return optuna.samplers.RandomSampler(seed=seed)

    study = create_or_load_study("search", tmp_path / "s.db", ["minimize", "minimize"])
    a, b = WorkerSeededSampler(make, 5), WorkerSeededSampler(make, 5)
    drawn = []
    for sampler in (a, b):
        study.sampler = sampler
        drawn.append(study.ask(param_distributions(space)).params)
    assert seeds == [5, trial_seed(5, 1)]
    assert drawn[0] != drawn[1]
    b.forget(1)  # lost the claim on trial 1: the next trial picks the seed
    study.sampler = b
    study.ask(param_distributions(space))
    assert seeds[-1] == trial_seed(5, 2)


@pytest.mark.parametrize("strategy", ["random", "nsga2", "motpe"])
def test_constraints_reach_optuna_as_trial_constraints(strategy: str, tmp_path: Any) -> None:
    """Every trial carries each constraint's violation (Trial.set_constraint); Optuna's own
    best_trials then agrees with our Pareto set of feasible trials."""
    limit = Constraint("budget", size, max=20)
    storage = tmp_path / "s.db"
    result = search(strategy, 0, n_trials=25, constraints=[limit], size_fn=size, storage=storage)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{storage}")
    for trial in study.trials:
        assert set(trial.constraints) == {"budget"}
        assert trial.constraints["budget"] == pytest.approx(max(size(result_arch(trial)) - 20, 0.0))
        assert (trial.constraints["budget"] <= 0) == trial.user_attrs["feasible"]
    assert {t.user_attrs["arch_key"] for t in study.best_trials} == {e.arch.key() for e in result.pareto()}


def result_arch(trial: optuna.trial.FrozenTrial) -> Architecture:
    return Architecture.from_json(trial.user_attrs["arch"])


def test_an_old_study_of_choice_indices_resumes_with_indices(tmp_path: Any) -> None:
    """A study created before parameters held real values keeps its index encoding on resume."""
    from optuna.distributions import IntDistribution

    space = DummySpace()
    storage = tmp_path / "old.db"
    old = optuna.create_study(
        study_name="search", storage=f"sqlite:///{storage}", directions=["minimize"] * 2
    )
    arch = space.decode([0, 1, 2, 3, 4, 0])
    dists = {d.name: IntDistribution(0, len(d.choices) - 1) for d in space.dimensions()}
    old.add_trial(
        optuna.trial.create_trial(
            params=dict(zip(dists, space.encode(arch), strict=True)),
            distributions=dists,
            values=[size(arch), error(arch)],
            user_attrs={"arch": arch.to_json(), "arch_key": arch.key(), "feasible": True},
        )
    )
    run_search(
        space, two_objectives(), strategy="random", n_trials=6, storage=storage, seed=0, progress=False
    )
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{storage}")
    assert "params" not in study.user_attrs
    assert len(study.trials) == 6
    for trial in study.trials:
        assert trial.distributions == dists  # still indices 0..4
        assert space.decode([trial.params[d] for d in dists]) == result_arch(trial)

    new = tmp_path / "new.db"
    run_search(space, two_objectives(), strategy="random", n_trials=3, storage=new, seed=0, progress=False)
    fresh = optuna.load_study(study_name="search", storage=f"sqlite:///{new}")
    assert fresh.user_attrs["params"] == "values"
    assert {v for t in fresh.trials for v in t.params.values()} <= set(space.widths)
    assert any(v > 4 for t in fresh.trials for v in t.params.values())  # 16..80, not indices


def test_a_postgresql_schema_race_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers creating the schema at once: PostgreSQL says DuplicateTable (a ProgrammingError)."""
    import sqlalchemy

    from elastic_lm.search import study as study_module

    calls: list[str] = []

    def flaky(url: str, engine_kwargs: dict[str, object]) -> str:
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.ProgrammingError(
                "CREATE TABLE alembic_version", {}, Exception('relation "alembic_version" already exists')
            )
        return "storage"

    monkeypatch.setattr(study_module, "RDBStorage", flaky)
    assert study_module._rdb("postgresql://u@h/db") == "storage"
    assert calls == ["postgresql://u@h/db", "postgresql://u@h/db"]


def test_a_trial_still_being_asked_is_waited_on_not_evaluated_twice() -> None:
    """Another worker's lower trial with only some parameters written may hold the same member:
    its key is unknown for a moment, and evaluating at once evaluated that member twice (seen
    once in a loaded CI run of four workers)."""
    from elastic_lm.search.loop import _Evaluator
    from elastic_lm.search.study import KEY_ATTR, params_of

    space = DummySpace(n=3, k=2)
    dims = param_distributions(space)
    names = list(dims)
    arch = space.largest()
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.enqueue_trial(params_of(space, arch))
    other = study.ask({names[0]: dims[names[0]]})  # its worker is between two parameters
    study.enqueue_trial(params_of(space, arch))
    mine = study.ask(dims)
    assert other.number < mine.number
    assert len(other.params) == 1
    evaluator = _Evaluator(space, two_objectives(), [], poll_s=0.0)
    waits: list[int] = []

    def the_other_worker_goes_on() -> None:
        waits.append(1)
        if len(waits) == 1:  # it writes the rest (the same member) and evaluates it
            for n in names[1:]:
                other._suggest(n, dims[n])
            other.set_user_attr(KEY_ATTR, arch.key())
        elif len(waits) == 2:
            study.tell(other, [1.0, 2.0])

    evaluator.on_wait = the_other_worker_goes_on
    previous = evaluator._previous(study, mine.number, arch.key())
    assert previous is not None
    assert previous.number == other.number
    assert len(waits) == 2
