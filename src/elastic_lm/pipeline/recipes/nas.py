"""Task-agnostic NAS: teacher, train, profile, search, export, evaluate, report.

Each stage's inputs are the config sections it reads itself plus those of every stage before it (it
consumes their outputs), so editing ``search.trials`` redoes search and what follows, never training.
The stage functions live in :mod:`elastic_lm.pipeline.stages` and are imported only when they run.
"""

from __future__ import annotations

from typing import Any

from elastic_lm.config import Config
from elastic_lm.pipeline.engine import Recipe, Stage
from elastic_lm.pipeline.rundir import RunDirectory, hash_inputs

_IMPL = "elastic_lm.pipeline.stages"
# What the train loop may continue under when only these changed (lower the learning rate after a
# NaN loss, then resume): they shape the remaining steps, not what the checkpoints hold.
CONTINUABLE_TRAIN = tuple(
    f"train.{name}"
    for name in (
        "learning_rate",
        "warmup_fraction",
        "schedule",
        "max_grad_norm",
        "weight_decay",
        "precision",
        "eval_every",
        "eval_batches",
        "eval_batch_size",
        "checkpoint_every",
        "keep_checkpoints",
    )
)

STAGE_LIST: tuple[Stage, ...] = (
    Stage("teacher", f"{_IMPL}:teacher_stage", writes=("teacher/stage.json",)),
    Stage(
        "train",
        f"{_IMPL}:train_stage",
        after=("teacher",),
        writes=("train/checkpoints/", "train/supernet/", "train/metrics.csv"),
        checkpoints=("checkpoints",),
        continuable=CONTINUABLE_TRAIN,
    ),
    Stage("profile", f"{_IMPL}:profile_stage", after=("train",), reads=("train/supernet/",),
          writes=("profile/predictor.json",)),
    Stage("search", f"{_IMPL}:search_stage", after=("profile",),
          reads=("train/supernet/", "profile/predictor.json"),
          writes=("search/study.db", "search/trials.json", "search/summary.json")),
    Stage("export", f"{_IMPL}:export_stage", after=("search",), reads=("search/", "train/supernet/"),
          writes=("export/index.json", "export/<member>/", "export/<member>-st/")),
    Stage("evaluate", f"{_IMPL}:evaluate_stage", after=("export",), reads=("export/",),
          writes=("evaluate/embedding.json", "evaluate/downstream.json", "evaluate/downstream.csv")),
    Stage("report", f"{_IMPL}:report_stage", after=("evaluate",),
          reads=("train/", "profile/", "search/", "export/", "evaluate/"),
          writes=("report/index.html", "report/pareto.csv")),
)  # fmt: skip
STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_LIST)

# The config sections each stage reads itself.
_OWN_SECTIONS: dict[str, tuple[str, ...]] = {
    "teacher": ("seed", "model", "teacher", "data"),
    "train": ("space", "train"),
    "profile": ("profile", "search"),  # search: whether an objective needs a latency predictor
    "search": ("search",),
    "export": ("export",),
    "evaluate": ("evaluate",),
    "report": (),
}
_STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    stage: tuple(dict.fromkeys(s for earlier in STAGES[: i + 1] for s in _OWN_SECTIONS[earlier]))
    for i, stage in enumerate(STAGES)
}


def stage_inputs(stage: str, config: Config, run_dir: RunDirectory | None = None) -> dict[str, Any]:
    """The config sections ``stage``'s output depends on (its own and every earlier stage's)."""
    data = config.model_dump(mode="json")
    return {name: data[name] for name in _STAGE_INPUTS[RECIPE.stage(stage).name]}


def inputs_hash(stage: str, config: Config) -> str:
    """A stable hash of :func:`stage_inputs` (what ``stage.json`` records)."""
    return hash_inputs(stage_inputs(stage, config))


RECIPE = Recipe("nas", STAGE_LIST, stage_inputs)


def recipe(config: Config, **_: Any) -> Recipe:
    """The NAS recipe (the same for every config)."""
    return RECIPE


__all__ = ["CONTINUABLE_TRAIN", "RECIPE", "STAGES", "inputs_hash", "recipe", "stage_inputs"]
