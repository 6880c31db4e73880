"""The search stage: trained super-network -> persistent multi-objective search -> report files.

``run_search_stage(config)`` is what ``elastic-lm search CONFIG`` and ``elastic-lm run`` call. It
reads ``RUN_DIR/train/supernet/`` and writes ``RUN_DIR/search/``: ``study.db`` (the Optuna study;
re-running continues it, several workers may share it), ``trials.json``, ``trials.csv`` and
``summary.json`` in the format ``docs/report.md`` documents, then marks the stage done.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.export.supernet import load_supernet, supernet_folder
from elastic_lm.io import atomic_write_json, atomic_write_text
from elastic_lm.pipeline.objectives import (
    METRICS,
    MetricContext,
    build_constraints,
    build_objectives,
    check_metric_names,
    needs_evaluation,
    units,
)
from elastic_lm.pipeline.recipes.nas import inputs_hash
from elastic_lm.pipeline.rundir import RunDirectory

STUDY_NAME = "search"  # the name of every study before names described the run; still resumed
KEY_ATTR = "study_key"  # the study's user attribute holding :func:`study_key`
# Search settings that do not change what a trial measured: under new values a study continues.
_CONTINUES = ("trials", "strategy", "strategy_options", "storage")


@dataclass(frozen=True)
class SearchStageResult:
    """Where the outputs went and the headline numbers."""

    search_dir: Path
    n_trials: int
    pareto: list[int]
    hypervolume: float
    latency_check: Path | None = None


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when there is one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def eval_batches_from_config(config: Config, tokenizer: Any) -> list[dict[str, Any]]:
    """The fixed evaluation batches every architecture is ranked on (validation split, seeded)."""
    from elastic_lm.data import prepare_data
    from elastic_lm.evaluate import fixed_eval_batches

    if tokenizer is None:
        raise ConfigError(
            "the saved super-network has no tokenizer files, so eval batches cannot be built; "
            "save it with save_supernet(model, tokenizer, space, folder)"
        )
    prepared = prepare_data(config.data, tokenizer)
    return fixed_eval_batches(
        prepared.splits["validation"],
        prepared.collator,
        config.search.eval_batches,
        config.search.eval_batch_size,
        seed=config.seed,
    )


def worker_seed(seed: int, n_existing: int) -> int:
    """A fresh seed when joining or resuming a study, so proposals are not replayed as duplicates.

    A new study with one worker uses ``seed`` itself (reproducible); others mix in the study size
    and this process (several workers started at once must not propose the same members).
    """
    if n_existing == 0:
        return seed
    from elastic_lm.search.loop import worker_id

    return zlib.crc32(f"{seed}:{n_existing}:{worker_id()}".encode())


def run_search_stage(
    config: Config,
    *,
    trials: int | None = None,
    strategy: str | None = None,
    storage: str | None = None,
    progress: bool = True,
    model: Any = None,
    space: Any = None,
    batches: list[dict[str, Any]] | None = None,
    eval_cache: dict[str, dict[str, float]] | None = None,
) -> SearchStageResult:
    """Search the trained super-network of ``config.run_dir``; write the report's input files.

    ``model``/``space``/``batches`` may be passed ready-made (notebooks, benchmarks); otherwise
    they come from ``RUN_DIR/train/supernet`` and ``config.data``.
    """
    import optuna

    from elastic_lm.progress import quiet_optuna
    from elastic_lm.search import run_search

    quiet_optuna()
    started = time.time()
    section = config.search
    check_metric_names(section.objectives, section.constraints)  # before anything slow
    n_trials = trials or section.trials
    strategy_name = strategy or section.strategy
    run_dir = RunDirectory(config.run_dir)
    search_dir = run_dir.stage_dir("search")
    search_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = None
    if model is None or space is None:
        saved = load_supernet(supernet_folder(config.run_dir))
        tokenizer = saved.tokenizer()
        model = model if model is not None else saved.model
        space = space if space is not None else saved.space
    device = resolve_device(config.device)
    model = model.to(device).eval()
    names = [o.name for o in section.objectives] + [c.name for c in section.constraints]
    if batches is None and needs_evaluation(names):
        batches = eval_batches_from_config(config, tokenizer)
    teacher = None
    if "teacher_cosine" in names:
        from elastic_lm.teacher import load_teacher, teacher_folder

        folder = teacher_folder(config, progress=progress)
        teacher = load_teacher(folder, config.model.task) if folder is not None else None
    ctx = MetricContext(
        model,
        batches,
        run_dir=Path(config.run_dir),
        latency_batch_size=section.latency_batch_size,
        latency_seq_len=section.latency_seq_len,
        latency_threads=section.latency_threads,
        latency_repeats=section.latency_repeats,
        decode_prompt_len=section.decode_prompt_len,
        decode_new_tokens=section.decode_new_tokens,
        device=device,
        eval_cache=eval_cache if eval_cache is not None else {},
        teacher=teacher,
    )
    objectives = build_objectives(section.objectives, ctx, space)
    constraints = build_constraints(section.constraints, ctx)
    store = storage or section.storage or str(search_dir / "study.db")
    name = study_name(config, store, shared=store != str(search_dir / "study.db"))
    existing = _existing_trials(store, name)
    from elastic_lm.prune.coverage import size_design, uniform_design

    size = METRICS["params_nonembedding"].make(ctx)
    design = uniform_design(space, size, section.uniform_shares)
    design += size_design(space, size, section.front_bins, n_trials, config.seed)
    result = run_search(
        space,
        objectives,
        constraints,
        strategy=strategy_name,
        n_trials=n_trials,
        storage=store,
        seed=worker_seed(config.seed, existing),
        study_name=name,
        progress=progress,
        strategy_options=section.strategy_options,
        initial_archs=design,
        study_attrs={
            "run_dir": str(config.run_dir),
            "space_preset": config.space.preset,
            "space_options": dict(config.space.options),
            "config_hash": inputs_hash("search", config),
            KEY_ATTR: study_key(config),
            "elastic_lm_version": _version(),
        },
    )
    study = optuna.load_study(study_name=name, storage=_storage(store))
    unit = units([o.name for o in objectives], ctx)
    files = write_search_files(search_dir, study, result, strategy_name, unit)
    check = None
    if any(o.name == "latency_pred_ms" for o in objectives) and result.pareto():
        check = recheck_pareto(ctx, result)
    outputs = {
        "trials": files["n_trials"],
        "pareto": files["pareto"],
        "hypervolume": result.hypervolume(),
        "storage": store,
    }
    run_dir.mark_done("search", inputs_hash("search", config), started, outputs)
    return SearchStageResult(search_dir, files["n_trials"], files["pareto"], result.hypervolume(), check)


def _storage(store: str) -> Any:
    from elastic_lm.search import resolve_storage

    return resolve_storage(store)


def study_key(config: Config) -> str:
    """What a trial's numbers depend on: the super-network and everything before the search, the
    data, and the search's measuring and design settings; not how many trials there are or how
    they are proposed (``_CONTINUES``), so a longer search, or another strategy, continues a study."""
    from elastic_lm.pipeline.recipes.nas import stage_inputs
    from elastic_lm.pipeline.rundir import hash_inputs

    inputs = stage_inputs("search", config)
    inputs["search"] = {k: v for k, v in inputs["search"].items() if k not in _CONTINUES}
    return hash_inputs(inputs)[:12]


def study_name(config: Config, store: str, shared: bool = False) -> str:
    """A name that says what the study is (run, space, objectives), e.g. ``elm-mlm-quick elm: val_loss
    vs params``; a storage that holds one study of another name (``search``, from before names
    described the run, or a run directory that was renamed) keeps using it, so a search resumes.

    When that study measured something else (its :func:`study_key` differs: the super-network was
    retrained, the evaluation data, latency settings or initial design changed), a new study named
    ``NAME [KEY]`` starts beside it, so no stale trial is reused; the old one stays in the storage.
    A study from before keys were recorded is continued as before.

    In a ``shared`` storage (``--workers-storage``, ``search.storage``) workers run from run
    directories of their own, so the name leaves the folder out and carries the key instead:
    workers of one run meet in one study, other runs never join it.
    """
    import optuna

    objectives = " vs ".join(o.name for o in config.search.objectives)
    key = study_key(config)
    if shared:
        return f"{config.space.preset}: {objectives} [{key}]"
    name = f"{Path(config.run_dir).name} {config.space.preset}: {objectives}"
    existing = optuna.get_all_study_names(_storage(store))
    if name not in existing and len(existing) == 1:
        name = existing[0]
    if name in existing and _stored_key(store, name) not in (None, key):
        return f"{name} [{key}]"
    return name


def _stored_key(store: str, name: str) -> str | None:
    import optuna

    return optuna.load_study(study_name=name, storage=_storage(store)).user_attrs.get(KEY_ATTR)


def _version() -> str:
    from elastic_lm import __version__

    return __version__


def _existing_trials(store: str, name: str) -> int:
    """How many trials the study has started (0 for a new one, or one holding only enqueued seeds).

    Enqueued trials do not count: the decoder recipe enqueues its seeds before searching, and
    counting them mixed the process id into the seed of every such run, so one config gave a
    different search each time.
    """
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=_storage(store))
    except KeyError:
        return 0
    waiting = optuna.trial.TrialState.WAITING
    return sum(t.state != waiting for t in study.get_trials(deepcopy=False))


def trial_records(study: Any) -> list[dict[str, Any]]:
    """Every trial that proposed an architecture, in the report's ``trials.json`` format."""
    from elastic_lm.search.study import CACHED_ATTR, FEASIBLE_ATTR, SURPLUS_ATTR, metrics_of, stored_arch

    records = []
    for t in study.get_trials(deepcopy=False):
        arch = stored_arch(t)
        if arch is None or t.user_attrs.get(SURPLUS_ATTR):
            continue  # asked but never evaluated (another worker took the last slot)
        record: dict[str, Any] = {
            "number": t.number,
            "architecture": arch.to_dict(),
            "metrics": metrics_of(t),
            "feasible": bool(t.user_attrs.get(FEASIBLE_ATTR, t.state.name == "COMPLETE")),
            "state": t.state.name,
        }
        if t.user_attrs.get(CACHED_ATTR) is not None:
            record["cached_from"] = t.user_attrs[CACHED_ATTR]
        records.append(record)
    return records


def reference_point(result: Any) -> dict[str, float]:
    """The raw objective values that normalise to (1, ..., 1): the worst end of each bound."""
    return {
        o.name: (high if o.direction == "minimize" else low)
        for o, (low, high) in zip(result.objectives, result.bounds(), strict=True)
    }


def write_search_files(
    search_dir: Path, study: Any, result: Any, strategy: str, unit: dict[str, str]
) -> dict[str, Any]:
    """``trials.json``, ``trials.csv`` and ``summary.json`` (see docs/report.md), written atomically.

    The Pareto list names every complete, feasible trial of a Pareto architecture (a cached repeat
    of the same architecture too), which is what the report recomputes from the trials.
    """
    records = trial_records(study)
    front_keys = {e.arch.key() for e in result.pareto()}
    from elastic_lm.architecture import Architecture

    pareto = [
        r["number"]
        for r in records
        if r["state"] == "COMPLETE"
        and r["feasible"]
        and Architecture.from_dict(r["architecture"]).key() in front_keys
    ]
    history = result.hypervolume_history()
    summary = {
        "objectives": [
            {"name": o.name, "direction": o.direction, "unit": unit.get(o.name, "")}
            for o in result.objectives
        ],
        "strategy": strategy,
        "pareto": pareto,
        "hypervolume": [[i + 1, hv] for i, hv in enumerate(history)],
        "reference_point": reference_point(result),
        "bounds": {o.name: list(b) for o, b in zip(result.objectives, result.bounds(), strict=True)},
        "n_trials": len(records),
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    atomic_write_json(search_dir / "trials.json", records)
    atomic_write_text(search_dir / "trials.csv", trials_csv(records))
    atomic_write_json(search_dir / "summary.json", summary)
    return {"n_trials": len(records), "pareto": pareto}


def trials_csv(records: list[dict[str, Any]]) -> str:
    """The CSV form the report also reads: number, state, feasible, architecture, one column per metric."""
    names = sorted({k for r in records for k in r["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", "feasible", "architecture", *names])
    for r in records:
        arch = json.dumps(r["architecture"], sort_keys=True)
        writer.writerow(
            [r["number"], r["state"], r["feasible"], arch, *(r["metrics"].get(n, "") for n in names)]
        )
    return out.getvalue()


def recheck_pareto(ctx: MetricContext, result: Any) -> Path:
    """Re-measure the Pareto set on the extracted models -> ``RUN_DIR/profile/latency_check.json``."""
    from elastic_lm.profile import recheck

    front = result.pareto()
    path = Path(ctx.run_dir or ".") / "profile" / "latency_check.json"
    recheck(
        ctx.predictor(),
        ctx.model,
        [e.arch for e in front],
        ctx.predictor_settings(),
        labels=[f"trial {e.number}" for e in front],
        path=path,
    )
    return path
