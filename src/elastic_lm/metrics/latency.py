"""Wall-clock latency of a standalone model on this machine: :func:`measure_latency_ms`.

The measurement rules live in :mod:`~elastic_lm.metrics.timing`; decode latency, peak memory and
the ONNX backend in their own modules (re-exported here).

Why these rules:

- Measure the **extracted** model (``supernet.extract(arch)``), never the super-network with a
  sub-network selected: the sliced super-network runs on narrowed views of the full weights
  (non-contiguous strides, full-size embedding tables and extra bookkeeping), so its time is neither
  what the deployed model costs nor monotone in the sub-network's size. An elastic super-network
  passed here is refused with an :class:`~elastic_lm.errors.ArchitectureError`.
- Wall clock (``time.perf_counter``) around the whole forward pass, CUDA synchronised before each
  clock read; summed profiler times miss framework overhead and overlap.
- Warm-up first (allocator, oneDNN/cuBLAS kernel selection, lazy init), ``torch.inference_mode``,
  a fixed thread count restored afterwards, and the median of many repeats with the IQR, because
  a shared CPU has outliers that a mean would follow.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from elastic_lm.errors import UserError
from elastic_lm.metrics.decode import DecodeMeasurement, measure_decode_ms, measure_decode_round_robin
from elastic_lm.metrics.memory import MemoryMeasurement, measure_peak_memory_mb
from elastic_lm.metrics.onnx_latency import _measure_onnx, onnx_runner, require_onnxruntime
from elastic_lm.metrics.timing import (
    DEVICES,
    Clock,
    LatencyMeasurement,
    check_device,
    check_positive,
    example_inputs,
    fixed_threads,
    refuse_supernet,
    summarise,
    time_callable,
    time_interleaved,
)

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")


def measure_latency_ms(
    model: nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 20,
    backend: str = "torch",
    clock: Clock = time.perf_counter,
) -> LatencyMeasurement:
    """Latency of one forward pass over ``batch_size`` x ``seq_len`` random tokens.

    ``backend="onnxruntime"`` exports the model to a temporary ONNX file and times an ONNX Runtime
    session with ``threads`` intra-op threads (CPU, or CUDA when that provider is installed).
    """
    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r} is not supported; use one of {', '.join(BACKENDS)}")
    refuse_supernet(model)
    dev = check_device(device)
    ids = example_inputs(model, batch_size, seq_len, dev)
    settings = dict(
        batch_size=batch_size,
        seq_len=seq_len,
        device=str(dev),
        threads=threads if threads is not None else torch.get_num_threads(),
        warmup=warmup,
        repeats=repeats,
        backend=backend,
    )
    model = model.to(dev).eval()
    if backend == "onnxruntime":
        return _measure_onnx(model, ids, threads, warmup, repeats, dev, clock, settings)
    with fixed_threads(threads), torch.inference_mode():
        return time_callable(
            lambda: model(input_ids=ids),
            warmup=warmup,
            repeats=repeats,
            device=dev,
            clock=clock,
            settings=settings,
        )


__all__ = [
    "BACKENDS",
    "DEVICES",
    "Clock",
    "DecodeMeasurement",
    "LatencyMeasurement",
    "MemoryMeasurement",
    "check_device",
    "check_positive",
    "example_inputs",
    "fixed_threads",
    "measure_decode_ms",
    "measure_decode_round_robin",
    "measure_latency_ms",
    "measure_peak_memory_mb",
    "onnx_runner",
    "refuse_supernet",
    "require_onnxruntime",
    "summarise",
    "time_callable",
    "time_interleaved",
]
