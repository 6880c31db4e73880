"""Arguments and helpers that several commands share, so every command reads a config the same way."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from elastic_lm.config import Config, load_config
from elastic_lm.errors import ConfigError, UserError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG (a YAML file), repeated ``--set section.key=value`` overrides, and ``--run-dir``."""
    parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG|RUN_DIR",
        help="a YAML config, a shipped recipe's name (elastic-lm recipes) or a run directory (its saved "
        "config.yaml); the defaults apply when omitted",
    )
    parser.add_argument("--run-dir", type=Path, help="run directory (overrides run_dir in the config)")
    add_override_arguments(parser)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (repeatable), ``--budget NAME`` and ``--print-config``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.steps=100 (repeatable)",
    )
    parser.add_argument(
        "--budget", help="apply a named budget of the recipe, e.g. quick (CPU, minutes) or full (GPU)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (file, budget, --set, --run-dir) as YAML and exit",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config the user asked for: file, its --budget, --set overrides, then --run-dir."""
    overrides = list(args.overrides)
    source = args.config
    if source is not None and Path(source).is_dir():
        saved = Path(source) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(
                f"{source} is a folder without config.yaml; pass a YAML config or a run directory "
                "that a command has written"
            )
        source = saved
        if getattr(args, "run_dir", None) is None:
            overrides.insert(0, f"run_dir={args.config}")  # the folder itself, wherever it is now
    if getattr(args, "run_dir", None) is not None:
        overrides.append(f"run_dir={args.run_dir}")
    config = load_config(source, overrides, budget=getattr(args, "budget", None))
    # Names the schema cannot check (the config package may not import the pipeline): search
    # objectives and constraints, so a typo fails now and not after training.
    from elastic_lm.pipeline.objectives import check_metric_names

    check_metric_names(config.search.objectives, config.search.constraints)
    return config


def run_config(args: argparse.Namespace) -> Config | None:
    """The config behind ``CONFIG|RUN_DIR`` for commands that read a finished run (report, export).

    A run directory's saved config.yaml, a YAML file or a recipe name, with ``--budget`` and ``--set``
    applied (a budget may name another run directory, e.g. ``runs/elm-mlm-quick``). None for a folder
    without config.yaml when nothing is to be applied: such a folder is read as it is.
    """
    source = args.config
    if source is not None and Path(source).is_dir() and not (Path(source) / "config.yaml").is_file():
        if args.overrides or getattr(args, "budget", None):
            raise ConfigError(
                f"{source} has no config.yaml, so --set / --budget have nothing to apply to; pass a "
                "run directory that a command wrote, a YAML config or a recipe name"
            )
        return None
    return config_from_args(args)


def config_yaml(config: Config) -> str:
    """The resolved config as the YAML a run directory saves (``--print-config``)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def add_restart_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--restart`` (start over; the old folder is set aside, never deleted) and ``--yes``."""
    parser.add_argument(
        "--restart",
        action="store_true",
        help=f"start over instead of resuming: {what} is renamed aside (asks first; nothing is deleted)",
    )
    parser.add_argument("--yes", action="store_true", help="with --restart: do not ask")


def set_aside(folder: Path, yes: bool = False) -> Path | None:
    """Rename ``folder`` to ``NAME.before-restart-TIME`` after the user agrees; None when it is absent.

    Asks on a terminal; elsewhere ``--yes`` is required, so a script never loses a run by surprise.
    """
    if not folder.exists():
        return None
    target = folder.with_name(f"{folder.name}.before-restart-{time.strftime('%Y%m%d-%H%M%S')}")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"--restart would move {folder} to {target}; confirm with --yes")
        answer = input(f"move {folder} aside to {target} and start over? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise UserError(f"not restarted: {folder} is untouched")
    folder.rename(target)
    return target


def restart_aside(run_dir: str | Path, folder: Path, yes: bool = False) -> None:
    """``--restart``: set ``folder`` (inside ``run_dir``, or ``run_dir`` itself) aside under the run's lock.

    The lock is taken first, so a command still writing into the run directory is named and nothing
    moves; a moved run directory does not carry our lock file along.
    """
    from elastic_lm.pipeline.lock import LOCK_NAME, locked

    with locked(run_dir, "elastic-lm --restart", create=False):
        moved = set_aside(folder, yes=yes)
    if moved is None:
        return
    if Path(folder).resolve() == Path(run_dir).resolve():
        (moved / LOCK_NAME).unlink(missing_ok=True)
    print(f"{folder} moved to {moved}; starting over", file=sys.stderr)
