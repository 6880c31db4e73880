"""Arguments and helpers that several commands share, so every command reads a config the same way."""

from __future__ import annotations

import argparse
from pathlib import Path

from elastic_lm.config import Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG (a YAML file), repeated ``--set section.key=value`` overrides, and ``--run-dir``."""
    parser.add_argument("config", nargs="?", help="YAML config file (defaults apply when omitted)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.steps=100 (repeatable)",
    )
    parser.add_argument("--run-dir", type=Path, help="run directory (overrides run_dir in the config)")
    parser.add_argument(
        "--budget", help="apply a named budget of the recipe, e.g. quick (CPU, minutes) or full (GPU)"
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config the user asked for: file, its --budget, --set overrides, then --run-dir."""
    overrides = list(args.overrides)
    if getattr(args, "run_dir", None) is not None:
        overrides.append(f"run_dir={args.run_dir}")
    config = load_config(args.config, overrides, budget=getattr(args, "budget", None))
    # Names the schema cannot check (the config package may not import the pipeline): search
    # objectives and constraints, so a typo fails now and not after training.
    from elastic_lm.pipeline.objectives import check_metric_names

    check_metric_names(config.search.objectives, config.search.constraints)
    return config
