"""The stages of the NAS recipe (:mod:`elastic_lm.pipeline.recipes.nas`): thin calls into the subsystems.

Each takes the validated config and the run directory and returns a small dict of headline outputs
that is stored in the stage's record.
"""

from __future__ import annotations

from typing import Any

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError, UserError
from elastic_lm.pipeline.rundir import RunDirectory


def _not_available(stage: str) -> UserError:
    return UserError(f"the {stage} stage is not available in this version yet; run with --until before it")


def teacher_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """Prepare the teacher once (cached across runs); the training stage loads it from the cache."""
    from elastic_lm.teacher import teacher_folder

    folder = teacher_folder(config)
    return {"teacher": str(folder) if folder is not None else None}


def train_stage(
    config: Config, run_dir: RunDirectory, *, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Train the super-network and save it (model, tokenizer, space) for search and export.

    Checkpoints left by an interrupted run are resumed exactly; the engine has already refused
    checkpoints of other settings (:func:`elastic_lm.pipeline.engine.check_resumable`), so nothing
    is removed here. With ``resume=False`` existing checkpoints are an error rather than continued.
    """
    from elastic_lm.export.supernet import save_supernet
    from elastic_lm.train.build import tokenizer_from_config, train_from_config

    folder = run_dir.stage_dir("train")
    result = train_from_config(config, resume=resume, progress=progress)
    if not _is_main_rank():
        return {}
    provenance = {"source_model": config.model.source, "space": config.space.preset}
    supernet = save_supernet(
        result.model,
        tokenizer_from_config(config),
        result.space,
        folder / "supernet",
        provenance=provenance,
    )
    return {
        "supernet": str(supernet),
        "steps": result.steps,
        "final_loss": result.losses[-1] if result.losses else None,
        "validation": result.val,
    }


def profile_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """Time sub-networks of the trained super-network here and fit latency predictors (when needed)."""
    if not needs_profile(config):
        return {"skipped": "no objective or constraint uses latency_pred_ms (set profile.enabled: true)"}
    from elastic_lm.export.supernet import load_supernet
    from elastic_lm.profile.records import ProfileSettings
    from elastic_lm.profile.run import fit_predictors

    section = config.profile
    supernet = load_supernet(run_dir.stage_dir("train") / "supernet")
    settings = ProfileSettings.from_attributes(section)
    result = fit_predictors(
        supernet.model,
        supernet.space,
        settings,
        n_train=section.samples,
        n_held_out=section.held_out,
        seed=config.seed,
        out_dir=run_dir.stage_dir("profile"),
    )
    return {"predictor": str(run_dir.stage_dir("profile") / "predictor.json"), "errors": result.errors}


def needs_profile(config: Config) -> bool:
    """An explicit ``profile.enabled``, else whether the search uses a latency predictor."""
    if config.profile.enabled is not None:
        return config.profile.enabled
    names = [o.name for o in config.search.objectives] + [c.name for c in config.search.constraints]
    return "latency_pred_ms" in names


def search_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    from elastic_lm.pipeline.search_stage import run_search_stage

    result = run_search_stage(config)
    return {"trials": result.n_trials, "pareto": result.pareto, "hypervolume": result.hypervolume}


def export_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """Every Pareto member (at most ``export.max_models``) as a standalone model folder."""
    from elastic_lm.export import export_pareto
    from elastic_lm.heal.encoder import member_tuner

    section = config.export
    exported = export_pareto(
        run_dir.path,
        max_models=section.max_models,
        onnx=section.onnx,
        budget_marks=section.budget_marks,
        tune=member_tuner(config),
    )
    return {"models": [str(e.path) for e in exported]}


def evaluate_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    """Score exported encoders as sentence embeddings (encoder runs), fine-tune the first
    ``evaluate.max_models`` of them on the configured tasks (one fixed budget; none for 0), score decoders.

    Writes ``RUN_DIR/evaluate/embedding.json``, ``downstream.json`` and ``downstream.csv`` (the report
    shows them).
    """
    from elastic_lm.evaluate.downstream import (
        DOWNSTREAM_FILES,
        FineTuneBudget,
        evaluate_models,
        exported_models,
        reference_models,
        write_downstream,
    )
    from elastic_lm.evaluate.embedding_run import embedding_enabled, run_embedding_evaluation

    section = config.evaluate
    if not section.enabled:
        return {"downstream": None}
    embedding = run_embedding_evaluation(config, run_dir.path) if embedding_enabled(config) else None
    models = exported_models(run_dir.path, section.models, section.max_models)
    models += reference_models(section.references)
    folder = run_dir.stage_dir("evaluate")
    if not models:  # evaluate.max_models 0 and no references: the embedding evaluation only
        for stale in DOWNSTREAM_FILES:  # this stage's own output of other settings
            (folder / stale).unlink(missing_ok=True)
        return {
            "downstream": None,
            "embedding": None if embedding is None else str(embedding),
            "fine_tuning": f"none (evaluate.max_models {section.max_models}, no references)",
        }
    tasks = [(t.display_name, t.data_config(section.max_length, section.max_examples)) for t in section.tasks]
    names = [name for name, _ in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate.tasks has repeated names {names}; give each task its own 'name'")
    corpus = config.data.model_copy(
        update={"task": "clm", "max_length": section.max_length, "max_examples": section.max_examples}
    )

    def fallback_tokenizer() -> Any:
        from elastic_lm.train.build import tokenizer_from_config

        return tokenizer_from_config(config)

    budget = FineTuneBudget(
        steps=section.steps,
        batch_size=section.batch_size,
        learning_rate=section.learning_rate,
        seed=config.seed,
        device=config.device,
    )
    results = evaluate_models(
        models,
        tasks,
        budget,
        corpus=corpus,
        prompts=section.prompts,
        max_new_tokens=section.max_new_tokens,
        work_dir=folder / "work",
        tokenizer_fallback=fallback_tokenizer,
    )
    json_path, csv_path = write_downstream(folder, results)
    best = max(results.encoders, key=lambda e: e.average["accuracy"], default=None)
    return {
        "downstream": str(json_path),
        "csv": str(csv_path),
        "embedding": None if embedding is None else str(embedding),
        "encoders": len(results.encoders),
        "decoders": len(results.decoders),
        "best_average_accuracy": None if best is None else {best.name: best.average["accuracy"]},
    }


def report_stage(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
    from elastic_lm.report import write_report

    page = write_report(run_dir.path)
    return {"report": str(page)}


def _is_main_rank() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0
