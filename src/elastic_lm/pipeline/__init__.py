"""The pipeline: stages that hand each other saved artefacts inside one run directory."""

from elastic_lm.pipeline.rundir import STAGES, RunDirectory, StageRecord
from elastic_lm.pipeline.supernet_io import load_supernet, save_supernet, supernet_folder

__all__ = ["STAGES", "RunDirectory", "StageRecord", "load_supernet", "save_supernet", "supernet_folder"]
