"""``elastic-lm run CONFIG``: pick the config's recipe (its ``pipeline`` field) and hand it to the engine.

Every recipe runs through :func:`elastic_lm.pipeline.engine.run_recipe`: finished stages are skipped,
a changed setting redoes the stages that depend on it, ``--from`` / ``--until`` name stages of the
config's recipe, and the run directory is locked while it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from elastic_lm.config import Config
from elastic_lm.pipeline.engine import Recipe, StageFunction, StageOutcome, run_recipe
from elastic_lm.pipeline.recipes import RECIPES


def recipe_for(config: Config, **options: Any) -> Recipe:
    """The recipe named by ``config.pipeline`` (``options`` go to its factory, e.g. ``progress``)."""
    module_name, attribute = RECIPES[config.pipeline].split(":")
    return getattr(importlib.import_module(module_name), attribute)(config, **options)


def run_pipeline(
    config: Config,
    *,
    start: str | None = None,
    until: str | None = None,
    stages: dict[str, StageFunction] | None = None,
    log: Callable[[str], None] | None = print,
    progress: bool = True,
) -> list[StageOutcome]:
    """Run the config's recipe from ``start`` to ``until``; returns what each stage did.

    ``stages`` replaces stage implementations by name (tests, custom pipelines).
    """
    options: dict[str, Any] = {"progress": progress}
    if config.pipeline == "prune":
        options["log"] = log
    return run_recipe(recipe_for(config, **options), config, start=start, until=until, stages=stages, log=log)


def all_stage_names() -> tuple[str, ...]:
    """Every stage name of every recipe (for ``--from`` / ``--until``; each recipe checks its own)."""
    from elastic_lm.pipeline.recipes.nas import STAGES as NAS
    from elastic_lm.pipeline.recipes.prune import STAGES as PRUNE

    return tuple(dict.fromkeys((*NAS, *PRUNE, "heal")))


__all__ = ["all_stage_names", "recipe_for", "run_pipeline"]
