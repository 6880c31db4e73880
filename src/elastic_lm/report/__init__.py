"""The report a person reads after a search: Pareto plots, hypervolume, tables, one HTML page.

Input is only the plain files a run directory holds (``docs/report.md``); no study is opened, so a
report can be rebuilt from a copied run folder on any machine with matplotlib::

    from elastic_lm.report import write_report
    index = write_report(Path("runs/elm-mlm"))   # runs/elm-mlm/report/index.html
"""

from __future__ import annotations

from pathlib import Path

from elastic_lm.report.build import (
    best_per_objective,
    make_figures,
    pareto_trials,
    warnings_for,
    write_pareto_csv,
)
from elastic_lm.report.inputs import RunData, load_run
from elastic_lm.report.page import render_html

__all__ = [
    "RunData",
    "best_per_objective",
    "load_run",
    "pareto_trials",
    "write_report",
]


def write_report(run_dir: Path, compare: tuple[Path, ...] = ()) -> Path:
    """Write ``RUN_DIR/report/`` (index.html, one PNG per figure, pareto.csv); return index.html.

    ``compare`` names other run directories (or summary.json files) whose hypervolume curves are drawn
    beside this run's, one line per strategy.
    """
    run = load_run(Path(run_dir), tuple(Path(p) for p in compare))
    members = pareto_trials(run.trials, run.summary.objectives)
    figures = make_figures(run, members)
    out = run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for figure in figures:
        (out / f"{figure.stem}.png").write_bytes(figure.png)
    write_pareto_csv(out / "pareto.csv", members, run.summary.objectives)
    index = out / "index.html"
    index.write_text(render_html(run, members, figures, warnings_for(run, members)), encoding="utf-8")
    return index
