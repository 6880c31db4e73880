"""``elastic-lm run``: the whole recipe of a config, stage by stage, resumably.

A pruning recipe (``pipeline: prune``) runs the stages of ``elastic-lm prune`` and then the report.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from elastic_lm.cli.common import add_config_arguments, add_restart_arguments, config_from_args, restart_aside
from elastic_lm.errors import UserError
from elastic_lm.pipeline.run import all_stage_names

HELP = "run the whole pipeline of a config, stage by stage, resumably"
EXAMPLES = (
    "  elastic-lm run configs/elm-mlm.yaml --budget quick\n"
    "  elastic-lm run configs/elm-mlm.yaml --from search --until report --set search.trials=200\n"
    "  elastic-lm run configs/prune-sentiment.yaml --budget quick   # a pruning recipe: prune, then report"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    stages = all_stage_names()
    parser.add_argument(
        "--from",
        dest="start",
        choices=stages,
        help="redo this stage and every stage after it that reads it (a stage of the config's recipe)",
    )
    parser.add_argument("--until", choices=stages, help="stop after this stage (of the config's recipe)")
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable summary (JSON) on stdout instead"
    )
    add_restart_arguments(parser, "the whole RUN_DIR")


def run(args: argparse.Namespace) -> int:
    from elastic_lm.pipeline.run import run_pipeline

    config = config_from_args(args)
    if args.restart:
        if args.start:
            raise UserError("--restart and --from contradict each other: --restart redoes every stage")
        restart_aside(config.run_dir, Path(config.run_dir), yes=args.yes)
    outcomes = run_pipeline(config, start=args.start, until=args.until)
    if args.json:
        rows = [(o.stage, o.status, o.seconds) for o in outcomes]
        print(json.dumps(summary_dict(Path(config.run_dir), rows), indent=2))
        return 0
    if config.pipeline == "prune":
        from elastic_lm.cli.cmd_prune import print_result
        from elastic_lm.pipeline.recipes.prune import prune_result

        print_result(prune_result(config, outcomes))
    print(summary(Path(config.run_dir), [(o.stage, o.status, o.seconds) for o in outcomes]))
    return 0


def summary_dict(run_dir: Path, stages: list[tuple[str, str, float]]) -> dict[str, object]:
    """What :func:`summary` says, for scripts: stages, report, Pareto rows, exported models."""
    out: dict[str, object] = {
        "run_dir": str(run_dir),
        "stages": [{"stage": s, "status": st, "seconds": round(t, 3)} for s, st, t in stages],
    }
    report = run_dir / "report" / "index.html"
    out["report"] = str(report) if report.is_file() else None
    pareto = run_dir / "report" / "pareto.csv"
    if pareto.is_file():
        with pareto.open(newline="", encoding="utf-8") as handle:
            out["pareto"] = list(csv.DictReader(handle))
    exported = run_dir / "export" / "index.json"
    out["exported"] = json.loads(exported.read_text(encoding="utf-8")) if exported.is_file() else []
    return out


def summary(run_dir: Path, stages: list[tuple[str, str, float]]) -> str:
    """What a person wants at the end: what ran, where the report is, the Pareto table."""
    lines = [f"run directory: {run_dir}"]
    lines += [f"  {stage:<9} {status:<8} {seconds:8.1f} s" for stage, status, seconds in stages]
    report = run_dir / "report" / "index.html"
    if report.is_file():
        lines.append(f"report: {report}")
    pareto = run_dir / "report" / "pareto.csv"
    if pareto.is_file():
        with pareto.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if rows:
            keep = [i for i, name in enumerate(rows[0]) if name != "architecture"]  # JSON: too wide
            rows = [[row[i] for i in keep if i < len(row)] for row in rows]
            lines.append(f"Pareto set (architectures in {pareto}):")
            widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
            for row in rows[:20]:
                lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))
    exported = run_dir / "export" / "index.json"
    if exported.is_file():
        lines.append(f"exported models: {exported.parent}")
    return "\n".join(lines)
