"""ELM dynamic modules (Wang 2025): widen saturated FFNs and delete redundant heads while training.

Every ``every`` steps between ``start`` and ``stop`` the training loop calls
:meth:`DynamicModules.maybe_adjust`. It samples activations of the full-width super-network on a few
batches, then

* **prunes heads**: within a layer, when the linear CKA of two heads' context vectors exceeds
  ``cka_threshold`` the later head is deleted from the super-network and the layer's head choices
  in the space are capped to what is left;
* **widens FFNs**: a layer whose intermediate activations need ``components / width >= saturation``
  principal components (for ``variance`` of the variance) gets ``increment`` new units (function
  unchanged: zero outgoing weights) and the new width as a choice, most saturated first, as long as
  the super-network stays within ``max_params``.

Each change is returned, appended to a JSON-lines log, and kept in :meth:`state_dict` (with the
adjusted space) so a resumed run sees the same space; the model config records the new per-layer
sizes (``layer_sizes``), see :mod:`elastic_lm.train.resize`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from elastic_lm.errors import ConfigError
from elastic_lm.io import atomic_write_text
from elastic_lm.model.modeling import ElasticPreTrainedModel
from elastic_lm.space import SearchSpace
from elastic_lm.train.dynamic_stats import ModuleStats, Statistics, collect_statistics
from elastic_lm.train.resize import (
    ParamResize,
    attentions_at,
    ffns_at,
    grow_ffn,
    record_layer_sizes,
    remove_heads,
    resize_optimizer_state,
)

# The LayerArch fields whose search dimensions dynamic modules change (see ``layer_dimension``).
FFN_FIELD, HEADS_FIELD = "ffn", "heads"


def layer_dimension(space: SearchSpace, layer: int, field_name: str, block: str | None = None) -> str | None:
    """The space's dimension that sets LayerArch field ``field_name`` at ``layer`` (None: not searched).

    The one place that maps a layer to a dimension: a per-layer group gives ``layer{i}.<group>``,
    a global group its name (shared by all layers), a per-block group ``block{b}.<group>``; per-unit
    keep bits (prune-large) are not widths and give None. ``block`` picks the group that applies to
    that block type (ELM: BERT and MobileBERT blocks have their own head and FFN dimensions).
    """
    for g in space.groups:
        if g.target != field_name or (block is not None and not g.applies(block)):
            continue
        position = {"global": 0, "layer": layer, "block": space.block_of(layer)}.get(g.scope)
        return None if position is None else space.dimension_name(g, position)
    return None


def dimension_choices(space: SearchSpace, name: str) -> tuple[Any, ...]:
    return next(d.choices for d in space.dimensions() if d.name == name)


@dataclass(frozen=True)
class DynamicSettings:
    """When and how the super-network is adjusted (defaults follow the ELM description)."""

    every: int = 1000
    start: int = 0
    stop: int | None = None
    variance: float = 0.99
    saturation: float = 0.9
    increment: int = 64
    max_params: int | None = None
    widen: bool = True
    prune_heads: bool = True
    cka_threshold: float = 0.9
    min_heads: int = 1
    max_tokens: int = 2048
    tokens_per_batch: int = 512
    init_std: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.every < 1 or self.increment < 1 or self.min_heads < 1:
            problems.append("every, increment and min_heads must be >= 1")
        if not 0 < self.variance <= 1 or not 0 < self.saturation <= 1:
            problems.append("variance and saturation must lie in (0, 1]")
        if not 0 < self.cka_threshold <= 1:
            problems.append("cka_threshold must lie in (0, 1]")
        if self.stop is not None and self.stop < self.start:
            problems.append(f"stop={self.stop} is before start={self.start}")
        if problems:
            raise ConfigError("dynamic modules: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamicSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"dynamic modules: unknown setting(s) {sorted(unknown)}; allowed: {sorted(known)}"
            )
        return cls(**data)


@dataclass(frozen=True)
class Change:
    """One logged change: ``what`` is ``widen-ffn``, ``remove-head`` or ``widen-skipped`` (budget)."""

    step: int
    layer: int
    block: str
    what: str
    before: int
    after: int
    value: float  # widen: components / width; remove-head: CKA with the kept head it duplicates
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Adjustment:
    """What one call changed. ``resized`` lists replaced parameters: pass it to
    :func:`resize_optimizer_state` (done already when ``maybe_adjust`` got the optimiser)."""

    step: int
    changes: list[Change]
    space: SearchSpace
    resized: list[ParamResize]
    statistics: Statistics

    @property
    def shapes_changed(self) -> bool:
        return bool(self.resized)


class DynamicModules:
    """Schedules, plans, applies and logs ELM's dynamic width and head changes."""

    def __init__(self, settings: DynamicSettings | None = None, log_path: str | Path | None = None) -> None:
        self.settings = settings or DynamicSettings()
        self.log_path = Path(log_path) if log_path is not None else None
        self.history: list[Change] = []
        self.space: SearchSpace | None = None  # the adjusted space (None until the first change)
        self.last_step: int | None = None

    # ---- schedule -----------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        s = self.settings
        inside = step >= s.start and (s.stop is None or step <= s.stop)
        return inside and (step - s.start) % s.every == 0 and step != self.last_step

    def maybe_adjust(
        self,
        step: int,
        model: ElasticPreTrainedModel,
        space: SearchSpace,
        batches: Iterable[Mapping[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer | None = None,
        agree: Callable[[list[Change]], list[Change]] | None = None,
    ) -> Adjustment | None:
        """Adjust model and space when ``step`` is due and something qualifies; else None.

        With ``optimizer`` its parameters and AdamW moments are resized in place; without it the
        caller rebuilds the optimiser when ``adjustment.shapes_changed``. ``agree`` maps the planned
        changes to those every process applies (DDP: rank 0's plan, broadcast).
        """
        if not self.due(step):
            return None
        self.last_step = step
        stats = collect_statistics(
            model,
            batches,
            self.settings.variance,
            self.settings.max_tokens,
            self.settings.tokens_per_batch,
            seed=self.settings.seed * 1_000_003 + step,
            attention=self.settings.prune_heads,
        )
        changes = self.plan(step, model, space, stats)
        if agree is not None:
            changes = agree(changes)
        if not changes:
            return None
        return self.apply(step, changes, model, space, stats, optimizer)

    # ---- plan ---------------------------------------------------------------------------------
    def plan(
        self, step: int, model: ElasticPreTrainedModel, space: SearchSpace, stats: Statistics
    ) -> list[Change]:
        """The changes ``stats`` call for; pure (DDP: plan on rank 0, broadcast, apply everywhere)."""
        changes: list[Change] = []
        freed = 0
        if self.settings.prune_heads:
            changes += self._plan_heads(step, model, space, stats)
            freed = sum(c.detail["params"] for c in changes)
        if self.settings.widen:
            changes += self._plan_widen(step, model, space, stats, freed)
        return changes

    def _plan_heads(
        self, step: int, model: ElasticPreTrainedModel, space: SearchSpace, stats: Statistics
    ) -> list[Change]:
        if not any(layer_dimension(space, i, HEADS_FIELD) for i in range(space.num_layers)):
            raise ConfigError(f"space {space.name!r} searches no head count; set prune_heads: false")
        out: list[Change] = []
        for m in (m for m in stats.modules if m.kind == "attention" and m.cka is not None):
            att = dict(attentions_at(model, m.layer))[m.block]
            if att.max_heads != att.max_kv:
                raise ConfigError(
                    f"layer {m.layer} ({m.block}) uses grouped-query attention; head pruning supports "
                    "multi-head attention only: set prune_heads: false"
                )
            per_head = att.q.weight.shape[1] * 3 + att.o.weight.shape[0]
            per_head = att.head_dim * per_head + (3 * att.head_dim if att.q.bias is not None else 0)
            kept: list[int] = []
            removed: list[int] = []
            for b in range(m.width):
                best = max(kept, key=lambda a, b=b: float(m.cka[a, b]), default=None)
                value = float(m.cka[best, b]) if best is not None else 0.0
                if value > self.settings.cka_threshold and m.width - len(removed) > self.settings.min_heads:
                    removed.append(b)
                    after = m.width - len(removed)
                    detail = {"head": b, "same_as": best, "params": per_head}
                    out.append(Change(step, m.layer, m.block, "remove-head", after + 1, after, value, detail))
                else:
                    kept.append(b)
        return out

    def _plan_widen(
        self, step: int, model: ElasticPreTrainedModel, space: SearchSpace, stats: Statistics, freed: int
    ) -> list[Change]:
        by_dim: dict[str, list[ModuleStats]] = {}
        for m in (m for m in stats.modules if m.kind == "ffn"):
            name = layer_dimension(space, m.layer, FFN_FIELD, m.block)
            if name is None:
                raise ConfigError(
                    f"space {space.name!r} searches no FFN width at layer {m.layer}; set widen: false"
                )
            by_dim.setdefault(name, []).append(m)
        saturated = [
            (max(m.saturation for m in ms), name, ms)
            for name, ms in by_dim.items()
            if max(m.saturation for m in ms) >= self.settings.saturation
        ]
        saturated.sort(key=lambda t: -t[0])
        budget = self.settings.max_params
        total = sum(p.numel() for p in model.parameters()) - freed
        inc = self.settings.increment
        out: list[Change] = []
        for ratio, name, ms in saturated:
            layers = sorted({m.layer for m in ms} | self._layers_of(space, name, model))
            ffns = [
                (i, b, f)
                for i in layers
                for b, f in ffns_at(model, i)
                if layer_dimension(space, i, FFN_FIELD, b) == name
            ]
            cost = inc * sum(_unit_params(f) for _, _, f in ffns)
            fits = budget is None or total + cost <= budget
            seen: set[tuple[int, str]] = set()
            for i, b, f in ffns:
                if (i, b) in seen:  # a MobileBERT stack: one line per position and block
                    continue
                seen.add((i, b))
                value = max((m.saturation for m in ms if (m.layer, m.block) == (i, b)), default=ratio)
                detail = {"dimension": name, "params": cost, "budget": budget}
                what = "widen-ffn" if fits else "widen-skipped"
                out.append(
                    Change(step, i, b, what, f.inner, f.inner + inc if fits else f.inner, value, detail)
                )
            total += cost if fits else 0
        return out

    @staticmethod
    def _layers_of(space: SearchSpace, name: str, model: ElasticPreTrainedModel) -> set[int]:
        return {
            i
            for i in range(len(model.backbone.layers))
            if any(layer_dimension(space, i, FFN_FIELD, b) == name for b, _ in ffns_at(model, i))
        }

    # ---- apply --------------------------------------------------------------------------------
    def apply(
        self,
        step: int,
        changes: Sequence[Change],
        model: ElasticPreTrainedModel,
        space: SearchSpace,
        stats: Statistics | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> Adjustment:
        """Resize the model, the optimiser (if given) and the space as ``changes`` say; log them."""
        resized: list[ParamResize] = []
        drops: dict[tuple[int, str], list[int]] = {}
        for c in (c for c in changes if c.what == "remove-head"):
            drops.setdefault((c.layer, c.block), []).append(int(c.detail["head"]))
        for (layer, block), heads in drops.items():
            resized += remove_heads(dict(attentions_at(model, layer))[block], heads)
        for c in (c for c in changes if c.what == "widen-ffn"):
            seed = self.settings.seed * 1_000_003 + step * 1009 + c.layer
            for block, ffn in ffns_at(model, c.layer):
                if block == c.block:
                    gen = torch.Generator().manual_seed(seed)
                    resized += grow_ffn(ffn, c.after - c.before, self.settings.init_std, gen)
        record_layer_sizes(model)  # first: the largest architecture is read from the config's sizes
        model.reset()
        new_space = _adjust_space(space, model)
        if optimizer is not None:
            resize_optimizer_state(optimizer, resized)
        self.space = new_space
        self.history.extend(changes)
        self._log(changes, space, new_space)
        return Adjustment(step, list(changes), new_space, resized, stats or Statistics())

    def _log(self, changes: Sequence[Change], old: SearchSpace, new: SearchSpace) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            for c in changes:
                line = c.to_dict()
                field_name = FFN_FIELD if "widen" in c.what else HEADS_FIELD
                dim = layer_dimension(old, c.layer, field_name, c.block)
                if dim is not None:
                    line["choices"] = [list(dimension_choices(old, dim)), list(dimension_choices(new, dim))]
                handle.write(json.dumps(line, sort_keys=True) + "\n")

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe: the change history, the adjusted space and the last adjusted step."""
        return {
            "history": [c.to_dict() for c in self.history],
            "space": None if self.space is None else self.space.to_dict(),
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore; log lines written after the saved state (a crash before the checkpoint) go."""
        self.history = [Change(**c) for c in state.get("history", [])]
        self.space = None if state.get("space") is None else SearchSpace.from_dict(state["space"])
        self.last_step = state.get("last_step")
        if self.log_path is not None and self.log_path.exists():
            last = -1 if self.last_step is None else self.last_step
            lines = [x for x in self.log_path.read_text(encoding="utf-8").splitlines() if x.strip()]
            kept = [x for x in lines if json.loads(x)["step"] <= last]
            atomic_write_text(self.log_path, "".join(x + "\n" for x in kept))


def _unit_params(ffn: Any) -> int:
    """Parameters one more FFN unit costs: an up row (+ bias), a gate row (+ bias), a down column."""
    n = ffn.up.in_features + (ffn.up.bias is not None) + ffn.down.out_features
    if ffn.gate is not None:
        n += ffn.gate.in_features + (ffn.gate.bias is not None)
    return n


def _adjust_space(space: SearchSpace, model: ElasticPreTrainedModel) -> SearchSpace:
    """Choices that match the model's new widths: the widened FFN width added, head counts capped.

    Each block type is matched against its own dimension: a MobileBERT block that lost heads caps
    MobileBERT's head choices, never the BERT block's at the same position.
    """
    widths: dict[str, list[int]] = {}
    heads: dict[str, list[int]] = {}
    for i in range(len(model.backbone.layers)):
        for block, f in ffns_at(model, i):
            ffn_dim = layer_dimension(space, i, FFN_FIELD, block)
            if ffn_dim is not None:
                widths.setdefault(ffn_dim, []).append(f.inner)
        for block, a in attentions_at(model, i):
            head_dim = layer_dimension(space, i, HEADS_FIELD, block)
            if head_dim is not None:
                heads.setdefault(head_dim, []).append(a.max_heads)
    for name, ws in widths.items():
        old = dimension_choices(space, name)
        if ws and max(ws) > max(old):
            space = space.with_choices(name, tuple(sorted({*old, max(ws)})))
    for name, hs in heads.items():
        old = dimension_choices(space, name)
        if hs and min(hs) < max(old):
            cap = min(hs)
            space = space.with_choices(name, tuple(sorted({c for c in old if c <= cap} | {cap})))
    return space
