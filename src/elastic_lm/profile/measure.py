"""Measure many sub-networks of a super-network: each one extracted, timed round-robin in chunks.

Training labels for the predictors are the latency of the *whole extracted model*, the thing a user
deploys; the lookup table's per-layer timings are only its features.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from elastic_lm.architecture import Architecture
from elastic_lm.errors import UserError
from elastic_lm.metrics.onnx_latency import onnx_runner
from elastic_lm.metrics.size import count_flops, count_params
from elastic_lm.metrics.timing import (
    LatencyMeasurement,
    check_device,
    example_inputs,
    fixed_threads,
    time_interleaved,
)
from elastic_lm.profile.records import CLOCKS, ProfileRecord, ProfileSettings
from elastic_lm.space import SearchSpace

# Times a list of zero-argument callables (interleaved) and returns one measurement per callable.
MeasureMany = Callable[[Sequence[Callable[[], object]]], list[LatencyMeasurement]]


def default_measure(settings: ProfileSettings) -> MeasureMany:
    """Round-robin wall-clock timing with the settings' threads, warm-up and repeats."""

    def measure(fns: Sequence[Callable[[], object]]) -> list[LatencyMeasurement]:
        with fixed_threads(settings.threads), torch.inference_mode():
            return time_interleaved(
                fns,
                warmup=settings.warmup,
                repeats=settings.repeats,
                device=settings.device,
                clock=CLOCKS[settings.clock],
                settings=settings.to_dict(),
            )

    return measure


def model_runner(model: nn.Module, settings: ProfileSettings) -> Callable[[], object]:
    """One forward pass of a standalone model on the settings' input shape, as a zero-arg call."""
    dev = check_device(settings.device)
    model = model.to(dev).eval()
    ids = example_inputs(model, settings.batch_size, settings.seq_len, dev)
    if settings.backend == "onnxruntime":
        return onnx_runner(model, ids, settings.threads, dev)
    return lambda: model(input_ids=ids)


def measure_architectures(
    supernet: Any,
    archs: Sequence[Architecture],
    settings: ProfileSettings,
    measure: MeasureMany | None = None,
) -> list[LatencyMeasurement]:
    """Latency of each architecture's extracted model, ``settings.chunk`` models in memory at once."""
    from elastic_lm.progress import Progress

    measure = measure or default_measure(settings)
    out: list[LatencyMeasurement] = []
    with Progress(len(archs), "profile", unit="model") as bar:
        for start in range(0, len(archs), settings.chunk):
            chunk = archs[start : start + settings.chunk]
            runners = [model_runner(supernet.extract(a), settings) for a in chunk]
            out.extend(measure(runners))
            del runners
            bar.set(len(out))
    return out


def params_of(config: Any, arch: Architecture) -> float:
    """Parameter count used to stratify samples by size (a module-level function: hashable)."""
    return float(count_params(config, arch))


def sample_architectures(space: SearchSpace, config: Any, n: int, rng: random.Random) -> list[Architecture]:
    """``n`` distinct members: the smallest, the largest, then members stratified by parameter count."""
    if n < 2:
        raise UserError(f"samples={n} is too few; profile at least 2 sub-networks (smallest and largest)")
    archs: dict[str, Architecture] = {}
    for arch in (space.smallest(), space.largest()):
        archs.setdefault(arch.key(), arch)
    size_fn = functools.partial(params_of, config)
    tries = 0
    while len(archs) < n and tries < 50 * n:
        arch = space.sample_stratified(rng, size_fn, n_bins=min(10, max(2, n // 4)))
        archs.setdefault(arch.key(), arch)
        tries += 1
    return list(archs.values())


def profile_subnetworks(
    supernet: Any,
    space: SearchSpace,
    n: int,
    rng: random.Random,
    settings: ProfileSettings,
    measure: MeasureMany | None = None,
) -> list[ProfileRecord]:
    """Sample ``n`` sub-networks (stratified by size, extremes included), extract and time each."""
    archs = sample_architectures(space, supernet.config, n, rng)
    return records_for(supernet, archs, settings, measure)


def records_for(
    supernet: Any,
    archs: Sequence[Architecture],
    settings: ProfileSettings,
    measure: MeasureMany | None = None,
) -> list[ProfileRecord]:
    """Measured records of given architectures (e.g. a Pareto set)."""
    config = supernet.config
    measured = measure_architectures(supernet, archs, settings, measure)
    return [
        ProfileRecord(
            architecture=a,
            latency_ms=m.quantile_ms(settings.quantile),
            iqr_ms=m.iqr_ms,
            params=count_params(config, a),
            flops=count_flops(config, a, settings.seq_len) * settings.batch_size,
        )
        for a, m in zip(archs, measured, strict=True)
    ]
