"""Peak memory of one forward pass of a standalone model (exact on CUDA, a profiler estimate on CPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from elastic_lm.metrics.timing import (
    check_device,
    example_inputs,
    fixed_threads,
    refuse_supernet,
)


@dataclass(frozen=True)
class MemoryMeasurement:
    """Peak memory of one forward pass in MiB, and how it was obtained (exact or an estimate)."""

    peak_memory_mb: float
    method: str


def measure_peak_memory_mb(
    model: nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    device: str = "cpu",
    threads: int | None = None,
) -> MemoryMeasurement:
    """Peak memory of one forward pass.

    On CUDA this is exact: ``torch.cuda.max_memory_allocated`` (weights + activations). On CPU it is
    an estimate: parameter and buffer bytes plus the peak of the running sum of memory that
    ``torch.profiler`` attributes to each operator (net per operator, so a transient peak inside one
    operator is missed, and allocator overhead is not counted).
    """
    refuse_supernet(model)
    dev = check_device(device)
    model = model.to(dev).eval()
    ids = example_inputs(model, batch_size, seq_len, dev)
    with fixed_threads(threads), torch.inference_mode():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            model(input_ids=ids)
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev)
            return MemoryMeasurement(peak / 2**20, "cuda max_memory_allocated (exact)")
        from torch.profiler import ProfilerActivity, profile

        model(input_ids=ids)  # warm-up, so lazy initialisation is not counted
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(input_ids=ids)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    running = peak_act = 0
    for event in events:
        memory_event = event.name == "[memory]"
        delta = event.cpu_memory_usage if memory_event else event.self_cpu_memory_usage
        running += delta
        peak_act = max(peak_act, running)
    static = sum(p.numel() * p.element_size() for p in model.parameters())
    static += sum(b.numel() * b.element_size() for b in model.buffers())
    return MemoryMeasurement(
        (static + peak_act) / 2**20,
        "estimate: parameter + buffer bytes + peak of torch.profiler's per-operator allocations",
    )


__all__ = ["MemoryMeasurement", "measure_peak_memory_mb"]
