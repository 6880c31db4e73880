"""Timing primitives shared by every latency and memory measurement, so all follow one set of rules.

Fixed thread counts restored afterwards, CUDA synchronised before each clock read, warm-up, models
interleaved round by round, median and IQR of many repeats (see :mod:`elastic_lm.metrics.latency`
for why), and the refusal of a sliced super-network.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from elastic_lm.errors import ArchitectureError, UserError

Clock = Callable[[], float]


DEVICES: tuple[str, ...] = ("cpu", "cuda")


@dataclass(frozen=True)
class LatencyMeasurement:
    """Milliseconds per call: median (the number to use), IQR (the noise), every sample, settings."""

    median_ms: float
    iqr_ms: float
    samples_ms: tuple[float, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    def quantile_ms(self, q: float) -> float:
        """The q-quantile of the samples (0.5: the median; lower values shrug off preemption spikes)."""
        if not 0.0 <= q <= 1.0:
            raise UserError(f"quantile={q!r} is not allowed; use a number in [0, 1] (0.5 = median)")
        return float(np.quantile(np.asarray(self.samples_ms), q))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples_ms"] = list(self.samples_ms)
        return out


def summarise(samples_ms: Sequence[float], settings: dict[str, Any] | None = None) -> LatencyMeasurement:
    """Median and interquartile range of timing samples."""
    if not samples_ms:
        raise ValueError("no timing samples")
    ordered = sorted(float(s) for s in samples_ms)
    if len(ordered) >= 2:
        q = statistics.quantiles(ordered, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return LatencyMeasurement(
        median_ms=statistics.median(ordered),
        iqr_ms=iqr,
        samples_ms=tuple(float(s) for s in samples_ms),
        settings=dict(settings or {}),
    )


@contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (``None``: leave as is), then restore the previous count."""
    if threads is None:
        yield
        return
    check_positive("threads", threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_positive(name: str, value: int, minimum: int = 1) -> None:
    """One-line error naming the setting, for counts a user types on the command line."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{name}={value!r} is not allowed; use an integer >= {minimum}")


def check_device(device: str) -> torch.device:
    """The torch device, or a clear error when it is unknown or not available here."""
    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise UserError(f"device={device!r} is not supported; use one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' but no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(
    fn: Callable[[], object],
    *,
    warmup: int = 5,
    repeats: int = 20,
    device: str | torch.device = "cpu",
    clock: Clock = time.perf_counter,
    settings: dict[str, Any] | None = None,
) -> LatencyMeasurement:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls (synchronising CUDA)."""
    check_positive("warmup", warmup, minimum=0)
    check_positive("repeats", repeats)
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(dev)
    samples = []
    for _ in range(repeats):
        start = clock()
        fn()
        _sync(dev)
        samples.append((clock() - start) * 1000.0)
    return summarise(samples, settings)


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    *,
    warmup: int = 5,
    repeats: int = 20,
    device: str | torch.device = "cpu",
    clock: Clock = time.perf_counter,
    settings: dict[str, Any] | None = None,
) -> list[LatencyMeasurement]:
    """Time several callables round-robin: one sample of each per round, ``repeats`` rounds.

    On a shared machine background load comes and goes; interleaving spreads it over every
    candidate instead of penalising whichever ran during a busy spell, so the *ranking* of
    candidates survives noise much better than timing them one after another.
    """
    check_positive("warmup", warmup, minimum=0)
    check_positive("repeats", repeats)
    dev = torch.device(device)
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(dev)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            _sync(dev)
            samples[i].append((clock() - start) * 1000.0)
    return [summarise(s, settings) for s in samples]


def refuse_supernet(model: nn.Module) -> None:
    """Latency of a sliced super-network is not the latency of the sub-network: refuse it."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) == "elastic-lm" and getattr(config, "architecture", 1) is None:
        raise ArchitectureError(
            "model is an elastic super-network; measure the standalone sub-network "
            "supernet.extract(arch) instead (a sliced super-network is slower than the real model)"
        )


def example_inputs(
    model: nn.Module, batch_size: int, seq_len: int, device: torch.device, seed: int = 0
) -> torch.Tensor:
    """Random token ids of shape (batch_size, seq_len), checked against the model's limits."""
    check_positive("batch_size", batch_size)
    check_positive("seq_len", seq_len)
    config = getattr(model, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab < 1:
        raise UserError("model.config.vocab_size is missing; latency needs a token-id model")
    max_pos = getattr(config, "max_position_embeddings", None)
    if getattr(config, "positions", "learned") == "learned" and max_pos and seq_len > max_pos:
        raise UserError(
            f"seq_len={seq_len} exceeds the model's max_position_embeddings={max_pos}; use at most {max_pos}"
        )
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch_size, seq_len), generator=generator).to(device)


__all__ = [
    "DEVICES",
    "Clock",
    "LatencyMeasurement",
    "check_device",
    "check_positive",
    "example_inputs",
    "fixed_threads",
    "refuse_supernet",
    "summarise",
    "time_callable",
    "time_interleaved",
]
