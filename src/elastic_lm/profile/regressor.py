"""Learned latency predictor: non-negative linear regression on analytic architecture features.

Features are generic: for each block type the number of kept layers (per-call overhead) and its
analytic FLOPs and parameters (compute and weight traffic), the sum over kept layers of every
resolved size field (heads, ffn, bottleneck, ..., width), the global width, and optionally the
lookup table's prediction. Latency is close to a non-negative combination of such costs, so the
coefficients are constrained to be >= 0 (scikit-learn ``LinearRegression(positive=True)`` on
standardised features): that keeps extrapolation monotone and resists over-fitting a few dozen
noisy labels. The fitted state is a handful of numbers saved as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import UserError
from elastic_lm.profile.lookup import LookupTablePredictor, config_from_dict, config_to_dict
from elastic_lm.profile.records import ProfileRecord, positive_ms

SIZE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LayerArch) if f.type in ("int", int))


def _kept_only(arch: Architecture, keep: Sequence[bool]) -> Architecture:
    layers = tuple(la if k else LayerArch("identity") for la, k in zip(arch.layers, keep, strict=True))
    return Architecture(hidden=arch.hidden, layers=layers)


def architecture_features(config: Any, arch: Architecture, seq_len: int) -> dict[str, float]:
    """Named analytic features of ``arch`` in the super-network ``config`` (no timing involved)."""
    from elastic_lm.metrics.size import count_flops, count_params
    from elastic_lm.model.shapes import resolve

    shapes = resolve(config, arch)
    feats: dict[str, float] = {"hidden": float(arch.hidden), "depth": float(arch.depth)}
    empty = _kept_only(arch, [False] * len(arch.layers))
    base_flops = count_flops(config, empty, seq_len)
    base_params = count_params(config, empty)
    feats["flops.embeddings_head"] = float(base_flops)
    blocks = sorted({b for cands in config.block_candidates for b in cands if b != "identity"})
    for block in blocks:
        keep = [s is not None and s.block == block for s in shapes]
        sub = _kept_only(arch, keep)
        feats[f"layers.{block}"] = float(sum(keep))
        feats[f"flops.{block}"] = float(count_flops(config, sub, seq_len) - base_flops)
        feats[f"params.{block}"] = float(count_params(config, sub) - base_params)
    for name in SIZE_FIELDS:
        feats[f"sum.{name}"] = float(sum(getattr(s.to_layer_arch(), name) for s in shapes if s is not None))
    return feats


FEATURE_GROUPS: tuple[str, ...] = ("hidden", "depth", "flops", "layers", "params", "sum", "lookup_ms")


class RegressorPredictor:
    """``predict_ms(arch) = intercept + sum_k coef_k * (feature_k - mean_k) / scale_k`` with coef >= 0."""

    name = "regressor"

    def __init__(
        self,
        config: Any,
        seq_len: int,
        lookup: LookupTablePredictor | None = None,
        state: dict[str, Any] | None = None,
        groups: tuple[str, ...] = FEATURE_GROUPS,
    ) -> None:
        unknown = set(groups) - set(FEATURE_GROUPS)
        if unknown:
            raise UserError(f"feature groups {sorted(unknown)} are unknown; use some of {FEATURE_GROUPS}")
        self.config = config
        self.seq_len = int(seq_len)
        self.lookup = lookup
        self.state = state
        self.groups = tuple(groups)

    def features(self, arch: Architecture) -> dict[str, float]:
        """The features of the chosen groups (a name's group is the part before its first dot)."""
        feats = architecture_features(self.config, arch, self.seq_len)
        if self.lookup is not None:
            feats["lookup_ms"] = self.lookup.raw_ms(arch)
        return {k: v for k, v in feats.items() if k.split(".")[0] in self.groups}

    def fit(self, records: Sequence[ProfileRecord]) -> RegressorPredictor:
        """Fit the non-negative linear model to measured whole-model latencies."""
        if len(records) < 2:
            raise UserError(f"{len(records)} profile record(s) cannot fit the regressor; profile at least 2")
        from sklearn.linear_model import LinearRegression

        rows = [self.features(r.architecture) for r in records]
        names = sorted(rows[0])
        X = np.array([[row[n] for n in names] for row in rows], dtype=np.float64)
        y = np.array([r.latency_ms for r in records], dtype=np.float64)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        model = LinearRegression(positive=True).fit((X - mean) / scale, y)
        self.state = {
            "features": names,
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "coef": [float(c) for c in model.coef_],
            "intercept": float(model.intercept_),
        }
        return self

    def predict_ms(self, arch: Architecture) -> float:
        if self.state is None:
            raise UserError("the regressor is not fitted; call fit(records) first")
        feats = self.features(arch)
        s = self.state
        x = (np.array([feats[n] for n in s["features"]]) - np.array(s["mean"])) / np.array(s["scale"])
        return positive_ms(s["intercept"] + x @ np.array(s["coef"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "config": config_to_dict(self.config),
            "seq_len": self.seq_len,
            "lookup": None if self.lookup is None else self.lookup.to_dict(),
            "groups": list(self.groups),
            "state": self.state,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegressorPredictor:
        lookup = data.get("lookup")
        return cls(
            config_from_dict(data["config"]),
            data["seq_len"],
            None if lookup is None else LookupTablePredictor.from_dict(lookup),
            data["state"],
            tuple(data.get("groups", FEATURE_GROUPS)),
        )
