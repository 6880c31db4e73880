"""Importance-guided first trials for a decoder search: layers dropped by block importance, uniform widths.

Why: a decoder space has a keep/drop bit per layer (2^30 subsets on SmolLM2); a search that samples
them at random spends a small budget on members that drop important layers and never recover. Seeding
the study with the members ShortGPT-style layer scores suggest, at several depths and FFN widths, gives
the search good parents from its first generation; the strategy then mutates and recombines them.
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
    ranked = seed_architectures(space, model, layer_scores(scores, name), section.trials // 2)
    seeds = [space.largest(), *ranked]
    seen: set[str] = set()
    for arch in seeds:
        if arch.key() not in seen:
            seen.add(arch.key())
            study.enqueue_trial(params_of(space, arch))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return len(seen)


__all__ = ["enqueue_seeds", "seed_architectures"]
