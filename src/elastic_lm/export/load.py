"""An exported model folder back in memory, its measured latency, its card updated with numbers.

Shared by the pruning recipe, its baselines and vocabulary pruning: all three measure exported
folders (never the sliced super-network), so they must load and time them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from elastic_lm.io import atomic_write_json, atomic_write_text


def load_exported(folder: Path) -> torch.nn.Module:
    """A classifier export (stock or elastic-lm class) in eval mode."""
    from transformers import AutoModelForSequenceClassification

    import elastic_lm.model  # noqa: F401  (registers the elastic-lm class for non-uniform exports)

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def measure_ms(model: torch.nn.Module, p: Any) -> float:
    """Median CPU latency of a standalone model (never the sliced super-network); ``p`` is the
    config's ``search`` section (``latency_batch_size``, ``latency_seq_len``, ...)."""
    from elastic_lm.metrics.latency import measure_latency_ms

    m = measure_latency_ms(
        model.eval().cpu(),
        batch_size=p.latency_batch_size,
        seq_len=min(p.latency_seq_len, model.config.max_position_embeddings - 2),
        threads=p.latency_threads,
        repeats=p.latency_repeats,
        warmup=2,
    )
    return float(m.median_ms)


def update_card(folder: Path, metrics: dict[str, Any]) -> None:
    """Put the measured numbers into ``export.json`` and the model card."""
    from elastic_lm.export.card import render_card

    record = json.loads((folder / "export.json").read_text())
    record["metrics"] = {**record.get("metrics", {}), **metrics}
    if "params" in metrics:
        record["params"] = int(metrics["params"])
    atomic_write_json(folder / "export.json", record)
    atomic_write_text(folder / "README.md", render_card(record))


__all__ = ["load_exported", "measure_ms", "update_card"]
