"""The report's figures, each returned as PNG bytes (saved to disk and embedded in the HTML).

matplotlib is an optional extra, imported only here and only when a figure is drawn. We use
``matplotlib.figure.Figure`` with the Agg canvas directly rather than pyplot: no global state, no GUI
backend, safe in a headless worker.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from elastic_lm.errors import UserError
from elastic_lm.evaluate.metrics import mape
from elastic_lm.report.inputs import LatencyCheck, NamedPoint, Objective, Summary, Trial
from elastic_lm.report.labels import objective_display
from elastic_lm.search.pareto import front_mask, step_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
FIGSIZE = (6.4, 4.4)  # inches -> 768 x 528 pixels at DPI: text stays legible when shown half-width
FRONT_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"
BASELINE_MARKERS = ("s", "D", "^", "v", "P", "X", "*", "<", ">", "h")
BASELINE_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _figure(title: str) -> tuple[Figure, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "the report needs matplotlib, which is not installed; run: pip install 'elastic-lm[report]'"
        ) from None
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_pareto(
    trials: Sequence[Trial],
    x: Objective,
    y: Objective,
    pareto_numbers: Sequence[int] = (),
    baselines: Sequence[NamedPoint] = (),
    title: str = "",
) -> bytes:
    """All evaluated points faint, this pair's front as a red staircase, baselines as labelled markers.

    With more than two objectives, members of the full Pareto set that are not on this pair's front
    are drawn as hollow red circles, so a reader sees they are optimal in a dimension not shown.
    """
    dx, dy = objective_display(x), objective_display(y)
    fig, ax = _figure(title or f"Pareto front: {dy.name} vs {dx.name}")
    rows = [t for t in trials if x.name in t.metrics and y.name in t.metrics]
    usable = [t for t in rows if t.usable]
    other = [t for t in rows if not t.usable]
    if other:
        ax.scatter(
            [t.metrics[x.name] * dx.scale for t in other],
            [t.metrics[y.name] * dy.scale for t in other],
            marker="x",
            color="0.6",
            s=18,
            alpha=0.6,
            label=f"infeasible / failed ({len(other)})",
        )
    points = [(t.metrics[x.name], t.metrics[y.name]) for t in usable]
    ax.scatter(
        [p[0] * dx.scale for p in points],
        [p[1] * dy.scale for p in points],
        color=POINT_COLOR,
        alpha=0.3,
        s=20,
        label=f"evaluated ({len(usable)})",
    )
    mask = front_mask(points, (x.direction, y.direction)) if points else []
    front = [p for p, keep in zip(points, mask, strict=True) if keep]
    if front:
        xs, ys = step_line(front, (x.direction, y.direction))
        ax.plot([v * dx.scale for v in xs], [v * dy.scale for v in ys], color=FRONT_COLOR, lw=1.5)
        ax.scatter(
            [p[0] * dx.scale for p in front],
            [p[1] * dy.scale for p in front],
            color=FRONT_COLOR,
            s=36,
            zorder=3,
            label=f"Pareto front of this pair ({len(front)})",
        )
    on_front = {id(t) for t, keep in zip(usable, mask, strict=True) if keep}
    wanted = set(pareto_numbers)
    hidden = [t for t in usable if t.number in wanted and id(t) not in on_front]
    if hidden:
        ax.scatter(
            [t.metrics[x.name] * dx.scale for t in hidden],
            [t.metrics[y.name] * dy.scale for t in hidden],
            facecolors="none",
            edgecolors=FRONT_COLOR,
            s=44,
            zorder=3,
            label=f"Pareto set, all objectives ({len(hidden)} more)",
        )
    for i, base in enumerate(b for b in baselines if x.name in b.metrics and y.name in b.metrics):
        bx, by = base.metrics[x.name] * dx.scale, base.metrics[y.name] * dy.scale
        color = BASELINE_COLORS[i % len(BASELINE_COLORS)]
        ax.scatter(
            [bx],
            [by],
            marker=BASELINE_MARKERS[i % len(BASELINE_MARKERS)],
            color=color,
            edgecolors="black",
            s=70,
            zorder=4,
            label=base.name,
        )
        # staggered, so baselines of about the same size and score do not print over each other
        offset = (6, 6 - 11 * (i % 3))
        ax.annotate(base.name, (bx, by), xytext=offset, textcoords="offset points", fontsize=8, color=color)
    ax.margins(0.08)  # room for baseline labels at the edges
    ax.set_xlabel(f"{dx.label}, {_arrow(x.direction)}")
    ax.set_ylabel(f"{dy.label}, {_arrow(y.direction)}")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return _png(fig)


def _arrow(direction: str) -> str:
    return "lower is better" if direction == "minimize" else "higher is better"


def plot_hypervolume(summaries: Sequence[Summary]) -> bytes:
    """Hypervolume after each evaluation, one line per strategy (same reference point assumed)."""
    fig, ax = _figure("Dominated hypervolume over evaluations")
    for summary in summaries:
        if not summary.hypervolume:
            continue
        xs = [p[0] for p in summary.hypervolume]
        ys = [p[1] for p in summary.hypervolume]
        ax.plot(xs, ys, drawstyle="steps-post", lw=1.8, label=f"{summary.strategy} (final {ys[-1]:.4g})")
    ax.set_xlabel("evaluations (trials)")
    ax.set_ylabel("hypervolume (objective-space units, higher is better)")
    ax.legend(loc="lower right", fontsize=9)
    return _png(fig)


def plot_latency(checks: Sequence[LatencyCheck]) -> bytes:
    """Predicted vs measured latency with the y = x line; the title gives the MAPE."""
    predicted = [c.predicted_ms for c in checks]
    measured = [c.measured_ms for c in checks]
    error = 100.0 * mape(predicted, measured)
    fig, ax = _figure(f"Latency predictor vs measurement (MAPE {error:.1f}%, {len(checks)} models)")
    ax.scatter(measured, predicted, color=POINT_COLOR, s=30, zorder=3, label="architecture")
    low = min([*predicted, *measured])
    high = max([*predicted, *measured])
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="black", lw=1, ls="--", label="y = x")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.legend(loc="upper left", fontsize=9)
    return _png(fig)


def plot_train_curve(columns: dict[str, list[float]]) -> bytes:
    """Training loss against step, plus any other '*loss' column (validation, distillation)."""
    fig, ax = _figure("Super-network training loss")
    steps = columns["step"]
    for name, values in columns.items():
        if name == "step" or not name.endswith("loss"):
            continue
        pairs = [(s, v) for s, v in zip(steps, values, strict=True) if not math.isnan(v)]
        if pairs:
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], lw=1.4, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(loc="upper right", fontsize=9)
    return _png(fig)
