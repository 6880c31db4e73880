"""``elastic-lm report``: write the Pareto plots and the HTML report of a run directory."""

from __future__ import annotations

import argparse
import json
import webbrowser
from pathlib import Path

from elastic_lm.cli.common import add_config_arguments, run_config

HELP = "write the Pareto plots and the HTML report of a run directory"
EXAMPLES = (
    "  elastic-lm report runs/elm-mlm\n"
    "  elastic-lm report elm-mlm --budget quick          # the run directory of that recipe and budget\n"
    "  elastic-lm report runs/elm-mlm --compare runs/elm-mlm-random --open-browser yes"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)  # CONFIG|RUN_DIR, --set, --run-dir, --budget, --print-config
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


def target(args: argparse.Namespace) -> Path:
    """The run directory to report: RUN_DIR itself, or the run_dir a config or recipe resolves to."""
    from elastic_lm.config.recipes import recipe_names

    source = args.config
    plain = not args.overrides and not args.budget and args.run_dir is None
    missing = source is not None and not Path(source).exists()
    if plain and missing and Path(source).suffix not in (".yaml", ".yml") and source not in recipe_names():
        return Path(source)  # a run directory that is not there: the report names it
    config = run_config(args)
    if config is None:  # a run folder without config.yaml: read as it is
        return Path(args.run_dir) if args.run_dir is not None else Path(args.config)
    return Path(config.run_dir)


def run(args: argparse.Namespace) -> int:
    from elastic_lm.pipeline.lock import locked
    from elastic_lm.report import write_report

    run_dir = target(args)
    with locked(run_dir, create=False):  # not while another command writes there
        index = write_report(run_dir, tuple(args.compare))
    if args.json:
        pareto = index.parent / "pareto.csv"
        print(json.dumps({"report": str(index), "pareto_csv": str(pareto) if pareto.is_file() else None}))
    else:
        print(f"report written: {index}")
    if args.open_browser == "yes":
        webbrowser.open(index.resolve().as_uri())
    return 0
