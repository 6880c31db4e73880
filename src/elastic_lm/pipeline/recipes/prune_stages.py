"""The stages of the pruning recipe (:mod:`elastic_lm.pipeline.recipes.prune`).

Each takes the run's :class:`~elastic_lm.prune.parts.PruneParts`, writes its files under its own
folder of the run directory and returns the headline outputs kept in its ``stage.json``. Whether a
stage runs at all, and what of an earlier attempt is kept, is the engine's business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.export.load import load_exported, measure_ms, update_card
from elastic_lm.importance import importance_scores, reorder_by_importance
from elastic_lm.io import atomic_write_json
from elastic_lm.prune import final
from elastic_lm.prune.coverage import covering_front, size_design, tied_members
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.objectives import UNITS, prune_objectives
from elastic_lm.prune.parts import PruneParts
from elastic_lm.prune.source import is_finetuned, load_classifier
from elastic_lm.prune.training import distill_losses, has_checkpoints


def finetune(parts: PruneParts) -> dict[str, Any]:
    """Fine-tune the full model unless it already is a classifier for this task; reorder it."""
    d, p, folder = parts.data, parts.config.prune, parts.dir("finetune")
    model = load_classifier(parts.folder, d.num_labels, d.label_names)
    trained = False
    if p.finetune_steps > 0 and not is_finetuned(parts.folder, d.num_labels):
        parts.train_alone(model, folder, p.finetune_steps)
        trained = True
    model.eval()
    model.save_pretrained(folder / "model-original")
    train_batches = fixed_batches(d.train, d.collator, parts.config.train.batch_size)[: p.importance_batches]
    reorder_by_importance(model, importance_scores(p.importance, model, train_batches))
    model.save_pretrained(folder / "model")
    parts.tokenizer.save_pretrained(folder / "model")
    metrics = {f"val_{k}": v for k, v in evaluate_model(model, parts.val_batches(), d.task).items()}
    return {"finetuned": trained, **metrics, **({"adapted": parts.notes} if parts.notes else {})}


def train(parts: PruneParts) -> dict[str, Any]:
    """Sandwich + in-place distillation by default (the largest learns the labels, others it)."""
    from elastic_lm.train.build import strategy_from_config
    from elastic_lm.train.loop import TrainSettings, train_supernet
    from elastic_lm.train.losses import CombinedLoss

    d, t, folder = parts.data, parts.config.train, parts.dir("train")
    model = parts.finetuned().train()
    space = parts.space(model)
    config = parts.config.model_copy(deep=True)
    if "strategy" not in t.model_fields_set:
        config.train.strategy = "inplace-distill"
    strategy = strategy_from_config(config, space)
    if "losses" in t.model_fields_set:
        spec = [{"name": s.name, "weight": s.weight, **s.options} for s in t.losses]
    else:
        spec = distill_losses(d.task)
    teacher = parts.finetuned() if getattr(strategy, "target", "labels") == "teacher" else None
    settings = TrainSettings.from_config(
        t,
        seed=parts.config.seed,
        device=parts.config.device,
        collate_fn=d.collator,
        progress=parts.progress,
        tensorboard=False,
        resume=has_checkpoints(folder),
    )
    result = train_supernet(
        model,
        strategy,
        CombinedLoss(spec),
        d.train,
        val_data=d.validation,
        teacher=teacher,
        settings=settings,
        run_dir=folder,  # the loop's own files go to train/train/
    )
    model.eval()
    model.save_pretrained(folder / "supernet")
    parts.tokenizer.save_pretrained(folder / "supernet")
    return {"steps": result.steps, "strategy": config.train.strategy, "val": result.val}


def search(parts: PruneParts) -> dict[str, Any]:
    """Multi-objective search on the validation split carved from the training data."""
    import time

    from elastic_lm.search import run_search

    folder, s = parts.dir("search"), parts.config.search
    supernet = parts.supernet()
    space = parts.space(supernet)
    objectives, metrics = prune_objectives(parts, supernet)
    design = front_design(parts, supernet, space)
    result = run_search(
        space,
        objectives,
        strategy=s.strategy,
        n_trials=s.trials,
        storage=s.storage or str(folder / "study.db"),
        seed=parts.config.seed,
        progress=parts.progress,
        initial_archs=design,
    )
    pareto = {e.number for e in result.pareto()}
    trials = [
        {
            "number": e.number,
            "architecture": e.arch.to_dict(),
            "metrics": {**metrics(e.arch), **e.metrics},
            "feasible": e.feasible,
            "state": "COMPLETE" if e.feasible else "PRUNED",
        }
        for e in result.evaluations
    ]
    history = result.hypervolume_history()
    exported = covering_front(
        trials,
        sorted(pareto),
        objectives[0].name,
        objectives[1].name,
        objectives[1].direction == "maximize",
        space.largest().key(),
        parts.config.prune.front_max_gap,
    )
    tied: list[int] = []
    if parts.config.prune.keep_tied and objectives[1].name == "val_accuracy":
        rows = len(parts.data.validation)
        tied = tied_members(trials, exported, objectives[0].name, "val_accuracy", rows)
    summary = {
        "objectives": [
            {"name": o.name, "direction": o.direction, "unit": UNITS.get(o.name, "")} for o in objectives
        ],
        "strategy": s.strategy,
        "pareto": sorted(pareto),
        "exported": exported,
        "tied": tied,  # validation cannot tell them from the best exported member of about their size
        "hypervolume": [[i + 1, h] for i, h in enumerate(history)],
        "reference_point": {
            o.name: b[1] if o.direction == "minimize" else b[0]
            for o, b in zip(objectives, result.bounds(), strict=True)
        },
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "unpruned": parts.unpruned(),
    }
    atomic_write_json(folder / "trials.json", trials)
    atomic_write_json(folder / "summary.json", summary)
    return {"trials": len(trials), "pareto": sorted(pareto), "hypervolume": history[-1] if history else 0.0}


def front_design(parts: PruneParts, supernet: Any, space: Any) -> list[Architecture]:
    """Members evaluated first (at most half of the trials): with ``prune.warm_start`` the Fisher
    answer at each post-training target, then members spread over non-embedding size."""
    from elastic_lm.metrics.size import count_params

    config, p = parts.config, parts.config.prune
    room = max(config.search.trials // 2 - 3, 0)

    def size(a: Architecture) -> float:
        return float(count_params(supernet.config, a, include_embeddings=False))

    design: dict[str, Architecture] = {}
    if p.warm_start:
        from elastic_lm.importance.fisher import fisher_diagonal, mask_gradients, sublayers
        from elastic_lm.prune.warmstart import fisher_design

        d = parts.data
        rows = [d.train[i] for i in range(min(p.post_training.examples, len(d.train)))]
        batches = fixed_batches(rows, d.collator, config.train.batch_size)
        scores = fisher_diagonal(mask_gradients(supernet, batches, d.task))
        for arch in fisher_design(
            space, size, sublayers(supernet), scores, p.post_training.targets, seed=config.seed
        ):
            design.setdefault(arch.key(), arch)
    for arch in size_design(space, size, p.front_bins, config.search.trials, config.seed):
        design.setdefault(arch.key(), arch)
    return list(design.values())[:room]


def evaluate(parts: PruneParts) -> dict[str, Any]:
    """Test metrics of the Pareto members (refined first with ``prune.refine_steps``) and of the
    unpruned fine-tuned model (the only test read)."""
    from elastic_lm.prune.refine import refine_members, refine_skipped

    supernet = parts.supernet()
    members = parts.pareto_members()
    refined = refine_members(parts, supernet, members)
    skipped = refine_skipped(parts.config, len(parts.data.train))
    models: dict[str, Any] = {"unpruned": parts.finetuned()}
    for t in members:
        name = f"trial-{t['number']}"
        shared = (supernet, Architecture.from_dict(t["architecture"]))
        models[name] = refined.get(name, shared)
    config = parts.config
    scores = final.final_evaluation(models, config.data, parts.tokenizer, config.search.eval_batch_size)
    if refined:  # the search's validation numbers were the shared weights'; these are the refined model's
        val = parts.val_batches()
        for name, model in refined.items():
            own = {f"val_{k}": v for k, v in evaluate_model(model, val, parts.data.task).items()}
            scores[name].update(own, refined_steps=config.prune.refine_steps)
    warnings = [w for w in (validation_intervals(parts, models, scores), parts.thinning_warning()) if w]
    atomic_write_json(parts.dir("evaluate") / "test_metrics.json", scores)
    notes = {"warning": " ".join(warnings)} if warnings else {}
    return {"models": len(scores), **notes, **({"refine": skipped} if skipped else {})}


def validation_intervals(parts: PruneParts, models: dict[str, Any], scores: dict[str, Any]) -> str | None:
    """Add each model's validation intervals to ``scores``; warn when validation cannot separate them."""
    from elastic_lm.prune.intervals import model_intervals, separation_warning

    if parts.data.task != "classification":
        return None
    val = parts.val_batches()
    for name, entry in models.items():
        model, arch = entry if isinstance(entry, tuple) else (entry, None)
        scores[name].update(model_intervals(model, val, "val", arch, seed=parts.config.seed))
    quality = "f1" if parts.config.prune.quality_objective == "f1" else "accuracy"
    warning = separation_warning(scores["unpruned"], len(parts.data.validation), what=quality)
    if warning is not None and parts.log is not None:
        parts.log(f"warning: {warning}")
    return warning


def export(parts: PruneParts) -> dict[str, Any]:
    """Each Pareto member (as refined, when it was) as a model folder with its card and measured numbers."""
    from elastic_lm.export import export_subnetwork
    from elastic_lm.prune.refine import load_refined
    from elastic_lm.prune.vocab import prune_vocabulary_folder

    config, folder = parts.config, parts.dir("export")
    supernet = parts.supernet()
    tests = json.loads((parts.dir("evaluate") / "test_metrics.json").read_text())
    p = config.prune
    index = []
    for t in parts.pareto_members():
        name = f"trial-{t['number']}"
        arch = Architecture.from_dict(t["architecture"])
        out = folder / name
        metrics = {**t["metrics"], **tests[name]}
        provenance = {
            "run_dir": str(parts.root),
            "supernet": str(parts.dir("train") / "supernet"),
            "trial": t["number"],
            "source_model": config.model.source,
            "strategy": config.search.strategy,
            "selection": "tied on validation with the front" if t.get("tied") else "front",
        }
        source, refined = supernet, load_refined(parts.root, name)
        if refined is not None:
            source, arch = refined, refined.model.largest()
            provenance["refined_steps"] = config.prune.refine_steps
        export_subnetwork(
            source, arch, out, tokenizer=parts.tokenizer, metrics=metrics, provenance=provenance
        )
        if p.vocabulary.enabled:
            before, after = prune_vocabulary_folder(
                out, parts.data, reserve=p.vocabulary.reserve, min_count=p.vocabulary.min_count
            )
            metrics.update(params_before_vocabulary=before, params=after, vocabulary_pruned=True)
        metrics["latency_ms"] = measure_ms(load_exported(out), config.search)
        update_card(out, metrics)
        index.append({"name": name, "path": f"export/{name}", "metrics": metrics})
    atomic_write_json(folder / "index.json", index)
    return {"models": len(index)}


def baselines(parts: PruneParts) -> dict[str, Any]:
    """Layer-drop, head-prune, uniform and unpruned points at the same budgets (``search/baselines.json``)."""
    from elastic_lm.prune.baselines import run_baselines

    points = run_baselines(parts)
    atomic_write_json(parts.dir("search") / "baselines.json", points)
    return {"points": len(points)}


def report(parts: PruneParts) -> dict[str, Any]:
    """``report/index.html`` of the run (Pareto plots with the baselines)."""
    from elastic_lm.report import write_report

    page: Path = write_report(parts.root)
    return {"report": str(page)}


__all__ = ["baselines", "evaluate", "export", "finetune", "report", "search", "train"]
