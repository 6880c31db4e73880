"""Decoder compression: the NAS stages on a causal LM, then ``heal`` instead of downstream evaluation.

teacher -> train (the super-network seeded from the source and reordered by ``model.decoder_importance``
before anything trains) -> profile -> search (any subset of layers, widths, heads, KV groups; quality
is validation perplexity or loss) -> export (stock folders) -> heal (chosen members, the baselines and
the teacher trained with one budget from the full model, re-evaluated on the test split) -> report.
``elastic-lm prune`` on a causal LM runs it too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from elastic_lm.config import Config
from elastic_lm.pipeline.engine import Recipe, Stage
from elastic_lm.pipeline.recipes.nas import STAGE_LIST as NAS_STAGES
from elastic_lm.pipeline.recipes.nas import stage_inputs as nas_inputs
from elastic_lm.pipeline.rundir import RunDirectory


def heal_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """Heal and re-evaluate (``heal/results.json``, ``heal/<name>/``); see :mod:`elastic_lm.heal.run`."""
    if not config.heal.enabled:
        return {"skipped": "heal.enabled is false"}
    from elastic_lm.heal.run import run_heal

    return run_heal(config, run_dir.path)


def search_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """The NAS search, its study seeded first with importance-guided members (when it is new)."""
    from elastic_lm.pipeline.recipes.decoder_seeds import enqueue_seeds
    from elastic_lm.pipeline.search_stage import study_name
    from elastic_lm.pipeline.stages import search_stage as nas_search

    storage = config.search.storage or str(run_dir.stage_dir("search") / "study.db")
    run_dir.stage_dir("search").mkdir(parents=True, exist_ok=True)
    name = study_name(config, storage, shared=config.search.storage is not None)  # the one the search opens
    seeded = enqueue_seeds(config, storage, name) if config.model.decoder_importance else 0
    return {**nas_search(config, run_dir), "seeded": seeded}


_BY_NAME = {s.name: s for s in NAS_STAGES}
HEAL = Stage(
    "heal",
    heal_stage,
    after=("export",),
    reads=("export/", "teacher/"),
    writes=("heal/results.json", "heal/<member>/"),
    required=("heal/results.json",),
)
STAGE_LIST: tuple[Stage, ...] = (
    *(_BY_NAME[n] for n in ("teacher", "train", "profile")),
    replace(_BY_NAME["search"], run=search_stage),
    _BY_NAME["export"],
    HEAL,
    replace(_BY_NAME["report"], after=("heal",), reads=(*_BY_NAME["report"].reads, "heal/")),
)


def stage_inputs(stage: str, config: Config, run_dir: RunDirectory | None = None) -> dict[str, Any]:
    """The NAS sections of each stage; ``heal`` and ``report`` add the heal and evaluate sections."""
    if stage in ("heal", "report"):
        data = config.model_dump(mode="json")
        return {**nas_inputs("export", config), "heal": data["heal"], "evaluate": data["evaluate"]}
    return nas_inputs(stage, config)


RECIPE = Recipe("decoder", STAGE_LIST, stage_inputs)


def recipe(config: Config, *, baselines: bool | None = None, **_: Any) -> Recipe:
    """The decoder recipe (the same for every config; ``heal.baselines`` switches the baselines)."""
    return RECIPE


def run_decoder_prune(config: Config, *, baselines: bool | None = None) -> dict[str, Any]:
    """``elastic-lm prune`` on a causal LM: the decoder recipe; prints the healed members' numbers."""
    import json
    from pathlib import Path

    from elastic_lm.pipeline.engine import run_recipe

    if baselines is not None:
        config = config.model_copy(update={"heal": config.heal.model_copy(update={"baselines": baselines})})
    run_recipe(RECIPE, config)
    results_file = Path(config.run_dir) / "heal" / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for m in results.get("members", []):
        print(
            f"{m['name']:<18} {m['kind']:<14} params_nonembedding {m['params_nonembedding']:>10,} "
            f"perplexity {m['before']['perplexity']:9.1f} -> {m['after']['perplexity']:7.1f}  "
            f"decode {m['decode_ms_per_token']:.1f} ms/token"
        )
    return results


__all__ = ["RECIPE", "STAGE_LIST", "heal_stage", "recipe", "run_decoder_prune", "stage_inputs"]
