"""What a search found: every evaluation, the Pareto set and the hypervolume over time.

Built from the study alone (:meth:`SearchResult.from_study`), so the report stage can rebuild it
from the stored study without re-running anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from elastic_lm.architecture import Architecture
from elastic_lm.search.objectives import Objective
from elastic_lm.search.pareto import hypervolume, normalise, pareto_mask, to_losses
from elastic_lm.search.study import CACHED_ATTR, FEASIBLE_ATTR, metrics_of, stored_arch


@dataclass(frozen=True)
class Evaluation:
    """One evaluated architecture: its trial number, metrics (objectives and constraints)."""

    number: int
    arch: Architecture
    metrics: dict[str, float]
    feasible: bool
    cached_from: int | None = None


@dataclass
class SearchResult:
    """All evaluations of a study, in trial order, with the objectives that define "better"."""

    objectives: Sequence[Objective]
    evaluations: list[Evaluation] = field(default_factory=list)

    @classmethod
    def from_study(cls, study: optuna.Study, objectives: Sequence[Objective]) -> SearchResult:
        evaluations = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            arch = stored_arch(t)
            if arch is None:
                continue
            metrics = metrics_of(t)
            evaluations.append(
                Evaluation(
                    number=t.number,
                    arch=arch,
                    metrics=metrics,
                    feasible=bool(t.user_attrs.get(FEASIBLE_ATTR, t.state == TrialState.COMPLETE)),
                    cached_from=t.user_attrs.get(CACHED_ATTR),
                )
            )
        return cls(list(objectives), sorted(evaluations, key=lambda e: e.number))

    # --- objective space -----------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def _feasible(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.feasible]

    def _values(self, evaluations: Sequence[Evaluation]) -> np.ndarray:
        return np.array(
            [[e.metrics[o.name] for o in self.objectives] for e in evaluations], dtype=float
        ).reshape(len(evaluations), len(self.objectives))

    def pareto(self) -> list[Evaluation]:
        """Feasible evaluations that no other feasible one dominates (one per architecture)."""
        unique = {e.arch.key(): e for e in reversed(self._feasible())}  # keep the first of each
        candidates = sorted(unique.values(), key=lambda e: e.number)
        if not candidates:
            return []
        mask = pareto_mask(to_losses(self._values(candidates), self.directions))
        return [e for e, keep in zip(candidates, mask, strict=True) if keep]

    def bounds(self) -> list[tuple[float, float]]:
        """Each objective's given bounds, or the range observed over feasible evaluations."""
        values = self._values(self._feasible())
        out = []
        for j, o in enumerate(self.objectives):
            if o.bounds is not None:
                out.append(o.bounds)
            elif len(values):
                low, high = float(values[:, j].min()), float(values[:, j].max())
                out.append((low, high if high > low else low + 1.0))
            else:
                out.append((0.0, 1.0))
        return out

    def hypervolume_history(self) -> list[float]:
        """Normalised hypervolume after each evaluation (infeasible ones repeat the last value)."""
        bounds = self.bounds()
        history, points = [], []
        for e in self.evaluations:
            if e.feasible:
                points.append([e.metrics[o.name] for o in self.objectives])
            if not points:
                history.append(0.0)
                continue
            losses = to_losses(np.array(points), self.directions)
            history.append(hypervolume(normalise(losses, bounds, self.directions)))
        return history

    def hypervolume(self) -> float:
        """Hypervolume of all feasible evaluations, objectives normalised to [0, 1] by bounds."""
        history = self.hypervolume_history()
        return history[-1] if history else 0.0

    # --- export ------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        front = {e.number for e in self.pareto()}
        names = sorted({k for e in self.evaluations for k in e.metrics})
        return [
            {
                "trial": e.number,
                "feasible": e.feasible,
                "pareto": e.number in front,
                "cached_from": "" if e.cached_from is None else e.cached_from,
                **{n: e.metrics.get(n, "") for n in names},
                "arch": e.arch.to_json(),
            }
            for e in self.evaluations
        ]

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        rows = self.rows()
        header = list(rows[0]) if rows else ["trial", "feasible", "pareto", "cached_from", "arch"]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        return path

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        data = {
            "objectives": [
                {"name": o.name, "direction": o.direction, "cheap": o.cheap, "bounds": o.bounds}
                for o in self.objectives
            ],
            "hypervolume": self.hypervolume(),
            "hypervolume_history": self.hypervolume_history(),
            "evaluations": [{**row, "arch": json.loads(row["arch"])} for row in self.rows()],
        }
        path.write_text(json.dumps(data, indent=2))
        return path
