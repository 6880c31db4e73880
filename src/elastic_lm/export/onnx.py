"""ONNX export of an exported model, checked with onnxruntime against PyTorch before it is kept.

The graph takes ``input_ids`` and ``attention_mask`` (batch and sequence axes dynamic) and returns the
model's main output (``logits``, or ``last_hidden_state`` for a bare backbone). It is traced with an input
that has padding, so the masked attention path is what the graph holds (an all-ones mask is a special case
of it), and verified on a *different* batch size and length than the trace, so the dynamic axes are real.
Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elastic_lm.errors import UserError


class ExportVerificationError(RuntimeError):
    """An exported model does not compute what its source computes (a bug of ours, never the user's)."""


def require_onnx() -> None:
    """A one-line UserError naming the extra to install when onnx / onnxruntime are missing."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"ONNX export needs {' and '.join(missing)}; install them with pip install 'elastic-lm[onnx]'"
        )


class _MainOutput(nn.Module):
    """Plain-tensor signature for tracing: (input_ids, attention_mask) -> main output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        config = getattr(model, "config", None)
        # The TorchScript exporter cannot convert SDPA with enable_gqa; elastic-lm's attention has the
        # same arithmetic written out (its output_attentions path), which exports everywhere.
        self.eager = getattr(config, "model_type", "") == "elastic-lm" and (
            config.num_key_value_heads != config.num_attention_heads  # type: ignore[union-attr]
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"output_attentions": True} if self.eager else {}
        return main_output(self.model(input_ids=input_ids, attention_mask=attention_mask, **extra))


def main_output(out: object) -> torch.Tensor:
    """``logits`` of a task model, ``last_hidden_state`` of a backbone."""
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.last_hidden_state  # type: ignore[attr-defined]


def output_name(out: object) -> str:
    """The graph output's name as transformers' ONNX exports name it: ``logits`` or ``last_hidden_state``."""
    return "logits" if getattr(out, "logits", None) is not None else "last_hidden_state"


def sample_inputs(
    vocab: int, batch: int, seq_len: int, *, seed: int = 0, avoid: int | None = None, pad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (never ``avoid``, the padding id) and a mask whose last row is partly padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=g)
    if avoid is not None:
        ids = torch.where(ids == avoid, (ids + 1) % vocab, ids)
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    if pad and seq_len > 2:
        mask[-1, seq_len - max(1, seq_len // 4) :] = 0
    return ids, mask


@dataclass(frozen=True)
class OnnxExport:
    """Where the graph went and how far onnxruntime's outputs were from PyTorch's."""

    path: Path
    max_abs_diff: float
    opset: int


def export_onnx(
    model: nn.Module,
    out_path: str | Path,
    seq_len: int = 128,
    *,
    batch_size: int = 2,
    opset: int = 17,
    atol: float = 1e-4,
) -> OnnxExport:
    """Write ``model`` as ONNX to ``out_path`` and check it with onnxruntime (max |diff| <= ``atol``).

    ``seq_len`` is the traced length; the graph accepts any batch size and length. Raises
    :class:`ExportVerificationError` when the runtime disagrees with PyTorch.
    """
    require_onnx()
    import onnxruntime as ort

    out_path = Path(out_path)
    config: Any = model.config
    vocab, pad = int(config.vocab_size), getattr(config, "pad_token_id", None)
    limit = int(getattr(config, "max_position_embeddings", 0) or 0) - 2
    seq_len = min(seq_len, limit) if limit > 2 else seq_len
    wrapper = _MainOutput(model).eval()
    ids, mask = sample_inputs(vocab, batch_size, seq_len, avoid=pad)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        name = output_name(model(input_ids=ids[:1, :2], attention_mask=mask[:1, :2]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(out_path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=[name],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, name: axes},
            opset_version=opset,
        )
    check_len = max(3, seq_len // 2 + 1)
    ids, mask = sample_inputs(vocab, batch_size + 1, check_len, seed=1, avoid=pad)
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    # a model that never reads the mask (no attention, no convolution) has no such graph input
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    with torch.no_grad():
        expected = wrapper(ids, mask)
    diff = _masked_diff(torch.from_numpy(got), expected, mask)
    if not diff <= atol:
        raise ExportVerificationError(
            f"onnxruntime output differs from PyTorch by {diff:.3g} (> {atol}) for {out_path}"
        )
    return OnnxExport(path=out_path, max_abs_diff=diff, opset=opset)


def _masked_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Max |a - b| over real tokens (padded positions are arbitrary in every implementation)."""
    if a.dim() == 3 and a.shape[:2] == mask.shape:
        a, b = a[mask.bool()], b[mask.bool()]
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


__all__ = [
    "ExportVerificationError",
    "OnnxExport",
    "export_onnx",
    "main_output",
    "require_onnx",
    "sample_inputs",
]
