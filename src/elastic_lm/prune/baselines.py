"""Pruning baselines at the same parameter budgets and training budget as the search.

- ``layer-drop``: keep the best ``k`` layers of the fine-tuned model (chosen on validation), fine-tune.
- ``head-prune``: Michel et al. (2019): gradient head importance (normalised per layer), drop the
  least important heads globally, fine-tune.
- ``uniform``: a smaller dense BERT of the same family: every layer's first heads / FFN units of the
  *original* checkpoint order (no importance), distilled from the fine-tuned model.
- ``unpruned``: the fine-tuned full model.
Each point is exported like a Pareto member and measured the same way (params, CPU latency, test).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import TYPE_CHECKING, Any

import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.importance import gradient_importance
from elastic_lm.metrics.size import count_params
from elastic_lm.prune import final
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.intervals import model_intervals
from elastic_lm.prune.source import ensure_label_maps

if TYPE_CHECKING:
    from elastic_lm.prune.parts import PruneParts

MAX_SUBSETS = 64


def layer_drop_arch(config: Any, kept: tuple[int, ...]) -> Architecture:
    """Full-width layers at the ``kept`` positions, the rest dropped."""
    layers = tuple(
        LayerArch("bert", heads=config.num_attention_heads, ffn=config.intermediate_size)
        if i in kept
        else LayerArch("identity")
        for i in range(config.num_layers)
    )
    return Architecture(hidden=config.hidden_size, layers=layers)


def best_layers(model: Any, k: int, batches: list[Any], task: str, quality: str) -> tuple[int, ...]:
    """The ``k`` layers whose sub-network scores best on validation (exhaustive when small, else greedy)."""
    n = model.config.num_layers
    sign = -1.0 if quality == "loss" else 1.0

    def score(kept: tuple[int, ...]) -> float:
        arch = layer_drop_arch(model.config, kept)
        return sign * evaluate_model(model, batches, task, arch)[quality]

    if math.comb(n, k) <= MAX_SUBSETS:
        return max(itertools.combinations(range(n), k), key=score)
    kept = tuple(range(n))
    while len(kept) > k:  # greedy: drop the layer whose removal hurts least
        kept = max((tuple(x for x in kept if x != d) for d in kept), key=score)
    return kept


def head_prune_arch(config: Any, scores: dict[str, torch.Tensor], keep: int) -> Architecture:
    """Keep the ``keep`` globally most important heads (scores L2-normalised per layer, as Michel)."""
    per_layer = []
    for i in range(config.num_layers):
        s = next(v for k, v in scores.items() if k.endswith(f"layers.{i}.bert.attention"))
        per_layer.append(s / (s.norm() + 1e-12))
    flat = torch.cat(per_layer)
    order = flat.argsort(descending=True, stable=True)[:keep].tolist()
    h = config.num_attention_heads
    layers = []
    for i in range(config.num_layers):
        ids = tuple(sorted(j - i * h for j in order if i * h <= j < (i + 1) * h))
        if ids:
            layers.append(LayerArch("bert", heads=len(ids), ffn=config.intermediate_size, head_ids=ids))
        else:
            layers.append(LayerArch("bert", heads=0, ffn=config.intermediate_size))
    return Architecture(hidden=config.hidden_size, layers=tuple(layers))


def uniform_arch(config: Any, fraction: float) -> Architecture:
    """Every layer at ``fraction`` of its heads and FFN units (first ones)."""
    heads = max(1, round(fraction * config.num_attention_heads))
    ffn = max(1, round(fraction * config.intermediate_size))
    layer = LayerArch("bert", heads=heads, ffn=ffn)
    return Architecture(hidden=config.hidden_size, layers=(layer,) * config.num_layers)


def baseline_slug(name: str) -> str:
    """A baseline's folder name under ``RUN_DIR/baselines/``: "head-prune 36/72" -> "head-prune_36of72"."""
    return name.replace(" ", "_").replace("/", "of").replace("=", "")


def run_baselines(job: PruneParts) -> list[dict[str, Any]]:
    """Train, export and score every baseline; returns ``baselines.json`` points."""
    from elastic_lm.export import export_subnetwork
    from elastic_lm.export.load import load_exported, measure_ms

    d = job.data  # first: on a tiny set it adapts job.config
    config, p = job.config, job.config.prune
    steps = p.baseline_steps if p.baseline_steps is not None else config.train.steps
    root = job.dir("baselines")
    teacher = job.finetuned()
    original = job.finetuned(original=True)
    c = teacher.config
    val = job.val_batches()
    quality = p.quality_objective
    train_batches = fixed_batches(d.train, d.collator, config.train.batch_size)[: p.importance_batches]
    head_scores = gradient_importance(original, train_batches)

    plans: list[tuple[str, Any, Architecture, bool]] = [("unpruned", teacher, teacher.model.largest(), False)]
    total_heads = c.num_layers * c.num_attention_heads
    for f in p.baseline_fractions:
        k = max(1, round(f * c.num_layers))
        plans.append(
            (
                f"layer-drop k={k}",
                teacher,
                layer_drop_arch(c, best_layers(teacher, k, val, d.task, quality)),
                False,
            )
        )
        n_heads = max(1, round(f * total_heads))
        plans.append(
            (f"head-prune {n_heads}/{total_heads}", original, head_prune_arch(c, head_scores, n_heads), False)
        )
        plans.append((f"uniform x{f:g}", original, uniform_arch(c, f), True))

    points, models = [], {}
    for name, parent, arch, distill in plans:
        slug = baseline_slug(name)
        out = root / slug
        model = parent.extract(arch).eval()
        ensure_label_maps(model.config)
        if name != "unpruned" and steps > 0:
            job.train_alone(model, root / "runs" / slug, steps, teacher=teacher if distill else None)
        own = model.model.largest()
        metrics: dict[str, Any] = {f"val_{k}": v for k, v in evaluate_model(model, val, d.task).items()}
        if d.task == "classification":
            metrics.update(model_intervals(model, val, "val", seed=config.seed))
        metrics["params"] = float(count_params(model.config, own))
        metrics["params_nonembedding"] = float(count_params(model.config, own, include_embeddings=False))
        export_subnetwork(model, own, out, tokenizer=job.tokenizer, provenance={"baseline": name})
        metrics["latency_ms"] = measure_ms(load_exported(out), config.search)
        models[name] = model
        # relative to the run directory, like export/index.json: the run can move
        points.append(
            {"name": name, "metrics": metrics, "architecture": arch.to_dict(), "path": f"baselines/{slug}"}
        )

    tests = final.final_evaluation(models, config.data, job.tokenizer, config.search.eval_batch_size)
    for point in points:
        point["metrics"].update(tests[point["name"]])
        (job.root / point["path"] / "metrics.json").write_text(json.dumps(point["metrics"], indent=2))
    return points


__all__ = [
    "baseline_slug",
    "best_layers",
    "head_prune_arch",
    "layer_drop_arch",
    "run_baselines",
    "uniform_arch",
]
