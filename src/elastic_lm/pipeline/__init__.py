"""The pipeline: one engine (:mod:`~elastic_lm.pipeline.engine`) runs every recipe
(:mod:`~elastic_lm.pipeline.recipes`), stage by stage, inside one locked run directory."""

from elastic_lm.pipeline.engine import Recipe, Stage, StageOutcome, run_recipe
from elastic_lm.pipeline.recipes.nas import STAGES
from elastic_lm.pipeline.rundir import RunDirectory, StageRecord

__all__ = ["STAGES", "Recipe", "RunDirectory", "Stage", "StageOutcome", "StageRecord", "run_recipe"]
