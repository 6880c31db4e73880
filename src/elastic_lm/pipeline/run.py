"""``elastic-lm run``: every stage of a job in order, each skipped when its saved output is still valid.

A stage is a function ``(config, run_dir) -> outputs`` registered in :data:`STAGE_FUNCTIONS`; what it
returns is kept in its ``stage.json`` record. A stage re-runs when its inputs changed (the config
sections it depends on, see :mod:`elastic_lm.pipeline.rundir`), when the user asks with ``--from``,
or when a stage before it re-ran. A crash midway leaves finished stages recorded, so running the
same command again resumes at the stage that did not finish.

A pruning recipe (``pipeline: prune`` in the config, see :mod:`elastic_lm.prune`) runs its own stages
instead (finetune, train, search, evaluate, export, baselines when asked for, then report), resumable
the same way; ``--from`` / ``--until`` name stages of the NAS pipeline and are refused for it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.pipeline.rundir import STAGES, RunDirectory, stages_between

if TYPE_CHECKING:
    from elastic_lm.prune import PruneResult

StageFunction = Callable[[Config, RunDirectory], dict[str, Any]]

# Where each stage's implementation lives ("module:function"), imported only when the stage runs.
STAGE_FUNCTIONS: dict[str, str] = {
    "teacher": "elastic_lm.pipeline.stages:teacher_stage",
    "train": "elastic_lm.pipeline.stages:train_stage",
    "profile": "elastic_lm.pipeline.stages:profile_stage",
    "search": "elastic_lm.pipeline.stages:search_stage",
    "export": "elastic_lm.pipeline.stages:export_stage",
    "evaluate": "elastic_lm.pipeline.stages:evaluate_stage",
    "report": "elastic_lm.pipeline.stages:report_stage",
}


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped"
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def resolve_stage(stage: str) -> StageFunction:
    module_name, function_name = STAGE_FUNCTIONS[stage].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_pipeline(
    config: Config,
    *,
    start: str | None = None,
    until: str | None = None,
    stages: dict[str, StageFunction] | None = None,
    log: Callable[[str], None] = print,
) -> list[StageOutcome]:
    """Run the job's stages from ``start`` to ``until``; returns what each stage did.

    ``stages`` replaces stage implementations (tests, custom pipelines); the rest come from
    :data:`STAGE_FUNCTIONS`. A pruning recipe (``config.pipeline == "prune"``) runs
    :func:`run_prune_pipeline` instead.
    """
    if config.pipeline == "prune":
        if stages:
            raise ValueError("stages= replaces stages of the NAS pipeline; this config is a pruning recipe")
        return run_prune_pipeline(config, start=start, until=until, log=log).stages
    run_dir = RunDirectory(config.run_dir)
    run_dir.save_config(config)
    selected = stages_between(start, until)
    forced = set(_from_on(start)) if start else set()
    outcomes: list[StageOutcome] = []
    upstream_ran = False
    for stage in selected:
        if stage not in forced and not upstream_ran and run_dir.is_done(stage, config):
            record = run_dir.record(stage)
            log(f"[{stage}] done earlier ({record.seconds:.0f} s); skipping")
            outcomes.append(StageOutcome(stage, "skipped", 0.0, record.outputs))
            continue
        log(f"[{stage}] running")
        started = time.time()
        function = (stages or {}).get(stage) or resolve_stage(stage)
        run_dir.invalidate(stage)
        outputs = function(config, run_dir) or {}
        record = run_dir.mark_done(stage, config, started, outputs)
        log(f"[{stage}] finished in {record.seconds:.1f} s")
        outcomes.append(StageOutcome(stage, "ran", record.seconds, outputs))
        upstream_ran = True
    return outcomes


def run_prune_pipeline(
    config: Config,
    *,
    start: str | None = None,
    until: str | None = None,
    log: Callable[[str], None] | None = print,
    progress: bool = True,
) -> PruneResult:
    """``elastic-lm run`` on a pruning recipe: every stage of ``elastic-lm prune`` (finished ones
    skipped), then ``report/index.html``. ``start`` / ``until`` must be None (see :func:`refuse_stage_range`).
    """
    refuse_stage_range(start, until)
    from elastic_lm.prune import run_prune  # torch & co. only when pruning

    RunDirectory(config.run_dir).save_config(config)
    return run_prune(config, progress=progress, report=True, log=log)


def refuse_stage_range(start: str | None, until: str | None) -> None:
    """A one-line error for ``--from`` / ``--until`` on a pruning recipe (their stages are NAS ones)."""
    given = " ".join(f"--{flag} {stage}" for flag, stage in (("from", start), ("until", until)) if stage)
    if given:
        raise ConfigError(
            f"{given}: this config is a pruning recipe (pipeline: prune), whose stages always run in order "
            "and skip finished ones, and --from/--until name stages of the NAS pipeline; drop the option "
            "(changing a setting redoes the stages that depend on it)"
        )


def _from_on(stage: str) -> Iterable[str]:
    return STAGES[STAGES.index(stage) :]
