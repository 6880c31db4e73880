"""The one self-contained HTML page: inline CSS and scripts, images as data URIs, no external requests.

With plotly installed the Pareto fronts, the search history and the hypervolume are interactive (plotly.js
is inlined, :mod:`elastic_lm.report.interactive`); without it the page shows the same figures as PNGs.

Every piece of text from the run (names, paths, architecture descriptions) goes through :func:`_e`
(``html.escape``), because a baseline or model name is user input and the page is opened in a browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from elastic_lm import __version__
from elastic_lm.report.build import FigurePng, best_per_objective
from elastic_lm.report.embedding import embedding_section
from elastic_lm.report.inputs import Downstream, NamedPoint, Objective, RunData, Trial
from elastic_lm.report.interactive import CLICK_SCRIPT, InteractiveFigure, plotly_bundle
from elastic_lm.report.labels import COUNTS, describe_architecture, format_value
from elastic_lm.report.sections import config_section, latency_section

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
header{background:#1f3a5f;color:#fff;padding:20px 24px}
header h1{margin:0 0 4px;font-size:1.6em}
header p{margin:0;opacity:.85}
h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
.summary{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.35em}
.card span{color:#57606a;font-size:.85em}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:8px 14px;margin:12px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:16px}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:0;padding:8px;min-width:0}
figure .js-plotly-plot,figure .plotly-graph-div{width:100%!important}
figure.wide{grid-column:1/-1}
figure img{width:100%;height:auto;display:block}
figcaption{color:#57606a;font-size:.85em;padding:4px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:.88em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.arch{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
tr.front td{background:#fff1f0}
details{margin-top:12px}
summary{cursor:pointer;font-weight:600}
pre{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px;overflow:auto;font-size:.8em}
.muted{color:#57606a}
footer{color:#57606a;font-size:.8em;margin-top:40px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(headers: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cells(values: Sequence[str], cls: str = "num") -> str:
    return "".join(f'<td class="{cls}">{_e(v)}</td>' for v in values)


def _metric_header(objective: Objective) -> str:
    arrow = "↓" if objective.direction == "minimize" else "↑"
    shown_scaled = objective.name in COUNTS  # cells already say 'M' / 'G'
    unit = f" ({objective.unit})" if objective.unit and not shown_scaled else ""
    return f"{objective.name}{unit} {arrow}"


def _summary_box(run: RunData, members: Sequence[Trial]) -> str:
    objectives = run.summary.objectives
    cards = [
        (str(len(run.trials)), "evaluations"),
        (str(sum(t.usable for t in run.trials)), "complete and feasible"),
        (str(len(members)), "Pareto-optimal"),
    ]
    for name, trial in best_per_objective(run.trials, objectives).items():
        cards.append((format_value(name, trial.metrics[name]), f"best {name} (trial {trial.number})"))
    if run.summary.hypervolume:
        cards.append((f"{run.summary.hypervolume[-1][1]:.4g}", "final hypervolume"))
    inner = "".join(f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for v, k in cards)
    return f"<div class='summary'>{inner}</div>"


def _pareto_table(members: Sequence[Trial], objectives: Sequence[Objective]) -> str:
    headers = ["trial", *(_metric_header(o) for o in objectives), "depth", "hidden", "architecture"]
    rows = []
    for t in members:
        arch = t.architecture
        rows.append(
            f"<tr id='trial-{t.number}'>"
            + _cells([str(t.number), *(format_value(o.name, t.metrics[o.name]) for o in objectives)])
            + _cells(["–" if arch is None else str(arch.depth), "–" if arch is None else str(arch.hidden)])
            + f"<td class='arch'>{_e(describe_architecture(arch))}</td></tr>"
        )
    return _table(headers, rows)


def _named_table(points: Sequence[NamedPoint], objectives: Sequence[Objective], with_path: bool) -> str:
    names = [o.name for o in objectives]
    extra = sorted({k for p in points for k in p.metrics} - set(names))
    headers = ["name", *(_metric_header(o) for o in objectives), *extra]
    if with_path:
        headers += ["loads as", "folder and card"]
    rows = []
    for p in points:
        row = f"<tr><td>{_e(p.name)}</td>" + _cells(
            [format_value(k, p.metrics.get(k)) for k in (*names, *extra)]
        )
        if with_path:
            row += f"<td>{_e(_LOADS_AS.get(p.format, p.format or 'not recorded'))}</td>"
            row += f"<td class='arch'>{_links(p.path)}</td>"
        rows.append(row + "</tr>")
    return _table(headers, rows)


_LOADS_AS = {"stock": "stock transformers class", "elastic-lm": "elastic-lm class"}


def _links(path: str) -> str:
    """Links from ``RUN_DIR/report/index.html`` to the exported folder and its model card."""
    if not path:
        return ""
    href = "../" + path.strip("/")
    return f"<a href='{_e(href)}/'>{_e(path)}</a> (<a href='{_e(href)}/README.md'>card</a>)"


def _trials_table(run: RunData, members: Sequence[Trial]) -> str:
    objectives = run.summary.objectives
    names = [o.name for o in objectives]
    extra = sorted({k for t in run.trials for k in t.metrics} - set(names))
    front = {t.number for t in members}
    headers = ["trial", "state", "feasible", *(_metric_header(o) for o in objectives), *extra, "architecture"]
    rows = []
    for t in run.trials:
        cls = " class='front'" if t.number in front else ""
        rows.append(
            f"<tr id='all-trial-{t.number}'{cls}>"
            + _cells([str(t.number)])
            + _cells([t.state, "yes" if t.feasible else "no"], cls="")
            + _cells([format_value(k, t.metrics.get(k)) for k in (*names, *extra)])
            + f"<td class='arch'>{_e(describe_architecture(t.architecture))}</td></tr>"
        )
    return _table(headers, rows)


def _downstream_section(down: Downstream) -> str:
    """Encoders: accuracy / F1 per task and their mean (a GLUE-style table); decoders: perplexity."""
    parts = ["<h2>Downstream evaluation</h2>"]
    if down.encoders:
        budget = f" for {down.steps} steps" if down.steps else ""
        parts.append(
            f"<p class='muted'>Each encoder fine-tuned on each task with the same seeded budget{_e(budget)}; "
            "test-split accuracy / F1 (binary for two classes, else macro). Also in "
            "<code>evaluate/downstream.csv</code>.</p>"
        )
        headers = ["model", "params", *(f"{t} acc / F1" for t in down.tasks), "average acc / F1"]
        rows = []
        for row in down.encoders:
            pairs = [row.scores.get(t, {}) for t in down.tasks] + [row.average]
            cells = [
                f"{format_value('acc', p.get('accuracy'))} / {format_value('f1', p.get('f1'))}" for p in pairs
            ]
            rows.append(
                f"<tr><td>{_e(row.name)}</td>"
                + _cells([format_value("params", row.params), *cells])
                + "</tr>"
            )
        parts.append(_table(headers, rows))
    if down.decoders:
        parts.append("<p class='muted'>Decoders: held-out perplexity and greedy continuations.</p>")
        rows = []
        for row in down.decoders:
            samples = "<br>".join(f"<b>{_e(p)}</b>{_e(c)}" for p, c in row.samples)
            rows.append(
                f"<tr><td>{_e(row.name)}</td>"
                + _cells([format_value("params", row.params), format_value("perplexity", row.perplexity)])
                + f"<td>{samples}</td></tr>"
            )
        parts.append(_table(["model", "params", "perplexity ↓", "samples"], rows))
    return "\n".join(parts)


def _figures_section(figures: Sequence[FigurePng], interactive: Sequence[InteractiveFigure]) -> list[str]:
    """Interactive figures first; a PNG only where no interactive figure has its stem."""
    live = {f.stem for f in interactive}
    static = [f for f in figures if f.stem not in live]
    if not static and not interactive:
        return []
    parts = ["<h2>Plots</h2><div class='figs'>"]
    for fig in interactive:
        parts.append(
            f"<figure id='fig-{_e(fig.stem)}' class='interactive{_wide(fig.stem)}' "
            f"data-markers='{fig.markers}'>{fig.html}<figcaption>{_e(fig.caption)}</figcaption></figure>"
        )
    for png in static:
        parts.append(
            f"<figure id='fig-{_e(png.stem)}'><img src='{data_uri(png.png)}' alt='{_e(png.title)}'>"
            f"<figcaption>{_e(png.caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return parts


def _wide(stem: str) -> str:
    return " wide" if stem == "history" else ""


def render_html(
    run: RunData,
    members: Sequence[Trial],
    figures: Sequence[FigurePng],
    warnings: Sequence[str],
    interactive: Sequence[InteractiveFigure] = (),
) -> str:
    """The whole page as one string; ``interactive`` figures replace the PNGs of the same stem."""
    objectives = run.summary.objectives
    strategy = run.summary.strategy
    directions = ", ".join(f"{o.name} ({o.direction})" for o in objectives)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>elastic-lm report: {_e(run.name)}</title><style>{CSS}</style>",
        f"<script>{plotly_bundle()}</script>" if interactive else "",
        "</head><body>",
        f"<header><h1>elastic-lm report: {_e(run.name)}</h1>",
        f"<p>search finished {_e(run.date)} · strategy {_e(strategy)} · objectives {_e(directions)}</p>",
        "</header><main>",
        "<h2>Summary</h2>",
        _summary_box(run, members),
    ]
    parts += [f"<div class='warn'>⚠ {_e(w)}</div>" for w in warnings]
    parts += _figures_section(figures, interactive)
    parts += [
        f"<h2>Pareto set ({len(members)} architectures)</h2>",
        "<p class='muted'>Non-dominated over all objectives, recomputed from the trials; also in "
        "<code>report/pareto.csv</code>. Layers: <code>heads h / FFN</code>, <code>–</code> = dropped.</p>",
        _pareto_table(members, objectives),
    ]
    if run.baselines:
        parts += ["<h2>Baselines</h2>", _named_table(run.baselines, objectives, with_path=False)]
    if run.exports:
        missing = [p.name for p in run.exports if p.path and not (run.run_dir / p.path).exists()]
        parts += ["<h2>Exported models</h2>", _named_table(run.exports, objectives, with_path=True)]
        if missing:
            parts.append(f"<div class='warn'>⚠ {_e('exported paths not found: ' + ', '.join(missing))}</div>")
    parts.append(latency_section(run.latency))
    parts.append(embedding_section(run.run_dir))
    if run.downstream is not None:
        parts.append(_downstream_section(run.downstream))
    parts += [
        config_section(run.run_dir),
        f"<details><summary>All {len(run.trials)} trials (Pareto members shaded)</summary>",
        _trials_table(run, members),
        "</details>",
        f"<footer>Generated {_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} by elastic-lm "
        f"{_e(__version__)} from {_e(Path(run.trials_file).name)} in {_e(run.run_dir)}.</footer>",
        "</main>",
        f"<script>{CLICK_SCRIPT}</script>" if interactive else "",
        "</body></html>",
    ]
    return "\n".join(parts)
