"""The report a person reads after a search: Pareto plots, hypervolume, tables, one HTML page.

Input is only the plain files a run directory holds (``docs/report.md``); no study is opened, so a
report can be rebuilt from a copied run folder on any machine with matplotlib (and plotly, for the
interactive figures)::

    from elastic_lm.report import write_report
    index = write_report(Path("runs/elm-mlm"))   # runs/elm-mlm/report/index.html
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from elastic_lm.io import atomic_write_bytes, atomic_write_text
from elastic_lm.report.build import (
    best_per_objective,
    make_figures,
    pareto_trials,
    warnings_for,
    write_pareto_csv,
)
from elastic_lm.report.inputs import RunData, load_run
from elastic_lm.report.interactive import available as plotly_available
from elastic_lm.report.interactive import interactive_figures
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
    interactive = interactive_figures(run, members) if plotly_available() else []
    html = render_html(run, members, figures, warnings_for(run, members), interactive)  # before writing
    # Every file goes to a temporary name and is renamed: a full disk or a kill leaves the last
    # complete report, never a truncated page or figure.
    out.mkdir(parents=True, exist_ok=True)
    for figure in figures:
        atomic_write_bytes(out / f"{figure.stem}.png", figure.png)
    scratch_name = f".pareto.csv.elm{os.getpid()}."  # cleaned by the next write if we are killed
    with tempfile.TemporaryDirectory(prefix=scratch_name, suffix=".tmp", dir=out) as scratch:
        write_pareto_csv(Path(scratch) / "pareto.csv", members, run.summary.objectives)
        atomic_write_bytes(out / "pareto.csv", (Path(scratch) / "pareto.csv").read_bytes())
    return atomic_write_text(out / "index.html", html)
