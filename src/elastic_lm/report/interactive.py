"""The report's interactive figures: plotly, with plotly.js inlined so the page works offline.

plotly is part of the ``report`` extra; without it the page falls back to the static PNGs of
:mod:`elastic_lm.report.plots`. Hovering a point shows the trial, its architecture and every metric it
reports; clicking it scrolls to that trial's table row. The bundle comes from the installed ``plotly``
package (never a CDN), so a page sent by mail or opened on a machine without a network still draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from elastic_lm.report.build import axes_for
from elastic_lm.report.inputs import NamedPoint, Objective, RunData, Trial
from elastic_lm.report.labels import describe_architecture, display, format_value, objective_display
from elastic_lm.search.pareto import front_mask, step_line

FRONT_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"
BASELINE_SYMBOLS = ("square", "diamond", "triangle-up", "triangle-down", "cross", "x", "star")
BASELINE_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# At the end of the page: each plot is sized again to its grid cell (it was drawn while the page was
# still being parsed, when the grid had fewer cells), and a click on a trial's point scrolls to its row
# (the Pareto table first, else the collapsed list of all trials).
CLICK_SCRIPT = """
document.querySelectorAll('.js-plotly-plot').forEach(function (div) {
  Plotly.Plots.resize(div);
  div.on('plotly_click', function (event) {
    var n = event.points[0].customdata;
    if (n === undefined || n === null) { return; }
    var row = document.getElementById('trial-' + n) || document.getElementById('all-trial-' + n);
    if (!row) { return; }
    var details = row.closest('details');
    if (details) { details.open = true; }
    row.scrollIntoView({behavior: 'smooth', block: 'center'});
  });
});
"""


@dataclass(frozen=True)
class InteractiveFigure:
    """One figure as an HTML fragment (a div and the script that draws it) plus how many markers it has."""

    stem: str
    title: str
    caption: str
    html: str
    markers: int  # points drawn as markers, what a browser test counts


def available() -> bool:
    """Whether plotly is installed (the ``report`` extra); otherwise the page shows PNGs."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def plotly_bundle() -> str:
    """plotly.js from the installed package, safe to put inside a ``<script>`` element."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().replace("</script", "<\\/script")


def hover_text(name: str, architecture: str, metrics: dict[str, float]) -> str:
    """What a hovered point shows: who it is, its architecture and every metric it reports."""
    lines = [f"<b>{escape(name)}</b>"]
    if architecture:
        lines.append(escape(architecture))
    lines += [f"{escape(k)}: {escape(format_value(k, v))}" for k, v in sorted(metrics.items())]
    return "<br>".join(lines)


def _trial_hover(t: Trial) -> str:
    state = "" if t.usable else f" ({t.state}{'' if t.feasible else ', infeasible'})"
    arch = describe_architecture(t.architecture) if t.architecture is not None else ""
    return hover_text(f"trial {t.number}{state}", arch, t.metrics)


def _scatter(trials: Sequence[Trial], x: Objective, y: Objective, **style: Any) -> Any:
    import plotly.graph_objects as go

    dx, dy = objective_display(x), objective_display(y)
    return go.Scatter(
        x=[t.metrics[x.name] * dx.scale for t in trials],
        y=[t.metrics[y.name] * dy.scale for t in trials],
        mode="markers",
        customdata=[t.number for t in trials],
        hovertext=[_trial_hover(t) for t in trials],
        hoverinfo="text",
        **style,
    )


def pareto_figure(
    trials: Sequence[Trial],
    x: Objective,
    y: Objective,
    pareto_numbers: Sequence[int] = (),
    baselines: Sequence[NamedPoint] = (),
) -> tuple[Any, int]:
    """The interactive twin of ``plots.plot_pareto``; returns (figure, number of markers)."""
    import plotly.graph_objects as go

    dx, dy = objective_display(x), objective_display(y)
    rows = [t for t in trials if x.name in t.metrics and y.name in t.metrics]
    usable = [t for t in rows if t.usable]
    other = [t for t in rows if not t.usable]
    mask = front_mask([(t.metrics[x.name], t.metrics[y.name]) for t in usable], (x.direction, y.direction))
    front = [t for t, keep in zip(usable, mask, strict=True) if keep]
    on_front = {t.number for t in front}
    wanted = set(pareto_numbers)
    hidden = [t for t in usable if t.number in wanted and t.number not in on_front]
    rest = [t for t in usable if t.number not in on_front and t.number not in wanted]
    traces = []
    if other:
        traces.append(
            _scatter(
                other,
                x,
                y,
                name=f"infeasible / failed ({len(other)})",
                marker={"symbol": "x", "color": "#999999", "size": 7},
            )
        )
    if rest:
        traces.append(
            _scatter(
                rest,
                x,
                y,
                name=f"evaluated ({len(rest)})",
                marker={"color": POINT_COLOR, "opacity": 0.45, "size": 8},
            )
        )
    if front:
        xs, ys = step_line(
            [(t.metrics[x.name], t.metrics[y.name]) for t in front], (x.direction, y.direction)
        )
        traces.append(
            go.Scatter(
                x=[v * dx.scale for v in xs],
                y=[v * dy.scale for v in ys],
                mode="lines",
                line={"color": FRONT_COLOR, "width": 1.5},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        traces.append(
            _scatter(
                front,
                x,
                y,
                name=f"Pareto front of this pair ({len(front)})",
                marker={"color": FRONT_COLOR, "size": 10},
            )
        )
    if hidden:
        traces.append(
            _scatter(
                hidden,
                x,
                y,
                name=f"Pareto set, all objectives ({len(hidden)} more)",
                marker={"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": FRONT_COLOR, "width": 2}},
            )
        )
    shown = [b for b in baselines if x.name in b.metrics and y.name in b.metrics]
    for i, base in enumerate(shown):
        label = escape(base.name)  # plotly draws names as HTML; a baseline's name is user input
        traces.append(
            go.Scatter(
                x=[base.metrics[x.name] * dx.scale],
                y=[base.metrics[y.name] * dy.scale],
                mode="markers+text",
                text=[label],
                textposition="top right",
                name=label,
                hovertext=[hover_text(f"baseline {base.name}", "", base.metrics)],
                hoverinfo="text",
                marker={
                    "symbol": BASELINE_SYMBOLS[i % len(BASELINE_SYMBOLS)],
                    "size": 12,
                    "color": BASELINE_COLORS[i % len(BASELINE_COLORS)],
                    "line": {"color": "black", "width": 1},
                },
            )
        )
    fig = go.Figure(traces)
    fig.update_layout(
        xaxis_title=_axis_title(dx.label, x.direction),
        yaxis_title=_axis_title(dy.label, y.direction),
        **_layout(f"Pareto front: {dy.name} vs {dx.name}"),
    )
    return fig, len(rows) + len(shown)


def history_figure(trials: Sequence[Trial], objectives: Sequence[Objective]) -> tuple[Any, int]:
    """Each objective against the trial number, with the best value so far as a line: the search's
    history, one row per objective. Returns (figure, number of markers)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(objectives), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    markers = 0
    for row, objective in enumerate(objectives, start=1):
        shown = display(objective.name, objective.unit)
        points = sorted(
            (t for t in trials if t.usable and objective.name in t.metrics), key=lambda t: t.number
        )
        markers += len(points)
        values = [t.metrics[objective.name] * shown.scale for t in points]
        pick = min if objective.direction == "minimize" else max
        best = list(itertools.accumulate(values, pick))
        fig.add_trace(
            go.Scatter(
                x=[t.number for t in points],
                y=values,
                mode="markers",
                name=shown.name,
                customdata=[t.number for t in points],
                hovertext=[_trial_hover(t) for t in points],
                hoverinfo="text",
                marker={"color": POINT_COLOR, "opacity": 0.6, "size": 7},
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[t.number for t in points],
                y=best,
                mode="lines",
                line_shape="hv",
                name=f"best {shown.name} so far",
                line={"color": FRONT_COLOR, "width": 1.5},
                hoverinfo="skip",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=_axis_title(shown.label, objective.direction), row=row, col=1)
    fig.update_xaxes(title_text="trial number", row=len(objectives), col=1)
    layout = _layout("Search history: every objective per trial, best so far")
    layout["height"] = 220 + 200 * len(objectives)
    fig.update_layout(**layout)
    return fig, markers


def hypervolume_figure(run: RunData) -> tuple[Any, int] | None:
    """Hypervolume after each evaluation, one line per strategy (``--compare``), markers at each step."""
    import plotly.graph_objects as go

    summaries = [s for s in (run.summary, *run.extra_summaries) if s.hypervolume]
    if not summaries:
        return None
    traces = [
        go.Scatter(
            x=[p[0] for p in s.hypervolume],
            y=[p[1] for p in s.hypervolume],
            mode="lines+markers",
            line_shape="hv",
            name=f"{s.strategy} (final {s.hypervolume[-1][1]:.4g})",
            hovertemplate="%{x} evaluations: %{y:.4g}<extra>" + s.strategy + "</extra>",
        )
        for s in summaries
    ]
    fig = go.Figure(traces)
    fig.update_layout(
        xaxis_title="evaluations (trials)",
        yaxis_title="hypervolume (higher is better)",
        **_layout("Dominated hypervolume over evaluations"),
    )
    return fig, sum(len(s.hypervolume) for s in summaries)


def _arrow(direction: str) -> str:
    return "lower is better" if direction == "minimize" else "higher is better"


def _axis_title(label: str, direction: str, width: int = 40) -> str:
    """Label and direction, broken into lines of about ``width`` characters: plotly never wraps an axis
    title, and a long one is cut at the figure's edge."""
    lines: list[str] = []
    for word in f"{escape(label)}, {_arrow(direction)}".split(" "):
        if lines and len(lines[-1]) + len(word) < width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def _layout(title: str) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "template": "plotly_white",
        "height": 460,
        "margin": {"l": 100, "r": 20, "t": 50, "b": 60},
        "legend": {"font": {"size": 10}},
        "hoverlabel": {"align": "left"},
    }


def _fragment(fig: Any, stem: str) -> str:
    import plotly.io as pio

    html: str = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{stem}", config=PLOT_CONFIG
    )
    return html


def interactive_figures(run: RunData, members: Sequence[Trial]) -> list[InteractiveFigure]:
    """Every Pareto pair, the search history and the hypervolume curve as interactive figures."""
    objectives = run.summary.objectives
    numbers = [t.number for t in members]
    out = []
    for first, second in itertools.combinations(objectives, 2):
        x, y = axes_for(first, second)
        stem = f"pareto_{y.name}_vs_{x.name}"
        fig, markers = pareto_figure(run.trials, x, y, numbers, run.baselines)
        out.append(
            InteractiveFigure(
                stem=stem,
                title=f"Pareto front: {display(y.name).name} vs {display(x.name).name}",
                caption="hover a point for its architecture and metrics, click it for its table row; "
                "red: non-dominated for this pair; hollow red: Pareto-optimal over all objectives; "
                "labelled markers: baselines.",
                html=_fragment(fig, stem),
                markers=markers,
            )
        )
    fig, markers = history_figure(run.trials, objectives)
    out.append(
        InteractiveFigure(
            stem="history",
            title="Search history",
            caption="every complete, feasible trial's objectives in the order they ran; the line is the "
            "best value so far.",
            html=_fragment(fig, "history"),
            markers=markers,
        )
    )
    volume = hypervolume_figure(run)
    if volume is not None:
        out.append(
            InteractiveFigure(
                stem="hypervolume",
                title="Hypervolume over evaluations",
                caption="volume of objective space dominated by the front so far, relative to the "
                "reference point; a flat tail means the search has converged.",
                html=_fragment(volume[0], "hypervolume"),
                markers=volume[1],
            )
        )
    return out
