"""``elastic-lm report``: write the Pareto plots and the HTML report of a run directory."""

from __future__ import annotations

import argparse
import json
import webbrowser
from pathlib import Path

HELP = "write the Pareto plots and the HTML report of a run directory"
EXAMPLES = (
    "  elastic-lm report runs/elm-mlm\n"
    "  elastic-lm report runs/elm-mlm --compare runs/elm-mlm-random --open-browser yes"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory with search/trials.json")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="another run (or its search/summary.json) whose hypervolume curve is drawn too (repeatable)",
    )
    parser.add_argument(
        "--open-browser",
        choices=("yes", "no"),
        default="no",
        help="open the finished report in the default web browser (default: no)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the written files (report page, Pareto CSV) as JSON"
    )


def run(args: argparse.Namespace) -> int:
    from elastic_lm.pipeline.lock import locked
    from elastic_lm.report import write_report

    with locked(args.run_dir, create=False):  # not while another command writes there
        index = write_report(args.run_dir, tuple(args.compare))
    if args.json:
        pareto = index.parent / "pareto.csv"
        print(json.dumps({"report": str(index), "pareto_csv": str(pareto) if pareto.is_file() else None}))
    else:
        print(f"report written: {index}")
    if args.open_browser == "yes":
        webbrowser.open(index.resolve().as_uri())
    return 0
