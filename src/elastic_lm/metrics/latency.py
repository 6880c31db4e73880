"""Wall-clock latency and peak memory of a standalone model on this machine.

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

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from elastic_lm.errors import ArchitectureError, UserError

Clock = Callable[[], float]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
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


@dataclass(frozen=True)
class DecodeMeasurement:
    """Prefill of the prompt and the per-token cost of generating after it.

    ``kv_cache`` says whether decoding reused cached keys/values (``past_key_values``). When the model
    has no KV cache, ``decode`` is the time of one forward pass over the whole prefix for each new
    token (what generation costs without a cache) and ``note`` says so.
    """

    prefill: LatencyMeasurement
    decode: LatencyMeasurement
    kv_cache: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefill": self.prefill.to_dict(),
            "decode_per_token": self.decode.to_dict(),
            "kv_cache": self.kv_cache,
            "note": self.note,
        }


@dataclass(frozen=True)
class MemoryMeasurement:
    """Peak memory of one forward pass in MiB, and how it was obtained (exact or an estimate)."""

    peak_memory_mb: float
    method: str


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


def _settings(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items()}


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
    settings = _settings(
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


class _LogitsOnly(nn.Module):
    """ONNX export wants tensors out; HF models return a ModelOutput."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids)
        return out[0] if not isinstance(out, torch.Tensor) else out


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a UserError saying how to install it."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise UserError(
            "backend='onnxruntime' needs onnx and onnxruntime; install them with "
            "pip install 'elastic-lm[onnx]' (or use --backend torch)"
        ) from exc
    return onnxruntime


def onnx_runner(
    model: nn.Module, ids: torch.Tensor, threads: int | None, device: str | torch.device = "cpu"
) -> Callable[[], object]:
    """Export ``model`` to a temporary ONNX file and return a zero-argument ONNX Runtime call."""
    ort = require_onnxruntime()
    import warnings

    dev = torch.device(device)
    with tempfile.TemporaryDirectory(prefix="elastic-lm-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LogitsOnly(model).eval(),
                (ids,),
                str(path),
                input_names=["input_ids"],
                output_names=["logits"],
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError(
                    "backend='onnxruntime' on device='cuda' needs onnxruntime-gpu; "
                    "install it or use --device cpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(path), options, providers=providers)
    feed = {"input_ids": ids.cpu().numpy()}
    return lambda: session.run(None, feed)


def _measure_onnx(
    model: nn.Module,
    ids: torch.Tensor,
    threads: int | None,
    warmup: int,
    repeats: int,
    dev: torch.device,
    clock: Clock,
    settings: dict[str, Any],
) -> LatencyMeasurement:
    run = onnx_runner(model, ids, threads, dev)
    return time_callable(run, warmup=warmup, repeats=repeats, device=dev, clock=clock, settings=settings)


def _has_cache(out: Any) -> bool:
    return getattr(out, "past_key_values", None) is not None


def measure_decode_ms(
    model: nn.Module,
    *,
    batch_size: int,
    prompt_len: int,
    new_tokens: int = 16,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 2,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> DecodeMeasurement:
    """Prefill latency of a prompt and per-token decode latency of a causal LM.

    With a KV cache (stock Hugging Face Llama / GPT-2: ``use_cache=True``) each decode step feeds one
    token and the cache; without one, each step reruns the whole prefix, and ``note`` says so. Each
    repeat starts a fresh prefill because caches grow in place.
    """
    refuse_supernet(model)
    check_positive("new_tokens", new_tokens)
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, minimum=0)
    dev = check_device(device)
    model = model.to(dev).eval()
    total = prompt_len + new_tokens
    ids = example_inputs(model, batch_size, total, dev)
    prompt, rest = ids[:, :prompt_len], ids[:, prompt_len:]
    prefill_samples: list[float] = []
    decode_samples: list[float] = []

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        _sync(dev)
        start = clock()
        out = fn()
        _sync(dev)
        return out, (clock() - start) * 1000.0

    with fixed_threads(threads), torch.inference_mode():
        kv_cache = _has_cache(model(input_ids=prompt[:, :1], use_cache=True))
        for run in range(warmup + repeats):
            out, ms = timed(lambda: model(input_ids=prompt, use_cache=True))
            steps: list[float] = []
            past = getattr(out, "past_key_values", None) if kv_cache else None
            for t in range(new_tokens):
                if kv_cache:
                    token = rest[:, t : t + 1]
                    out, step_ms = timed(
                        lambda token=token, past=past: model(
                            input_ids=token, past_key_values=past, use_cache=True
                        )
                    )
                    past = out.past_key_values
                else:
                    prefix = ids[:, : prompt_len + t + 1]
                    out, step_ms = timed(lambda prefix=prefix: model(input_ids=prefix))
                steps.append(step_ms)
            if run >= warmup:
                prefill_samples.append(ms)
                decode_samples.extend(steps)
    settings = _settings(
        batch_size=batch_size,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        device=str(dev),
        threads=threads if threads is not None else torch.get_num_threads(),
        warmup=warmup,
        repeats=repeats,
        backend="torch",
    )
    note = (
        "decode reuses the KV cache (past_key_values): one token per step"
        if kv_cache
        else "model has no KV cache: each decode step reruns the whole prefix "
        "(an upper bound on cached decoding)"
    )
    return DecodeMeasurement(
        prefill=summarise(prefill_samples, settings),
        decode=summarise(decode_samples, settings),
        kv_cache=kv_cache,
        note=note,
    )


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


__all__ = [
    "BACKENDS",
    "DecodeMeasurement",
    "LatencyMeasurement",
    "MemoryMeasurement",
    "example_inputs",
    "fixed_threads",
    "measure_decode_ms",
    "measure_latency_ms",
    "measure_peak_memory_mb",
    "onnx_runner",
    "refuse_supernet",
    "summarise",
    "time_callable",
    "time_interleaved",
]
