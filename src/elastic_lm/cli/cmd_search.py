"""``elastic-lm search``: multi-objective search for the Pareto set of sub-networks."""

from __future__ import annotations

import argparse
import json
import sys

from elastic_lm.cli.common import add_config_arguments, add_restart_arguments, config_from_args, restart_aside
from elastic_lm.errors import UserError
from elastic_lm.pipeline.rundir import RunDirectory

HELP = "multi-objective search for the Pareto set of sub-networks of a trained super-network"
EXAMPLES = (
    "  elastic-lm search configs/elm-mlm.yaml --set search.trials=100\n"
    "  elastic-lm search configs/elm-mlm.yaml --trials 200          # continue the same study\n"
    "  elastic-lm search configs/elm-mlm.yaml --workers-storage runs/shared/search.journal"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--trials", type=int, help="size the study should reach (search.trials); a re-run continues it"
    )
    parser.add_argument(
        "--strategy",
        help="random, stratified, local, mo-rea, nsga2, motpe or gp (search.strategy)",
    )
    parser.add_argument(
        "--workers-storage",
        metavar="URL",
        help="shared study for several workers: a journal file (*.journal), SQLite path or "
        "postgresql:// URL (default RUN_DIR/search/study.db)",
    )
    add_restart_arguments(parser, "RUN_DIR/search (the study and its results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a summary (trials, Pareto trial numbers, hypervolume) as JSON",
    )


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.trials is not None:
        overrides.append(f"search.trials={args.trials}")
    if args.strategy is not None:
        overrides.append(f"search.strategy={args.strategy}")
    args.overrides = overrides
    config = config_from_args(args)
    if args.restart:
        if args.workers_storage:
            raise UserError(
                "--restart sets RUN_DIR/search aside, not a shared study; give --workers-storage a new "
                "study URL instead"
            )
        restart_aside(config.run_dir, RunDirectory(config.run_dir).stage_dir("search"), yes=args.yes)
    from elastic_lm.pipeline.search_stage import run_search_stage  # torch & co. only when searching

    result = run_search_stage(config, storage=args.workers_storage, progress=not args.no_progress)
    if args.json:
        summary = {
            "trials": result.n_trials,
            "pareto": list(result.pareto),
            "hypervolume": result.hypervolume,
            "search_dir": str(result.search_dir),
            "latency_check": str(result.latency_check) if result.latency_check else None,
        }
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"search: {result.n_trials} trials, {len(result.pareto)} on the Pareto front, "
        f"hypervolume {result.hypervolume:.4f}; wrote {result.search_dir}/trials.json and summary.json",
        file=sys.stderr,
    )
    if result.latency_check is not None:
        print(f"search: re-measured the Pareto set -> {result.latency_check}", file=sys.stderr)
    return 0
