"""The comparisons healed with the same budget as the searched members.

- **layer dropping** (ShortGPT): remove the layers with the lowest block importance (or removal
  perplexity) until the non-embedding parameters fit the target; widths untouched;
- **uniform width by magnitude**: every layer keeps the same number of FFN units, chosen by the
  weight magnitude of each unit (no activations), as many as fit the target.

Both start from the unsorted source model (the searched members start from the importance-sorted one).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import torch

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.importance.decoder import decoder_blocks, keep_layers, permute_ffn
from elastic_lm.metrics.size import count_params

FFN_STEPS = 24  # uniform widths tried: multiples of 1/24 of the FFN (64 units on SmolLM2's 1536)


def nonembedding(model: Any, arch: Architecture) -> int:
    """Non-embedding parameters of ``arch`` in the elastic ``model``."""
    return int(count_params(model.config, arch, include_embeddings=False))


def layer_drop(model: Any, layer_scores: torch.Tensor, target: float) -> Architecture:
    """The most layers (highest scores kept) whose non-embedding parameters are at most ``target``."""
    full = model.backbone.largest()
    n = sum(not la.is_identity for la in full.layers)
    for keep in range(n, 0, -1):
        arch = keep_layers(full, layer_scores, keep)
        if nonembedding(model, arch) <= target:
            return arch
    raise ConfigError(f"heal: no layer subset fits {target:.0f} non-embedding parameters")


def magnitude_ffn_order(model: Any) -> None:
    """Sort every layer's FFN units by weight magnitude (product of the unit's row/column norms)."""
    model.reset()
    with torch.no_grad():
        for block in decoder_blocks(model).values():
            ffn = block.ffn
            score = ffn.up.weight.norm(dim=1) * ffn.down.weight.norm(dim=0)
            if ffn.gate is not None:
                score = score * ffn.gate.weight.norm(dim=1)
            permute_ffn(ffn, score.argsort(descending=True, stable=True))


def uniform_width(model: Any, target: float) -> Architecture:
    """Every layer with the same FFN width (steps of 1/24 of it): the widest that fits ``target``."""
    full = model.backbone.largest()
    widest = max(la.ffn for la in full.layers if not la.is_identity)
    step = max(1, widest // FFN_STEPS)
    for width in range(widest - widest % step, 0, -step):
        layers = tuple(la if la.is_identity else replace(la, ffn=width) for la in full.layers)
        arch = Architecture(hidden=full.hidden, layers=layers)
        if nonembedding(model, arch) <= target:
            return arch
    raise ConfigError(f"heal: no uniform FFN width fits {target:.0f} non-embedding parameters")


def baseline_members(
    source: Any, layer_scores: torch.Tensor, target: float
) -> dict[str, tuple[Any, Architecture]]:
    """``{name: (elastic model, architecture)}`` for both baselines at ``target`` parameters."""
    magnitude = copy.deepcopy(source)
    magnitude_ffn_order(magnitude)
    return {
        "layer-drop": (source, layer_drop(source, layer_scores, target)),
        "uniform-width": (magnitude, uniform_width(magnitude, target)),
    }


__all__ = ["baseline_members", "layer_drop", "magnitude_ffn_order", "nonembedding", "uniform_width"]
