"""A cheap model of decode latency (ms per generated token, KV cache, batch 1) for any decoder member.

Why: a search that trades perplexity against parameters alone cannot see that a generated token costs
a fixed overhead per layer besides the weights it reads; it keeps every layer and cuts widths. Timing
each candidate's export is too slow for a search, so a few members spread over depth and width are
timed here (round-robin, see :func:`elastic_lm.metrics.decode.measure_decode_round_robin`) and a
linear model with non-negative costs is fitted:

    ms = constant + per_layer * layers + per_million * body_params / 1e6 + per_head_million * head / 1e6

``body_params`` are the non-embedding weights of the kept layers (and final norm), ``head`` the LM
head's multiply-accumulates per token (hidden x vocabulary, run even when it is tied to the
embeddings). With non-negative costs the prediction never rises when a layer or a channel is removed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ConfigError, DataError
from elastic_lm.metrics.size import count_params

FEATURES: tuple[str, ...] = ("constant", "layers", "body_millions", "head_millions")


def decode_features(config: Any, arch: Architecture) -> dict[str, float]:
    """The features the cost model reads for ``arch`` of a causal LM with ``config``."""
    head = arch.hidden * config.vocab_size
    body = count_params(config, arch, include_embeddings=False)
    if not getattr(config, "tie_word_embeddings", True):
        body -= head  # an untied head is counted by count_params; it is its own feature here
    return {
        "constant": 1.0,
        "layers": float(sum(not la.is_identity for la in arch.layers)),
        "body_millions": body / 1e6,
        "head_millions": head / 1e6,
    }


@dataclass(frozen=True)
class DecodeCostModel:
    """Milliseconds per generated token as a non-negative combination of :data:`FEATURES`."""

    coefficients: dict[str, float]
    settings: dict[str, Any]
    fit_error: float = 0.0  # mean absolute percentage error on the timed members

    def __post_init__(self) -> None:
        missing = [f for f in FEATURES if f not in self.coefficients]
        if missing:
            raise DataError(f"decode cost model: coefficients miss {missing}; re-run the profile stage")
        if any(v < 0 or math.isnan(v) for v in self.coefficients.values()):
            raise DataError(f"decode cost model: coefficients {self.coefficients} must be >= 0")

    def predict_ms(self, config: Any, arch: Architecture) -> float:
        features = decode_features(config, arch)
        return float(sum(self.coefficients[f] * features[f] for f in FEATURES))

    def to_dict(self) -> dict[str, Any]:
        return {
            "coefficients": dict(self.coefficients),
            "settings": self.settings,
            "fit_error": self.fit_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeCostModel:
        try:
            return cls(dict(data["coefficients"]), dict(data.get("settings", {})), float(data["fit_error"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"decode cost model: malformed record ({exc}); re-run the profile stage") from exc


def fit_decode_cost(
    rows: Sequence[dict[str, float]], ms: Sequence[float], settings: dict[str, Any] | None = None
) -> DecodeCostModel:
    """Least squares with every coefficient >= 0: the best fit over the subsets of features whose
    unconstrained solution is non-negative (four features: sixteen small solves)."""
    if len(rows) != len(ms) or not rows:
        raise ConfigError(f"decode cost fit: {len(rows)} feature rows for {len(ms)} timings")
    x = torch.tensor([[r[f] for f in FEATURES] for r in rows], dtype=torch.float64)
    y = torch.tensor(list(ms), dtype=torch.float64)
    best: tuple[float, list[float]] | None = None
    for k in range(1, len(FEATURES) + 1):
        for subset in itertools.combinations(range(len(FEATURES)), k):
            cols = list(subset)
            solution = torch.linalg.lstsq(x[:, cols], y.unsqueeze(1)).solution.squeeze(1)
            if bool((solution < -1e-12).any()):
                continue
            coef = [0.0] * len(FEATURES)
            for c, v in zip(cols, solution.tolist(), strict=True):
                coef[c] = max(float(v), 0.0)
            residual = float(((x @ torch.tensor(coef, dtype=torch.float64) - y) ** 2).sum())
            if best is None or residual < best[0] - 1e-12:
                best = (residual, coef)
    assert best is not None  # the constant alone always gives a non-negative mean
    coef = best[1]
    predicted = x @ torch.tensor(coef, dtype=torch.float64)
    mape = float(((predicted - y).abs() / y.clamp_min(1e-9)).mean())
    return DecodeCostModel(dict(zip(FEATURES, coef, strict=True)), dict(settings or {}), mape)


def calibration_members(space: Any, layer_scores: torch.Tensor | None = None) -> list[Architecture]:
    """Members spread over depth and width for timing: the full model, about two thirds and half of
    its layers (the best by ``layer_scores`` when given, else evenly spaced), each at full width, and
    the full depth at the narrowest FFN and hidden width the space allows."""
    full = space.largest()
    body = [i for i, la in enumerate(full.layers) if not la.is_identity]
    n = len(body)
    out: dict[str, Architecture] = {full.key(): full}

    def depth(keep: int) -> Architecture:
        if layer_scores is not None:
            kept = set(sorted(body, key=lambda i: (-float(layer_scores[i]), i))[:keep])
        else:
            kept = {body[round(j * (n - 1) / max(keep - 1, 1))] for j in range(keep)}
        layers = tuple(la if i in kept else LayerArch("identity") for i, la in enumerate(full.layers))
        return Architecture(hidden=full.hidden, layers=layers)

    candidates = [depth(max(space.min_depth, round(n * f))) for f in (2 / 3, 1 / 2)]
    smallest = space.smallest()
    narrow_ffn = min((la.ffn for la in smallest.layers if not la.is_identity), default=None)
    if narrow_ffn is not None:
        layers = tuple(la if la.is_identity else replace(la, ffn=narrow_ffn) for la in full.layers)
        candidates.append(Architecture(hidden=full.hidden, layers=layers))
        candidates.append(Architecture(hidden=smallest.hidden, layers=layers))
    for arch in candidates:
        try:
            space.validate(arch)
        except Exception:  # a shape this space cannot express is not timed
            continue
        out.setdefault(arch.key(), arch)
    return list(out.values())


def calibrate_decode_cost(
    model: Any,
    members: Sequence[Architecture],
    *,
    prompt_len: int,
    new_tokens: int,
    threads: int | None = 1,
    rounds: int = 3,
    device: str = "cpu",
) -> tuple[DecodeCostModel, list[dict[str, Any]]]:
    """Time the exported ``members`` (stock class where the shape has one) round-robin and fit the
    cost model; returns it with one record per member (features, measured and predicted ms)."""
    from elastic_lm.export.stock import to_stock
    from elastic_lm.metrics.decode import measure_decode_round_robin

    exported = {}
    for arch in members:
        sub = model.extract(arch)
        exported[arch.key()] = to_stock(sub) or sub
    measured = measure_decode_round_robin(
        exported, batch_size=1, prompt_len=prompt_len, new_tokens=new_tokens, device=device,
        threads=threads, warmup=1, repeats=rounds,
    )  # fmt: skip
    rows = [decode_features(model.config, a) for a in members]
    ms = [measured[a.key()].decode.median_ms for a in members]
    settings = {"prompt_len": prompt_len, "new_tokens": new_tokens, "threads": threads, "rounds": rounds}
    cost = fit_decode_cost(rows, ms, {**settings, "device": device, "members": len(members)})
    records = [
        {"architecture": a.key(), **f, "measured_ms": t, "predicted_ms": cost.predict_ms(model.config, a)}
        for a, f, t in zip(members, rows, ms, strict=True)
    ]
    return cost, records


__all__ = [
    "FEATURES",
    "DecodeCostModel",
    "calibrate_decode_cost",
    "calibration_members",
    "decode_features",
    "fit_decode_cost",
]
