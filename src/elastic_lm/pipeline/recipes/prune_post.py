"""The retraining-free pruning stage (``prune.mode: post-training``; Kwon et al., NeurIPS 2022).

In this mode the recipe is ``finetune -> export [-> baselines] [-> report]``: there is no
super-network and no search. The ``export`` stage scores heads and FFN units by Fisher information
on ``prune.post_training.examples`` training rows, and for each kept share in
``prune.post_training.targets`` searches the masks, rearranges them, tunes them by least squares
and exports the result (a plain, physically smaller model) with validation, test and latency
numbers, in the same ``export/`` layout as the NAS mode. It also writes ``search/trials.json`` and
``search/summary.json`` so the report shows the members like a search's front.
"""

from __future__ import annotations

import time
from typing import Any

from elastic_lm.io import atomic_write_json
from elastic_lm.pipeline.recipes.prune_stages import validation_intervals
from elastic_lm.prune.parts import PruneParts


def post_training(parts: PruneParts) -> dict[str, Any]:
    """Fisher scores once, then one pruned, tuned, exported model per target share."""
    from elastic_lm.export import export_subnetwork
    from elastic_lm.export.load import load_exported, measure_ms, update_card
    from elastic_lm.importance.fisher import mask_gradients
    from elastic_lm.metrics.size import count_params
    from elastic_lm.prune import final
    from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
    from elastic_lm.prune.posttrain import post_training_prune

    d = parts.data  # first: on a tiny set it adapts parts.config
    config = parts.config
    pt = config.prune.post_training
    folder, search_dir = parts.dir("export"), parts.dir("search")
    started, cpu_started = time.perf_counter(), time.process_time()
    model = parts.finetuned(original=True)
    rows = [d.train[i] for i in range(min(pt.examples, len(d.train)))]
    batches = fixed_batches(rows, d.collator, config.train.batch_size)
    grads = mask_gradients(model, batches, d.task)
    fisher_s = time.perf_counter() - started
    val = parts.val_batches()
    c = model.config
    full_ne = float(count_params(c, model.model.largest(), include_embeddings=False))
    members: dict[str, Any] = {}
    records = []
    for number, share in enumerate(sorted(set(pt.targets), reverse=True)):
        student, arch, info = post_training_prune(
            model,
            grads,
            share,
            batches,
            constraint=pt.constraint,
            seq_len=config.data.max_length or 128,
            rearrange_masks=pt.rearrange,
            tune=pt.tune,
        )
        metrics = {f"val_{k}": v for k, v in evaluate_model(student, val, d.task, arch).items()}
        metrics["params"] = float(count_params(c, arch))
        metrics["params_nonembedding"] = float(count_params(c, arch, include_embeddings=False))
        metrics["target_share"] = share
        metrics["cost_share"] = info["cost_share"]
        members[f"trial-{number}"] = (student, arch)
        records.append(
            {
                "number": number,
                "architecture": arch.to_dict(),
                "metrics": metrics,
                "feasible": True,
                "state": "COMPLETE",
                "kept": info["kept"],
            }
        )
    search_s = time.perf_counter() - started - fisher_s
    tests = final.final_evaluation(
        {"unpruned": model, **members}, config.data, parts.tokenizer, config.search.eval_batch_size
    )
    warning = validation_intervals(parts, {"unpruned": model, **members}, tests)
    index = []
    for record in records:
        name = f"trial-{record['number']}"
        student, arch = members[name]
        out = folder / name
        metrics = {**record["metrics"], **tests[name]}
        provenance = {
            "run_dir": str(parts.root),
            "mode": "post-training",
            "source_model": config.model.source,
            "target_share": record["metrics"]["target_share"],
        }
        export_subnetwork(
            student, arch, out, tokenizer=parts.tokenizer, metrics=metrics, provenance=provenance
        )
        metrics["latency_ms"] = measure_ms(load_exported(out), config.search)
        update_card(out, metrics)
        index.append({"name": name, "path": f"export/{name}", "metrics": metrics})
    quality = parts.quality_name()
    size = (
        config.prune.size_objective if config.prune.size_objective != "latency_ms" else "params_nonembedding"
    )
    summary = {
        "objectives": [
            {"name": size, "direction": "minimize", "unit": "count"},
            {"name": quality, "direction": "minimize" if quality == "val_loss" else "maximize", "unit": ""},
        ],
        "strategy": "post-training",
        "pareto": [r["number"] for r in records],
        "exported": [r["number"] for r in records],
        "hypervolume": [],
        "unpruned": {**parts.unpruned(), "params_nonembedding": full_ne},
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    search_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(search_dir / "trials.json", records)
    atomic_write_json(search_dir / "summary.json", summary)
    atomic_write_json(parts.dir("evaluate") / "test_metrics.json", tests)
    atomic_write_json(folder / "index.json", index)
    return {
        **({"warning": warning} if warning else {}),
        "models": len(index),
        "fisher_s": round(fisher_s, 2),
        "prune_s": round(search_s, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),  # this process (load-independent)
    }


__all__ = ["post_training"]
