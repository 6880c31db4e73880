"""The objectives of a prune search: size (parameters), measured latency, validation quality.

Every metric of an architecture is computed once and cached, so the trials table records the same
numbers the search optimised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.export.load import measure_ms
from elastic_lm.metrics.size import count_params
from elastic_lm.prune.evaluation import evaluate_model
from elastic_lm.prune.parts import PruneParts

QUALITY_DIRECTION = {"accuracy": "maximize", "f1": "maximize", "loss": "minimize"}
UNITS = {
    "params": "count",
    "params_nonembedding": "count, without embeddings",
    "latency_ms": "ms, CPU",
    "val_accuracy": "fraction",
    "val_f1": "macro F1",
    "val_loss": "nats",
}


def default_direction(name: str) -> str:
    """Accuracy and F1 are maximised, everything else (size, latency, loss) minimised."""
    return "maximize" if name in ("val_accuracy", "val_f1") else "minimize"


def metrics_size(config: Any, arch: Architecture, name: str) -> float:
    return float(count_params(config, arch, include_embeddings=name == "params"))


def prune_objectives(
    parts: PruneParts, supernet: Any
) -> tuple[list[Any], Callable[[Architecture], dict[str, float]]]:
    """The size and quality objectives, plus a function giving every metric of an architecture."""
    from elastic_lm.search import Objective

    config = parts.config
    p, c = config.prune, supernet.config
    batches = parts.val_batches()
    task = parts.data.task
    cache: dict[str, dict[str, float]] = {}

    def metrics(arch: Architecture) -> dict[str, float]:
        key = arch.key()
        if key not in cache:
            m = {f"val_{k}": v for k, v in evaluate_model(supernet, batches, task, arch).items()}
            m["params"] = float(count_params(c, arch))
            m["params_nonembedding"] = float(count_params(c, arch, include_embeddings=False))
            cache[key] = m
        return cache[key]

    def latency(arch: Architecture) -> float:
        return measure_ms(supernet.extract(arch), config.search)

    largest = supernet.model.largest()
    objs = []
    if "objectives" in config.search.model_fields_set:
        names = [(o.name, o.direction or default_direction(o.name)) for o in config.search.objectives]
    else:
        names = [
            (p.size_objective, "minimize"),
            (parts.quality_name(), QUALITY_DIRECTION[p.quality_objective]),
        ]
    for name, direction in names:
        if name == "latency_ms":
            objs.append(Objective(name, latency, direction))
        elif name in ("params", "params_nonembedding"):
            full = metrics_size(c, largest, name)
            objs.append(Objective(name, lambda a, n=name: metrics_size(c, a, n), direction, True, (0, full)))
        elif name in ("val_accuracy", "val_f1", "val_loss"):
            bounds = (0.0, 1.0) if name != "val_loss" else None
            objs.append(Objective(name, lambda a, n=name: metrics(a)[n], direction, bounds=bounds))
        else:
            raise ConfigError(
                f"search.objectives name {name!r} is unknown for prune; use params, params_nonembedding, "
                "latency_ms, val_accuracy, val_f1 or val_loss"
            )
    return objs, metrics


__all__ = ["QUALITY_DIRECTION", "UNITS", "default_direction", "metrics_size", "prune_objectives"]
