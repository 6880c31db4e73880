"""How a metric is shown to a person: a readable name, a unit, and a scale (parameters in millions).

One table, so plots, tables and the CSV agree on what "params" means on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.report.inputs import Objective


@dataclass(frozen=True)
class Display:
    name: str  # e.g. "parameters"
    label: str  # e.g. "parameters (millions)"
    scale: float  # multiply the raw value by this before showing it


# name -> (readable name, default unit, scale, unit after scaling or None to keep the unit)
_KNOWN: dict[str, tuple[str, str, float, str | None]] = {
    "params": ("parameters", "count", 1e-6, "millions"),
    "params_nonembedding": ("non-embedding parameters", "count", 1e-6, "millions"),
    "flops": ("FLOPs", "count", 1e-9, "billions"),
    "val_loss": ("validation loss", "nats/token", 1.0, None),
    "loss": ("training loss", "nats/token", 1.0, None),
    "latency_ms": ("latency", "ms", 1.0, None),
    "memory_mb": ("peak memory", "MB", 1.0, None),
    "accuracy": ("accuracy", "", 1.0, None),
    "val_accuracy": ("validation accuracy", "fraction", 1.0, None),
    "val_f1": ("validation F1", "macro", 1.0, None),
    "perplexity": ("perplexity", "", 1.0, None),
}


def display(name: str, unit: str = "") -> Display:
    """Axis label and scale for metric ``name``; ``unit`` (from summary.json) refines the default."""
    readable, default_unit, scale, scaled_unit = _KNOWN.get(name, (name.replace("_", " "), "", 1.0, None))
    shown = scaled_unit if scaled_unit is not None else unit or default_unit
    return Display(readable, f"{readable} ({shown})" if shown else readable, scale)


def objective_display(objective: Objective) -> Display:
    return display(objective.name, objective.unit)


COUNTS = frozenset({"params", "params_nonembedding", "flops"})  # shown as '12.34M', not '12340000'


def format_value(name: str, value: float | None) -> str:
    """A table cell: counts as '12.34M'; other values with 4 decimals so a column lines up."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name in COUNTS:
        for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= factor:
                return f"{value / factor:.2f}{suffix}"
        return f"{value:.0f}"
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}" if 0 < abs(value) < 0.01 else f"{value:.4f}"


def _layer_token(layer: LayerArch) -> str:
    """One layer in a few characters, e.g. '8h/1536', 'conv5', '–' for a dropped layer."""
    heads = len(layer.head_ids) if layer.head_ids is not None else layer.heads
    ffn = len(layer.ffn_ids) if layer.ffn_ids is not None else layer.ffn
    kv = f"({layer.kv_heads}kv)" if layer.kv_heads and layer.kv_heads != heads else ""
    width = f"@{layer.hidden}" if layer.hidden else ""
    if layer.block == "identity":
        return "–"
    if layer.block == "attention":
        return f"attn {heads}h{kv}{width}"
    if layer.block == "ffn":
        return f"ffn {ffn}{width}"
    if layer.block == "sepconv":
        return f"conv{layer.kernel}{width}"
    if layer.block == "mobilebert":
        stack = f"x{layer.ffn_stack}" if layer.ffn_stack else ""
        return f"mb{layer.bottleneck} {heads}h/{ffn}{stack}{width}"
    return f"{heads}h{kv}/{ffn}{width}"


def describe_architecture(architecture: Architecture | None) -> str:
    """'depth 4/6 · hidden 384 · 8h/1536 12h/1536 – …': enough to tell two Pareto members apart."""
    if architecture is None:
        return "–"
    blocks = sorted({layer.block for layer in architecture.layers if not layer.is_identity})
    kind = f" · {'/'.join(blocks)}" if blocks else ""
    layers = " ".join(_layer_token(layer) for layer in architecture.layers)
    depth = f"depth {architecture.depth}/{len(architecture.layers)}"
    return f"{depth} · hidden {architecture.hidden}{kind} · {layers}"
