"""Importance-guided first trials for a decoder search: layers dropped by block importance, uniform widths.

Why: a decoder space has a keep/drop bit per layer (2^30 subsets on SmolLM2); a search that samples
them at random spends a small budget on members that drop important layers and never recover. Seeding
the study with the members ShortGPT-style layer scores suggest, at several depths and FFN widths, gives
the search good parents from its first generation; the strategy then mutates and recombines them.

With ``heal.targets`` the study also starts from members made *for* each target (Minitron's recipe):
for every mix of hidden width, whole KV groups and FFN width the space allows, the most layers (by
block score) that fit, screened on a few calibration batches by perplexity; the best of each target
go first, so the members the heal stage picks are the best mixes of width and depth, not only of depth.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from elastic_lm.architecture import Architecture
from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.importance.decoder import keep_layers
from elastic_lm.metrics.size import count_params

SCREEN_BATCHES = 2  # calibration batches each targeted candidate is screened on
PER_TARGET = 2  # targeted seeds per heal target


def seed_architectures(space: Any, model: Any, layer_scores: torch.Tensor, n: int) -> list[Architecture]:
    """Up to ``n`` members spread over size: the ``k`` best layers (k from all to half) x FFN widths."""
    full = space.largest()
    n_layers = sum(not la.is_identity for la in full.layers)
    ffn = next((g for g in space.groups if g.target == "ffn"), None)
    widths = sorted(set(ffn.choices), reverse=True)[:4] if ffn is not None else [None]
    candidates: dict[str, Architecture] = {}
    for keep in range(n_layers, max(space.min_depth, (n_layers + 1) // 2) - 1, -1):
        for width in widths:
            arch = keep_layers(full, layer_scores, keep)
            if width is not None:
                layers = tuple(la if la.is_identity else replace(la, ffn=width) for la in arch.layers)
                arch = Architecture(hidden=arch.hidden, layers=layers)
            try:
                space.validate(arch)
            except Exception:  # a shape this space cannot express is simply not a seed
                continue
            candidates[arch.key()] = arch
    ranked = sorted(candidates.values(), key=lambda a: count_params(model.config, a, False))
    if len(ranked) <= n:
        return ranked
    picks = sorted({round(i * (len(ranked) - 1) / max(n - 1, 1)) for i in range(n)})
    return [ranked[i] for i in picks]


def _choices(space: Any, target: str, full: int) -> list[int]:
    group = next((g for g in space.groups if g.target == target), None)
    return sorted({int(c) for c in group.choices}, reverse=True) if group is not None else [full]


def target_candidates(
    space: Any, model: Any, layer_scores: torch.Tensor, max_params: float, min_keep: int | None = None
) -> list[Architecture]:
    """For each (hidden, whole KV groups, FFN width) of ``space``, the member keeping the most layers
    (best by ``layer_scores``, at least ``min_keep``) with at most ``max_params`` non-embedding
    parameters. Query heads come in whole groups so every kept head reads its own KV head; hidden
    widths under the target's fraction of the full width are skipped."""
    full = space.largest()
    body = [la for la in full.layers if not la.is_identity]
    n_layers = len(body)
    floor = max(space.min_depth, min_keep if min_keep is not None else (n_layers + 1) // 2)
    top = body[0]
    per_group = max(1, top.heads // max(top.kv_heads, 1))
    heads = set(_choices(space, "heads", top.heads))
    kv_pairs = [
        (kv * per_group, kv) for kv in _choices(space, "kv_heads", top.kv_heads) if kv * per_group in heads
    ]
    largest = count_params(model.config, full, False)
    # a hidden width that alone cuts below the target (parameters scale at least with it) leaves no
    # room for the other dimensions: not worth a screening pass
    hiddens = [h for h in _choices(space, "hidden", full.hidden) if h >= full.hidden * max_params / largest]
    out: list[Architecture] = []
    for hidden in hiddens or [full.hidden]:
        for n_heads, kv in kv_pairs or [(top.heads, top.kv_heads)]:
            for ffn in _choices(space, "ffn", top.ffn):
                for keep in range(n_layers, floor - 1, -1):
                    arch = keep_layers(full, layer_scores, keep)
                    layers = tuple(
                        la if la.is_identity else replace(la, heads=n_heads, kv_heads=kv, ffn=ffn)
                        for la in arch.layers
                    )
                    arch = Architecture(hidden=hidden, layers=layers)
                    if count_params(model.config, arch, False) > max_params:
                        continue
                    try:
                        space.validate(arch)
                    except Exception:  # a shape this space cannot express is not a candidate
                        break
                    out.append(arch)
                    break
    return out


def screen(model: Any, candidates: list[Architecture], batches: list[Any], best: int) -> list[Architecture]:
    """The ``best`` candidates by perplexity on ``batches`` (a cheap forward each, no training)."""
    from elastic_lm.importance.decoder import sub_perplexity

    ranked = sorted(candidates, key=lambda a: (sub_perplexity(model, a, batches), a.key()))
    return ranked[:best]


def enqueue_seeds(config: Config, storage: str, study_name: str) -> int:
    """Put the seeds first in a new study (nothing when it already has trials); returns how many."""
    import optuna

    from elastic_lm.export.supernet import load_supernet
    from elastic_lm.importance.decoder import decoder_importance, layer_scores
    from elastic_lm.pipeline.objectives import known_metric
    from elastic_lm.search.study import create_or_load_study, params_of
    from elastic_lm.train.calibrate import calibration_batches

    section = config.search
    directions = [o.direction or known_metric(o.name).direction for o in section.objectives]
    names = [o.name for o in section.objectives]
    study = create_or_load_study(study_name, storage, directions, metric_names=names)
    if study.get_trials(deepcopy=False):
        return 0
    saved = load_supernet(f"{config.run_dir}/train/supernet")
    model, space = saved.model.eval(), saved.space
    if space is None:
        raise ConfigError(f"{config.run_dir}/train/supernet has no search space; re-run the train stage")
    name = config.heal.layer_score
    batches = calibration_batches(config, config.model.importance_batches)
    with model.using(model.backbone.largest()):
        scores = decoder_importance(model, batches, [name])
    ranking = layer_scores(scores, name)
    targeted: list[Architecture] = []
    if config.heal.enabled and config.heal.targets:
        largest = count_params(model.config, space.largest(), False)
        for fraction in config.heal.targets:
            candidates = target_candidates(space, model, ranking, fraction * largest)
            targeted += screen(model, candidates, batches[:SCREEN_BATCHES], PER_TARGET)
    ranked = seed_architectures(space, model, ranking, max(section.trials // 2 - len(targeted), 0))
    seeds = [space.largest(), *targeted, *ranked]
    seen: set[str] = set()
    for arch in seeds:
        if arch.key() not in seen:
            seen.add(arch.key())
            study.enqueue_trial(params_of(space, arch))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return len(seen)


__all__ = ["enqueue_seeds", "screen", "seed_architectures", "target_candidates"]
