"""Latency of a model exported to ONNX and run by onnxruntime: the optional backend of
:func:`elastic_lm.metrics.latency.measure_latency_ms`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elastic_lm.errors import UserError
from elastic_lm.metrics.timing import (
    Clock,
    LatencyMeasurement,
    time_callable,
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


__all__ = ["onnx_runner", "require_onnxruntime"]
