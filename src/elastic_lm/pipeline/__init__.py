"""The pipeline: stages that hand each other saved artefacts inside one run directory."""

from elastic_lm.pipeline.rundir import STAGES, RunDirectory, StageRecord

__all__ = ["STAGES", "RunDirectory", "StageRecord"]
