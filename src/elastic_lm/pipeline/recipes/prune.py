"""Pruning a fine-tuned encoder by NAS (Klein et al., TMLR 2024): a recipe of the one engine.

finetune (and reorder by importance) -> train the super-network -> search on validation -> evaluate
the Pareto members on test -> export them -> baselines (when asked) -> report (under ``elastic-lm
run``). Only ``evaluate`` and the baselines' final scoring read the test split, through
:mod:`elastic_lm.prune.final`. ``elastic-lm prune`` is this recipe without the report.

Each stage's inputs are the config sections (and ``prune`` keys) it reads, minus keys it provably
ignores: tuning the super-network or the search never redoes half an hour of baselines. The report's
inputs are the records of the stages it shows, so it is rewritten after any of them was redone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_lm.config import Config
from elastic_lm.pipeline.engine import Recipe, Stage, StageOutcome, run_recipe
from elastic_lm.pipeline.recipes.nas import CONTINUABLE_TRAIN
from elastic_lm.pipeline.rundir import RunDirectory

STAGES: tuple[str, ...] = ("finetune", "train", "search", "evaluate", "export", "baselines", "report")
REPORT_READS: tuple[str, ...] = ("train", "search", "export", "baselines")  # train: the loss curve

_FINETUNE = ("finetune_steps", "finetune_learning_rate", "importance", "importance_batches")
_SEARCH = ("size_objective", "quality_objective", "front_bins", "front_max_gap")
_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "finetune": (("seed", "model", "data"), _FINETUNE),
    "train": (("seed", "model", "data", "space", "train"), _FINETUNE),
    "search": (("seed", "model", "data", "space", "train", "search"), _FINETUNE + _SEARCH),
    "evaluate": (("seed", "model", "data", "space", "train", "search", "export"), _FINETUNE + _SEARCH),
    "export": (
        ("seed", "model", "data", "space", "train", "search", "export"),
        (*_FINETUNE, *_SEARCH, "vocabulary"),
    ),
    "baselines": (
        ("seed", "model", "data", "train", "search"),
        (*_FINETUNE, *_SEARCH[:2], "baseline_fractions", "baseline_steps", "baselines"),
    ),
}
# Keys of those sections that a stage provably does not read. The baselines train fixed models with
# their own strategy, losses, learning rate (prune.finetune_learning_rate) and checkpoint cadence, and
# never search.
_UNREAD: dict[str, dict[str, tuple[str, ...]]] = {
    "baselines": {
        "train": ("learning_rate", "strategy", "strategy_options", "losses", "eval_every",
                  "checkpoint_every", "keep_checkpoints"),
        "search": ("strategy", "trials", "strategy_options", "objectives", "constraints", "storage"),
    },
}  # fmt: skip


# Settings of the NAS recipe that no pruning stage reads (its design is ``prune.front_bins``; the NAS
# export's ``distil_steps`` tunes nothing here): kept out of every hash, so that a new NAS setting does
# not make finished pruning runs redo their search and baselines.
_NAS_ONLY: dict[str, tuple[str, ...]] = {"search": ("front_bins",), "export": ("distil_steps",)}


def stage_inputs(stage: str, config: Config, run_dir: RunDirectory | None = None) -> dict[str, Any]:
    """What ``stage``'s output depends on: config values, or (report) the records it shows."""
    if stage == "report":
        run_dir = run_dir or RunDirectory(config.run_dir)
        return {s: rec.finished_at for s in REPORT_READS if (rec := run_dir.record(s)) is not None}
    data = config.model_dump(mode="json")
    sections, prune_keys = _INPUTS[stage]
    unread = {name: (*_UNREAD.get(stage, {}).get(name, ()), *_NAS_ONLY.get(name, ())) for name in sections}
    relevant = {
        name: {k: v for k, v in data[name].items() if k not in unread[name]}
        if isinstance(data[name], dict)
        else data[name]
        for name in sections
    }
    relevant["prune"] = {k: data["prune"][k] for k in prune_keys}
    if not config.prune.adapt_small_data:  # only when turned off, so existing runs keep their hashes
        relevant["prune"]["adapt_small_data"] = False
    if config.prune.refine_steps and stage in ("evaluate", "export"):  # likewise: only when turned on
        relevant["prune"]["refine_steps"] = config.prune.refine_steps
        if config.prune.refine_max_epochs is not None:
            relevant["prune"]["refine_max_epochs"] = config.prune.refine_max_epochs
        if config.prune.refine_max_share < 1.0:
            relevant["prune"]["refine_max_share"] = config.prune.refine_max_share
    if stage == "export" and config.prune.mode == "post-training":
        # NAS-mode hashes stay as they were; this mode's export is the pruning itself
        relevant["prune"].update(mode=data["prune"]["mode"], post_training=data["prune"]["post_training"])
    return relevant


def stage_hash(stage: str, config: Config) -> str:
    """A stable hash of :func:`stage_inputs` (what ``stage.json`` records)."""
    from elastic_lm.pipeline.rundir import hash_inputs

    return hash_inputs(stage_inputs(stage, config))


def recipe(
    config: Config,
    *,
    baselines: bool | None = None,
    report: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Recipe:
    """The pruning recipe for ``config``; checks the config and resolves the source model first."""
    from elastic_lm.pipeline.recipes import prune_stages as impl
    from elastic_lm.prune.parts import PruneParts

    parts = PruneParts(config, progress=progress, log=log)
    with_baselines = baselines if baselines is not None else config.prune.baselines

    def bound(function: Callable[[Any], dict[str, Any]]) -> Callable[[Config, RunDirectory], Any]:
        return lambda _config, _run_dir: function(parts)

    if config.prune.mode == "post-training":
        return _post_training_recipe(parts, bound, with_baselines, report)
    stages = [
        _finetune_stage(parts, bound),
        Stage("train", bound(impl.train), after=("finetune",), reads=("finetune/model/",),
              writes=("train/supernet/", "train/train/metrics.csv"),
              checkpoints=("train/checkpoints",), continuable=CONTINUABLE_TRAIN, clean=True),
        Stage("search", bound(impl.search), after=("train",), reads=("train/supernet/",),
              writes=("search/study.db", "search/trials.json", "search/summary.json"),
              clean=True, keep=("baselines.json",)),
        Stage("evaluate", bound(impl.evaluate), after=("search",),
              reads=("search/trials.json", "train/supernet/", "finetune/model/"),
              writes=("evaluate/test_metrics.json", "evaluate/refined/trial-N/"),
              checkpoints=("refine/*/train/checkpoints",), clean=True),
        Stage("export", bound(impl.export), after=("evaluate",),
              reads=("search/trials.json", "evaluate/test_metrics.json", "evaluate/refined/",
                     "train/supernet/"),
              writes=("export/index.json", "export/trial-N/"), required=("export/index.json",), clean=True),
    ]  # fmt: skip
    return Recipe("prune", tuple(_tail(stages, bound, with_baselines, report)), stage_inputs)


def _finetune_stage(parts: Any, bound: Callable[..., Any]) -> Stage:
    from elastic_lm.pipeline.recipes import prune_stages as impl

    return Stage("finetune", bound(impl.finetune), check=lambda _c, _r: parts.data,
                 writes=("finetune/model/", "finetune/model-original/"),
                 checkpoints=("train/checkpoints",), continuable=("prune.finetune_learning_rate",),
                 clean=True)  # fmt: skip


def _tail(stages: list[Stage], bound: Callable[..., Any], with_baselines: bool, report: bool) -> list[Stage]:
    """The baselines (when asked) and the report (shows the stages it reads) after ``stages``."""
    from elastic_lm.pipeline.recipes import prune_stages as impl

    if with_baselines:
        stages.append(
            Stage("baselines", bound(impl.baselines), after=("finetune",),
                  reads=("finetune/model/", "finetune/model-original/"),
                  writes=("search/baselines.json", "baselines/<name>/"), required=("search/baselines.json",),
                  checkpoints=("runs/*/train/checkpoints",), clean=True)
        )  # fmt: skip
    if report:
        shown = tuple(s.name for s in stages if s.name in REPORT_READS)
        stages.append(
            Stage("report", bound(impl.report), after=shown, reads=tuple(f"{s}/" for s in shown),
                  writes=("report/index.html", "report/pareto.csv"), required=("report/index.html",),
                  clean=True)
        )  # fmt: skip
    return stages


def _post_training_recipe(
    parts: Any, bound: Callable[..., Any], with_baselines: bool, report: bool
) -> Recipe:
    """finetune -> export (Fisher masks, tuning, export: :mod:`.prune_post`) [-> baselines] [-> report]."""
    from elastic_lm.pipeline.recipes import prune_post

    stages = [
        _finetune_stage(parts, bound),
        Stage("export", bound(prune_post.post_training), after=("finetune",),
              reads=("finetune/model-original/",),
              writes=("export/index.json", "export/trial-N/", "search/trials.json", "search/summary.json",
                      "evaluate/test_metrics.json"),
              required=("export/index.json",), clean=True),
    ]  # fmt: skip
    return Recipe("prune", tuple(_tail(stages, bound, with_baselines, report)), stage_inputs)


@dataclass
class PruneResult:
    """Where everything went, and the headline numbers."""

    run_dir: Path
    pareto: list[dict[str, Any]] = field(default_factory=list)
    exported: list[dict[str, Any]] = field(default_factory=list)
    unpruned: dict[str, float] = field(default_factory=dict)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageOutcome] = field(default_factory=list)  # what this call ran or found done
    report: Path | None = None  # report/index.html when written


def prune_result(config: Config, outcomes: list[StageOutcome]) -> PruneResult:
    """The headline numbers of a prune run directory (what exists of them after ``outcomes``)."""
    from elastic_lm.prune.parts import pareto_members

    root = Path(config.run_dir)
    ran = {o.stage for o in outcomes}

    def read(path: str) -> Any:
        file = root / path
        return json.loads(file.read_text()) if file.is_file() else None

    out = PruneResult(root, stages=outcomes)
    if (root / "search" / "summary.json").is_file():
        out.pareto = pareto_members(root, config.export.max_models)
    out.exported = read("export/index.json") or []
    out.unpruned = (read("evaluate/test_metrics.json") or {}).get("unpruned", {})
    if "baselines" in ran:  # each folder is baselines/<name>; older runs recorded it with the run's old path
        points = read("search/baselines.json") or []
        out.baselines = [{**p, "path": str(root / "baselines" / Path(p["path"]).name)} for p in points]
    if "report" in ran:
        out.report = root / "report" / "index.html"
    return out


def run_prune(
    config: Config,
    *,
    baselines: bool | None = None,
    progress: bool = False,
    report: bool = False,
    log: Callable[[str], None] | None = None,
    start: str | None = None,
    until: str | None = None,
) -> PruneResult:
    """``elastic-lm prune CONFIG`` from Python: every stage, resumable, in ``config.run_dir``.

    ``report`` also writes ``report/index.html`` (as ``elastic-lm run`` does); ``log`` (e.g. ``print``)
    is told which stages run and which are skipped; ``start`` / ``until`` as ``--from`` / ``--until``.
    """
    chosen = recipe(config, baselines=baselines, report=report, progress=progress, log=log)
    outcomes = run_recipe(chosen, config, start=start, until=until, log=log)
    return prune_result(config, outcomes)


__all__ = [
    "REPORT_READS",
    "STAGES",
    "PruneResult",
    "prune_result",
    "recipe",
    "run_prune",
    "stage_hash",
    "stage_inputs",
]
