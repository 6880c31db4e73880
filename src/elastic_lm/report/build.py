"""Turn a loaded run into what the report shows: the Pareto set, the best trials, figures, warnings.

The Pareto set is recomputed from the trials with each objective's direction, never copied from
``summary.json``: a search that silently ignored "maximize" must show up here as a warning, not as a
wrong table.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from elastic_lm.report.inputs import Objective, RunData, Trial
from elastic_lm.report.labels import describe_architecture, display
from elastic_lm.search.pareto import front_mask


@dataclass(frozen=True)
class FigurePng:
    """One figure: file stem, heading, one-line caption, PNG bytes."""

    stem: str
    title: str
    caption: str
    png: bytes


def ranked(trials: Sequence[Trial], objectives: Sequence[Objective]) -> list[Trial]:
    """Finished, feasible trials that report every objective: the candidates for the front."""
    return [t for t in trials if t.usable and all(o.name in t.metrics for o in objectives)]


def pareto_trials(trials: Sequence[Trial], objectives: Sequence[Objective]) -> list[Trial]:
    """The non-dominated usable trials over all objectives, ordered by the first objective's best."""
    candidates = ranked(trials, objectives)
    points = [[t.metrics[o.name] for o in objectives] for t in candidates]
    mask = front_mask(points, [o.direction for o in objectives])
    members = [t for t, keep in zip(candidates, mask, strict=True) if keep]
    first = objectives[0]
    sign = 1.0 if first.direction == "minimize" else -1.0
    return sorted(members, key=lambda t: (sign * t.metrics[first.name], t.number))


def best_per_objective(trials: Sequence[Trial], objectives: Sequence[Objective]) -> dict[str, Trial]:
    """For each objective, the usable trial with the best value (ties: lowest trial number)."""
    out: dict[str, Trial] = {}
    for objective in objectives:
        candidates = [t for t in trials if t.usable and objective.name in t.metrics]
        if not candidates:
            continue
        sign = 1.0 if objective.direction == "minimize" else -1.0
        out[objective.name] = min(candidates, key=lambda t: (sign * t.metrics[objective.name], t.number))
    return out


def warnings_for(run: RunData, members: Sequence[Trial]) -> list[str]:
    """Things a reader must know before trusting the numbers."""
    notes: list[str] = []
    objectives = run.summary.objectives
    claimed = run.summary.pareto
    found = sorted(t.number for t in members)
    if claimed is not None and sorted(set(claimed)) != found:
        notes.append(
            f"summary.json lists Pareto trials {sorted(set(claimed))}, but recomputing from the trials "
            f"with the declared directions gives {found}; the tables below use the recomputed set."
        )
    usable = [t for t in run.trials if t.usable]
    incomplete = [t.number for t in usable if any(o.name not in t.metrics for o in objectives)]
    if incomplete:
        notes.append(f"trials {incomplete} lack an objective's metric and are left out of the front.")
    notes += chance_warnings(run)
    refs = {tuple(sorted(s.reference_point.items())) for s in (run.summary, *run.extra_summaries)}
    if len(refs) > 1:
        notes.append(
            "the compared searches use different reference points; their hypervolumes differ in scale."
        )
    return notes


def chance_warnings(run: RunData) -> list[str]:
    """Downstream scores a reader should not trust: accuracy within two standard errors of guessing
    uniformly among the task's labels (1/k, binomial error over its test examples), or an F1 of 0
    (the model never predicts the scored class)."""
    notes: list[str] = []
    if run.downstream is None:
        return notes
    for row in run.downstream.encoders:
        for task, score in row.scores.items():
            k, n, acc = score.get("num_labels"), score.get("test_examples"), score.get("accuracy")
            if k and n and acc is not None:
                chance = 1.0 / k
                margin = 2.0 * math.sqrt(chance * (1.0 - chance) / n)
                if acc <= chance + margin:
                    notes.append(
                        f"{row.name} on {task}: accuracy {acc:.3f} is at chance level (1/{int(k)} = "
                        f"{chance:.3f}, +2 s.e. = {chance + margin:.3f} over {int(n)} test examples)."
                    )
                    continue
            if score.get("f1") == 0.0:
                notes.append(f"{row.name} on {task}: F1 is 0, the model never predicts the scored class.")
    return notes


COSTS: frozenset[str] = frozenset({"params", "flops", "latency_ms", "memory_mb"})


def axes_for(first: Objective, second: Objective) -> tuple[Objective, Objective]:
    """(x, y) for a pair: a cost (size, latency) goes on x and quality on y, the way papers draw it.

    When both or neither are costs, the later-listed objective goes on x (searches list quality first).
    """
    if (first.name in COSTS) != (second.name in COSTS):
        return (first, second) if first.name in COSTS else (second, first)
    return second, first


def make_figures(run: RunData, members: Sequence[Trial]) -> list[FigurePng]:
    """Every figure the run's files allow; optional inputs that are absent simply give no figure."""
    from elastic_lm.report import plots

    objectives = run.summary.objectives
    numbers = [t.number for t in members]
    figures = []
    for first, second in itertools.combinations(objectives, 2):
        x, y = axes_for(first, second)
        figures.append(
            FigurePng(
                stem=f"pareto_{y.name}_vs_{x.name}",
                title=f"Pareto front: {display(y.name).name} vs {display(x.name).name}",
                caption="faint: every evaluated architecture; red: non-dominated for this pair of "
                "objectives; labelled markers: baselines.",
                png=plots.plot_pareto(run.trials, x, y, numbers, run.baselines),
            )
        )
    summaries = [s for s in (run.summary, *run.extra_summaries) if s.hypervolume]
    if summaries:
        figures.append(
            FigurePng(
                stem="hypervolume",
                title="Hypervolume over evaluations",
                caption="volume of objective space dominated by the front so far, relative to the "
                "reference point; a flat tail means the search has converged.",
                png=plots.plot_hypervolume(summaries),
            )
        )
    if run.latency:
        figures.append(
            FigurePng(
                stem="latency_check",
                title="Predicted vs measured latency",
                caption="points on the dashed line are predicted exactly; above it the predictor is "
                "pessimistic, below it optimistic.",
                png=plots.plot_latency(run.latency),
            )
        )
    if run.train_curve:
        figures.append(
            FigurePng(
                stem="train_loss",
                title="Training loss",
                caption="super-network training loss per logged step (train/metrics.csv).",
                png=plots.plot_train_curve(run.train_curve),
            )
        )
    return figures


def write_pareto_csv(path: Path, members: Sequence[Trial], objectives: Sequence[Objective]) -> None:
    """One row per Pareto member: number, objectives (raw units), depth, hidden, description, JSON."""
    extra = sorted({k for t in members for k in t.metrics} - {o.name for o in objectives})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "number",
                *(o.name for o in objectives),
                *extra,
                "depth",
                "hidden",
                "description",
                "architecture",
            ]
        )
        for t in members:
            arch = t.architecture
            writer.writerow(
                [
                    t.number,
                    *(t.metrics.get(o.name, "") for o in objectives),
                    *(t.metrics.get(k, "") for k in extra),
                    "" if arch is None else arch.depth,
                    "" if arch is None else arch.hidden,
                    describe_architecture(arch),
                    "" if arch is None else arch.to_json(),
                ]
            )
