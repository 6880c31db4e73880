"""One profiling job: sample, measure, build the table, fit the predictors, score them on held-out."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_lm.errors import UserError
from elastic_lm.io import atomic_write_json
from elastic_lm.profile.evaluate import LatencyPredictor, evaluate, save_predictors
from elastic_lm.profile.lookup import LookupTablePredictor
from elastic_lm.profile.measure import MeasureMany, records_for, sample_architectures
from elastic_lm.profile.records import ProfileRecord, ProfileSettings
from elastic_lm.profile.regressor import RegressorPredictor
from elastic_lm.space import SearchSpace


@dataclass
class ProfileResult:
    """Measured records (train / held-out), fitted predictors and their held-out errors."""

    train: list[ProfileRecord]
    held_out: list[ProfileRecord]
    predictors: dict[str, LatencyPredictor]
    errors: dict[str, dict[str, float]]
    files: dict[str, Path] = field(default_factory=dict)


def fit_predictors(
    supernet: Any,
    space: SearchSpace,
    settings: ProfileSettings,
    *,
    n_train: int = 48,
    n_held_out: int = 16,
    seed: int = 0,
    out_dir: str | Path | None = None,
    measure: MeasureMany | None = None,
) -> ProfileResult:
    """Profile ``n_train + n_held_out`` sub-networks, fit every predictor on the training part.

    The smallest and largest members are always in the training part. Whole models are measured in
    a shuffled order, so neither part is timed during a systematically quieter spell. With
    ``out_dir`` writes ``predictor.json`` and ``records.json`` there.
    """
    if n_held_out < 2:
        raise UserError(f"held-out={n_held_out} is too few to score a predictor; use at least 2")
    rng = random.Random(seed)
    archs = sample_architectures(space, supernet.config, n_train + n_held_out, rng)
    if len(archs) < n_train + n_held_out:
        raise UserError(
            f"the space has only {len(archs)} distinct members found by sampling; lower --samples"
        )
    rest = archs[2:]
    rng.shuffle(rest)
    held_arch = rest[:n_held_out]
    train_arch = archs[:2] + rest[n_held_out:]
    order = list(archs)
    rng.shuffle(order)
    by_key = {r.architecture.key(): r for r in records_for(supernet, order, settings, measure)}
    train = [by_key[a.key()] for a in train_arch]
    held_out = [by_key[a.key()] for a in held_arch]

    lookup = LookupTablePredictor.build(supernet, archs, settings, measure).fit(train)
    predictors: dict[str, LatencyPredictor] = {
        "lookup": lookup,
        "regressor": RegressorPredictor(supernet.config, settings.seq_len, lookup).fit(train),
        "analytic": RegressorPredictor(supernet.config, settings.seq_len, None).fit(train),
    }
    errors = {name: evaluate(p, held_out) for name, p in predictors.items()}
    result = ProfileResult(train, held_out, predictors, errors)
    if out_dir is not None:
        out = Path(out_dir)
        result.files["predictor"] = save_predictors(
            out / "predictor.json", predictors, settings, errors, n_train=len(train)
        )
        result.files["records"] = atomic_write_json(
            out / "records.json",
            {
                "settings": settings.to_dict(),
                "train": [r.to_dict() for r in train],
                "held_out": [r.to_dict() for r in held_out],
            },
        )
    return result
