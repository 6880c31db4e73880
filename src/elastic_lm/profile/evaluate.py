"""Held-out error of a predictor, the machine it is valid for, saving/loading, and re-checking winners."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from elastic_lm.architecture import Architecture
from elastic_lm.errors import DataError, UserError
from elastic_lm.io import atomic_write_json
from elastic_lm.profile.lookup import LookupTablePredictor
from elastic_lm.profile.measure import MeasureMany, records_for
from elastic_lm.profile.records import ProfileRecord, ProfileSettings
from elastic_lm.profile.regressor import RegressorPredictor


class LatencyPredictor(Protocol):
    """What search needs from a latency predictor."""

    name: str

    def predict_ms(self, arch: Architecture) -> float: ...

    def fit(self, records: Sequence[ProfileRecord]) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


PREDICTOR_KINDS: dict[str, Any] = {"lookup": LookupTablePredictor, "regressor": RegressorPredictor}


def predictor_from_dict(data: dict[str, Any]) -> LatencyPredictor:
    kind = data.get("kind")
    if kind not in PREDICTOR_KINDS:
        raise DataError(f"predictor kind={kind!r} is unknown; expected one of {', '.join(PREDICTOR_KINDS)}")
    return PREDICTOR_KINDS[kind].from_dict(data)


def prediction_errors(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """MAPE (fraction, 0.05 = 5 %), Kendall's tau of the ranking, and max absolute error in ms."""
    from scipy.stats import kendalltau

    from elastic_lm.evaluate.metrics import mape

    p = np.asarray(predicted_ms, dtype=np.float64)
    m = np.asarray(measured_ms, dtype=np.float64)
    if len(p) != len(m) or len(m) == 0:
        raise ValueError("predicted and measured must be non-empty and of equal length")
    tau = float(kendalltau(p, m).statistic) if len(m) >= 2 else float("nan")
    return {
        "mape": mape(p, m),
        "kendall_tau": tau,
        "max_abs_error_ms": float(np.max(np.abs(p - m))),
        "n": len(m),
    }


def evaluate(predictor: LatencyPredictor, records: Sequence[ProfileRecord]) -> dict[str, float]:
    """Errors of ``predictor`` on (held-out) measured records."""
    return prediction_errors(
        [predictor.predict_ms(r.architecture) for r in records], [r.latency_ms for r in records]
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(settings: ProfileSettings) -> dict[str, Any]:
    """Where a predictor is valid: CPU, core count, threads, library versions, device."""
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": settings.threads if settings.threads is not None else torch.get_num_threads(),
        "device": settings.device,
        "backend": settings.backend,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if settings.device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(settings.device))
    if settings.backend == "onnxruntime":
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    return out


def save_predictors(
    path: str | Path,
    predictors: dict[str, LatencyPredictor],
    settings: ProfileSettings,
    held_out: dict[str, dict[str, float]],
    n_train: int,
) -> Path:
    """Write ``predictor.json``: every predictor, its held-out errors, the machine and settings.

    ``recommended`` names the predictor with the lowest held-out MAPE; ``load_predictor`` uses it.
    """
    recommended = min(held_out, key=lambda k: held_out[k]["mape"]) if held_out else next(iter(predictors))
    data = {
        "format": "elastic-lm latency predictor v1",
        "machine": machine_description(settings),
        "settings": settings.to_dict(),
        "n_train": n_train,
        "n_held_out": max((e["n"] for e in held_out.values()), default=0),
        "held_out": held_out,
        "recommended": recommended,
        "predictors": {name: p.to_dict() for name, p in predictors.items()},
    }
    return atomic_write_json(path, data)


def load_predictor(path: str | Path, name: str | None = None) -> LatencyPredictor:
    """A predictor from ``predictor.json`` (the recommended one unless ``name`` is given)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; 'elastic-lm profile' writes it")
    data = json.loads(path.read_text())
    name = name or data.get("recommended")
    if name not in data.get("predictors", {}):
        raise DataError(f"{path} has no predictor {name!r}; it has {', '.join(data.get('predictors', {}))}")
    return predictor_from_dict(data["predictors"][name])


def recheck(
    predictor: LatencyPredictor,
    supernet: Any,
    archs: Sequence[Architecture],
    settings: ProfileSettings,
    *,
    labels: Sequence[str] | None = None,
    path: str | Path | None = None,
    measure: MeasureMany | None = None,
) -> list[dict[str, Any]]:
    """Re-measure chosen architectures (a Pareto set) and compare with the predictor.

    Writes ``path`` (``RUN_DIR/profile/latency_check.json``, the format ``elastic-lm report`` reads)
    when given.
    """
    if not archs:
        raise UserError("recheck needs at least one architecture (e.g. the Pareto set of a search)")
    labels = list(labels) if labels is not None else [f"#{i}" for i in range(len(archs))]
    if len(labels) != len(archs):
        raise UserError(f"{len(labels)} labels for {len(archs)} architectures; give one label each")
    if isinstance(predictor, LookupTablePredictor):
        predictor.extend(supernet, archs, measure)
    elif isinstance(predictor, RegressorPredictor) and predictor.lookup is not None:
        predictor.lookup.extend(supernet, archs, measure)
    records = records_for(supernet, archs, settings, measure)
    rows = [
        {
            "label": label,
            "architecture": r.architecture.to_dict(),
            "predicted_ms": predictor.predict_ms(r.architecture),
            "measured_ms": r.latency_ms,
        }
        for label, r in zip(labels, records, strict=True)
    ]
    if path is not None:
        atomic_write_json(path, rows)
    return rows
