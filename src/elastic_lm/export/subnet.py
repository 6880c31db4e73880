"""``export_subnetwork``: one chosen sub-network -> a normal, verified, documented model folder.

The folder holds what ``from_pretrained`` reads (``config.json``, ``model.safetensors``, and for causal LMs
``generation_config.json`` with the source model's generation defaults), the tokenizer when given,
``architecture.json``, ``export.json`` (what this module records, machine-readable), the model card
``README.md`` and, on request, ``model.onnx``. It is written into a staging folder and renamed into place
(``io.atomic_directory``), so a failed export never leaves half a model behind.

Before anything is written the exported model is run against the super-network with the architecture
selected; a difference above ``atol`` (times the largest output where that exceeds 1: float32
round-off grows with it) is a bug and raises instead of shipping a wrong model.
"""

from __future__ import annotations

import copy
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from elastic_lm import __version__
from elastic_lm.architecture import Architecture
from elastic_lm.export.card import render_card
from elastic_lm.export.onnx import (
    ExportVerificationError,
    _masked_diff,
    export_onnx,
    main_output,
    sample_inputs,
)
from elastic_lm.export.remote import add_remote_code
from elastic_lm.export.stock import stock_fit, task_of, to_stock
from elastic_lm.io import atomic_directory, atomic_write_json, atomic_write_text
from elastic_lm.metrics.size import count_flops, count_params
from elastic_lm.model import ElasticPreTrainedModel

FORMATS: tuple[str, ...] = ("stock", "elastic-lm")


@dataclass(frozen=True)
class ExportedModel:
    """What was written and what it is; ``record()`` is ``export.json``."""

    path: Path
    name: str
    format: str  # "stock" (plain transformers class) or "elastic-lm" (needs import elastic_lm.model)
    model_class: str
    task: str | None
    architecture: Architecture
    params: int
    params_non_embedding: int
    flops: int
    seq_len: int
    max_abs_diff: float | None
    onnx_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["architecture"] = self.architecture.to_dict()
        out["onnx_path"] = None if self.onnx_path is None else str(self.onnx_path)
        return out


def source_commit() -> str | None:
    """The git commit of the elastic-lm source in use, when it runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def verify_export(
    supernet: ElasticPreTrainedModel, arch: Architecture, exported: torch.nn.Module, *, seq_len: int = 8
) -> float:
    """Max |diff| between ``exported`` and the super-network with ``arch`` selected, on real tokens of a
    padded random batch (fp32 as stored; eval mode for both)."""
    return _compare(supernet, arch, exported, seq_len)[0]


def _compare(
    supernet: ElasticPreTrainedModel, arch: Architecture, exported: torch.nn.Module, seq_len: int = 8
) -> tuple[float, float]:
    """:func:`verify_export`'s max |diff| and the largest |output| of the super-network."""
    c = supernet.config
    limit = c.max_position_embeddings - c.position_offset - 1
    ids, mask = sample_inputs(c.vocab_size, 2, max(2, min(seq_len, limit)), seed=7, avoid=c.pad_token_id)
    was_training, exported_training = supernet.training, exported.training
    supernet.eval()
    exported.eval()
    try:
        with torch.inference_mode(), supernet.using(arch):
            expected = main_output(supernet(input_ids=ids, attention_mask=mask))
            got = main_output(exported(input_ids=ids, attention_mask=mask))
    finally:
        supernet.train(was_training)
        exported.train(exported_training)
    return _masked_diff(got, expected, mask), _masked_diff(expected, torch.zeros_like(expected), mask)


def export_subnetwork(
    supernet: ElasticPreTrainedModel,
    arch: Architecture,
    out_dir: str | Path,
    *,
    tokenizer: Any = None,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    onnx: bool = False,
    prefer_stock: bool = True,
    seq_len: int = 128,
    atol: float = 1e-5,
) -> ExportedModel:
    """Extract ``arch`` from ``supernet`` and write it to ``out_dir`` as a standalone model folder.

    ``prefer_stock`` saves uniform BERT / RoBERTa / GPT-2 / Llama sub-networks as the stock transformers
    class (loadable without elastic-lm); every other shape is saved as elastic-lm's own class. ``seq_len``
    is the sequence length the card's FLOPs (and the ONNX trace) use. ``provenance`` (super-network,
    run_dir, strategy, trial, source_model, license, ...) and ``metrics`` go into the card and
    ``export.json``. Raises ``ArchitectureError`` when ``arch`` does not fit the super-network.
    """
    out_dir = Path(out_dir)
    sub = supernet.extract(arch).eval()
    fit = stock_fit(sub)
    model: PreTrainedModel = sub
    if prefer_stock and fit.fits:
        stock = to_stock(sub)
        assert stock is not None
        model = stock.eval()
    fmt = "stock" if model is not sub else "elastic-lm"
    if model.can_generate() and supernet.can_generate():  # the source's generation defaults travel along
        model.generation_config = copy.deepcopy(supernet.generation_config)
    diff, scale = _compare(supernet, arch, model)
    # float32 round-off grows with the outputs: a classifier's logits of 10 differed by 1.8e-5
    if not diff <= atol * max(1.0, scale):
        raise ExportVerificationError(
            f"exported {type(model).__name__} differs from the super-network by {diff:.3g} "
            f"(> {atol} x max(1, largest |output| {scale:.3g}))"
        )
    config = supernet.config
    prov = {
        "elastic_lm_version": __version__,
        "commit": source_commit(),
        "exported_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **(provenance or {}),
    }
    result = ExportedModel(
        path=out_dir,
        name=out_dir.name,
        format=fmt,
        model_class=type(model).__name__,
        task=task_of(sub),
        architecture=arch,
        params=count_params(config, arch),
        params_non_embedding=count_params(config, arch, include_embeddings=False),
        flops=count_flops(config, arch, seq_len),
        seq_len=seq_len,
        max_abs_diff=diff,
        metrics=dict(metrics or {}),
        provenance=prov,
    )
    onnx_info: dict[str, Any] | None = None
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        remote = add_remote_code(staging) if fmt == "elastic-lm" else []
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        atomic_write_text(staging / "architecture.json", arch.to_json(indent=1) + "\n")
        if onnx:
            done = export_onnx(model, staging / "model.onnx", seq_len)
            onnx_info = {"file": "model.onnx", "opset": done.opset, "max_abs_diff": done.max_abs_diff}
            result = replace(result, onnx_path=out_dir / "model.onnx")
        record = result.record()
        record.update(
            stock_reason=fit.reason,
            tokenizer=tokenizer is not None,
            generation_config=(staging / "generation_config.json").is_file(),
            onnx=onnx_info,
            remote_code=remote,
        )
        atomic_write_json(staging / "export.json", record)
        atomic_write_text(staging / "README.md", render_card(record))
    return result


__all__ = ["FORMATS", "ExportedModel", "export_subnetwork", "source_commit", "verify_export"]
