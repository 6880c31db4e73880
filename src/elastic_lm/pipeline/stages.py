"""The stage implementations behind ``elastic-lm run``: thin calls into the subsystems.

Each takes the validated config and the run directory and returns a small dict of headline outputs
that is stored in the stage's record.
"""

from __future__ import annotations

from typing import Any

from elastic_lm.config import Config
from elastic_lm.errors import UserError
from elastic_lm.pipeline.rundir import RunDirectory


def _not_available(stage: str) -> UserError:
    return UserError(f"the {stage} stage is not available in this version yet; run with --until before it")


def teacher_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    raise _not_available("teacher")


def train_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    raise _not_available("train")


def search_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    from elastic_lm.pipeline.search_stage import run_search_stage

    result = run_search_stage(config)
    return {"trials": result.n_trials, "pareto": result.pareto, "hypervolume": result.hypervolume}


def export_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    raise _not_available("export")


def evaluate_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    raise _not_available("evaluate")


def report_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    from elastic_lm.report import write_report

    page = write_report(run_dir.path)
    return {"report": str(page)}
