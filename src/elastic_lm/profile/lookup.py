"""NAS-BERT-style latency lookup table: time each distinct layer once, predict by summing.

A layer's entry is keyed by its *resolved* shape (block type and every size, the width included), so
the table grows with the number of distinct layer configurations that occur, not with the number
of architectures: it scales to spaces of 1e15 members. Embeddings + task head are one constant per
global width (measured as the extracted model with every layer dropped). Summed isolated timings
miss what layers share (caches, allocator reuse, per-call overhead), so ``fit`` learns one scale
and offset from whole-model measurements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, UserError
from elastic_lm.metrics.timing import check_device
from elastic_lm.profile.measure import MeasureMany, default_measure, model_runner
from elastic_lm.profile.records import ProfileRecord, ProfileSettings, positive_ms


def config_to_dict(config: Any) -> dict[str, Any]:
    """An ElasticConfig as plain JSON (what a predictor needs to resolve shapes on reload)."""
    data = config.to_dict()
    for key in ("model_type", "transformers_version"):
        data.pop(key, None)
    return json.loads(json.dumps(data, default=str))


def config_from_dict(data: dict[str, Any]) -> Any:
    from elastic_lm.model import ElasticConfig

    return ElasticConfig(**data)


def layer_keys(config: Any, arch: Architecture) -> list[tuple[int, str]]:
    """(position, key) of each kept layer; the key is the layer's resolved shape as JSON."""
    from elastic_lm.model.shapes import resolve

    out = []
    for i, shape in enumerate(resolve(config, arch)):
        if shape is not None:
            out.append((i, json.dumps(shape.to_layer_arch().to_dict(), sort_keys=True)))
    return out


def _only_layer(arch: Architecture, index: int) -> Architecture:
    """``arch`` with every layer but ``index`` dropped."""
    layers = tuple(la if i == index else LayerArch("identity") for i, la in enumerate(arch.layers))
    return Architecture(hidden=arch.hidden, layers=layers)


def _no_layers(arch: Architecture) -> Architecture:
    return Architecture(hidden=arch.hidden, layers=tuple(LayerArch("identity") for _ in arch.layers))


class LookupTablePredictor:
    """``predict_ms(arch) = scale * (constant[hidden] + sum of layer entries) + offset``."""

    name = "lookup"

    def __init__(
        self,
        config: Any,
        settings: ProfileSettings,
        entries: dict[str, float] | None = None,
        constants: dict[str, float] | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> None:
        self.config = config
        self.settings = settings
        self.entries: dict[str, float] = dict(entries or {})
        self.constants: dict[str, float] = dict(constants or {})
        self.scale = float(scale)
        self.offset = float(offset)

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        supernet: Any,
        archs: Sequence[Architecture],
        settings: ProfileSettings,
        measure: MeasureMany | None = None,
    ) -> LookupTablePredictor:
        """A table with an entry for every layer configuration and width occurring in ``archs``."""
        table = cls(supernet.config, settings)
        table.extend(supernet, archs, measure)
        return table

    def missing(
        self, archs: Sequence[Architecture]
    ) -> tuple[dict[str, Architecture], dict[str, Architecture]]:
        """Layer entries and constants not in the table yet, each with an architecture to time it."""
        layers: dict[str, Architecture] = {}
        constants: dict[str, Architecture] = {}
        for arch in archs:
            if str(arch.hidden) not in self.constants:
                constants.setdefault(str(arch.hidden), _no_layers(arch))
            for index, key in layer_keys(self.config, arch):
                if key not in self.entries:
                    layers.setdefault(key, _only_layer(arch, index))
        return layers, constants

    def extend(self, supernet: Any, archs: Sequence[Architecture], measure: MeasureMany | None = None) -> int:
        """Time every layer configuration of ``archs`` not yet in the table; returns how many."""
        measure = measure or default_measure(self.settings)
        layers, constants = self.missing(archs)
        jobs = (
            (constants, self.constants, lambda a: model_runner(supernet.extract(a), self.settings)),
            (layers, self.entries, lambda a: self._layer_runner(supernet, a)),
        )
        for todo, table, make in jobs:
            names = list(todo)
            for start in range(0, len(names), self.settings.chunk):
                keys = names[start : start + self.settings.chunk]
                runners = [make(todo[k]) for k in keys]
                for key, m in zip(keys, measure(runners), strict=True):
                    table[key] = m.quantile_ms(self.settings.quantile)
        return len(layers) + len(constants)

    def _layer_runner(self, supernet: Any, single: Architecture) -> Any:
        """One layer in isolation: the extracted one-layer model's block on a random hidden state."""
        s = self.settings
        dev = check_device(s.device)
        model = supernet.extract(single).to(dev).eval()
        width = model.config.fixed_architecture.layer_hidden(0)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(s.batch_size, s.seq_len, width, generator=generator).to(dev)
        backbone = model.backbone
        return lambda: backbone.forward_layer(0, x)

    # -- predicting -----------------------------------------------------------------------------
    def raw_ms(self, arch: Architecture) -> float:
        """Constant + sum of the measured layer entries, before the fitted correction."""
        try:
            total = self.constants[str(arch.hidden)]
        except KeyError:
            raise ArchitectureError(
                f"hidden={arch.hidden} has no embeddings+head entry in the lookup table; "
                "call table.extend(supernet, [arch]) to measure it"
            ) from None
        for _, key in layer_keys(self.config, arch):
            if key not in self.entries:
                raise ArchitectureError(
                    f"layer {key} is not in the lookup table; "
                    "call table.extend(supernet, [arch]) to measure it"
                )
            total += self.entries[key]
        return total

    def predict_ms(self, arch: Architecture) -> float:
        return positive_ms(self.scale * self.raw_ms(arch) + self.offset)

    def fit(self, records: Sequence[ProfileRecord]) -> LookupTablePredictor:
        """Least-squares scale and offset from whole-model measurements (scale only with 1 record)."""
        if not records:
            raise UserError("no profile records to fit the lookup table's correction; profile some first")
        raw = np.array([self.raw_ms(r.architecture) for r in records])
        measured = np.array([r.latency_ms for r in records])
        if len(records) == 1 or np.ptp(raw) == 0:
            self.scale, self.offset = float(measured.mean() / raw.mean()), 0.0
        else:
            A = np.stack([raw, np.ones_like(raw)], axis=1)
            (scale, offset), *_ = np.linalg.lstsq(A, measured, rcond=None)
            if scale > 0:
                self.scale, self.offset = float(scale), float(offset)
            else:  # noise made larger tables look faster: keep the one physical fit, a pure ratio
                self.scale, self.offset = float(measured.mean() / raw.mean()), 0.0
        return self

    # -- saving ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "config": config_to_dict(self.config),
            "settings": self.settings.to_dict(),
            "entries_ms": dict(sorted(self.entries.items())),
            "constants_ms": dict(sorted(self.constants.items())),
            "scale": self.scale,
            "offset_ms": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LookupTablePredictor:
        return cls(
            config_from_dict(data["config"]),
            ProfileSettings.from_dict(data["settings"]),
            entries=data["entries_ms"],
            constants=data["constants_ms"],
            scale=data["scale"],
            offset=data["offset_ms"],
        )
