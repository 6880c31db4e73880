"""Settings of a profiling run and the records it produces (plain JSON both ways)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.errors import UserError
from elastic_lm.metrics.latency import BACKENDS
from elastic_lm.metrics.timing import check_positive

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}

# A latency is never zero or negative, but a linear fit extrapolated to an architecture smaller than
# any it saw can say so; predictors report at least this, so search and constraints stay meaningful.
MIN_PREDICTED_MS = 1e-3


def positive_ms(predicted_ms: float) -> float:
    """Clamp a predicted latency to :data:`MIN_PREDICTED_MS` (a fit can extrapolate below zero)."""
    return max(float(predicted_ms), MIN_PREDICTED_MS)


@dataclass(frozen=True)
class ProfileSettings:
    """What one latency number means: input shape, device, threads, backend, and how it was timed.

    ``threads=1`` is the default because one pinned thread is the least disturbed by other processes
    on a shared CPU; profile with the thread count you will deploy with.
    """

    batch_size: int = 1
    seq_len: int = 128
    device: str = "cpu"
    threads: int | None = 1
    backend: str = "torch"
    warmup: int = 3
    repeats: int = 15
    chunk: int = 8  # models held in memory at once while timing round-robin
    quantile: float = 0.5  # which quantile of the samples is "the" latency (0.5: median)
    # "wall": time.perf_counter (the latency a user sees). "thread": time.thread_time, the CPU time of
    # the timing thread; with threads=1 on a CPU it leaves out the time the OS gave to other processes,
    # so it is far steadier on a busy shared machine (it still counts cache and memory contention).
    clock: str = "wall"

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "repeats", "chunk"):
            check_positive(name, getattr(self, name))
        check_positive("warmup", self.warmup, minimum=0)
        if not 0.0 <= self.quantile <= 1.0:
            raise UserError(
                f"quantile={self.quantile!r} is not allowed; use a number in [0, 1] (0.5 = median)"
            )
        if self.threads is not None:
            check_positive("threads", self.threads)
        if self.clock not in CLOCKS:
            raise UserError(f"clock={self.clock!r} is not supported; use one of {', '.join(CLOCKS)}")
        if self.clock == "thread" and (self.threads != 1 or self.device != "cpu" or self.backend != "torch"):
            raise UserError(
                "clock='thread' needs threads=1, device='cpu' and backend='torch' "
                f"(got threads={self.threads}, device={self.device!r}, backend={self.backend!r}); "
                "use clock='wall' otherwise"
            )
        if self.backend not in BACKENDS:
            raise UserError(f"backend={self.backend!r} is not supported; use one of {', '.join(BACKENDS)}")

    @classmethod
    def from_attributes(cls, source: Any) -> ProfileSettings:
        """Settings from any object carrying some of the fields (CLI arguments, the config section)."""
        names = [f.name for f in fields(cls)]
        return cls(**{n: getattr(source, n) for n in names if hasattr(source, n)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileSettings:
        return cls(**data)


@dataclass(frozen=True)
class ProfileRecord:
    """One measured sub-network: the extracted model's median latency, its noise, and its size."""

    architecture: Architecture
    latency_ms: float
    iqr_ms: float
    params: int
    flops: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["architecture"] = self.architecture.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRecord:
        return cls(
            architecture=Architecture.from_dict(data["architecture"]),
            latency_ms=float(data["latency_ms"]),
            iqr_ms=float(data["iqr_ms"]),
            params=int(data["params"]),
            flops=int(data["flops"]),
        )
