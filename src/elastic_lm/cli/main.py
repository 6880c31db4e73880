"""Entry point of the ``elastic-lm`` command: parse, dispatch, turn user mistakes into one-line errors.

Each subcommand lives in its own module ``elastic_lm.cli.cmd_<name>`` that defines ``HELP`` (one line),
``EXAMPLES`` (shown under ``--help``), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``elastic-lm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from elastic_lm import __version__
from elastic_lm.cli.faults import describe
from elastic_lm.errors import UserError

COMMANDS: tuple[str, ...] = (
    "assets",
    "train",
    "search",
    "export",
    "evaluate",
    "prune",
    "profile",
    "report",
    "run",
    "recipes",
)


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"elastic_lm.cli.cmd_{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the module of ``command`` (the one being run) is imported."""
    parser = argparse.ArgumentParser(
        prog="elastic-lm",
        description="Find compact, fast transformer language models by neural architecture search.",
        epilog="Run 'elastic-lm COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"elastic-lm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (any position)")
    add_verbosity_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if name != command:
            sub.add_parser(name, help=_SHORT_HELP[name])
            continue
        module = _command_module(name)
        child = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog="example:\n" + module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(child)
        add_verbosity_arguments(child)
    return parser


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, accepted before or after the command."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
        help="warnings and errors only: no progress bars or progress lines",
    )  # fmt: skip
    group.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="debug messages, and the INFO lines of Optuna, transformers and datasets",
    )  # fmt: skip


# One-line help shown by the top-level --help without importing every command's dependencies.
_SHORT_HELP: dict[str, str] = {
    "assets": "list the offline models and data sets, where they live, and how to install missing ones",
    "train": "train a super-network (MLM, CLM or classification) with a teacher",
    "search": "multi-objective search for the Pareto set of sub-networks",
    "export": "turn chosen sub-networks into standalone Hugging Face models",
    "evaluate": "fine-tune exported models on classification tasks (same budget each); decoder perplexity",
    "prune": "structural pruning of a pre-trained encoder on a labelled task",
    "profile": "measure latency on this machine and fit a latency predictor",
    "report": "write the Pareto plots and the HTML report of a run directory",
    "run": "run the whole pipeline of a config, stage by stage, resumably",
    "recipes": "list the shipped recipes (run one by name: elastic-lm run NAME --budget quick)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 user error, 1 internal error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list  # accepted anywhere: before or after the command
    args_list = [a for a in args_list if a != "--debug"]
    command = next((a for a in args_list if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 0
    from elastic_lm.progress import configure_logging

    quiet = getattr(args, "quiet", False)
    configure_logging(-1 if quiet else 1 if getattr(args, "verbose", False) else 0)
    if quiet and hasattr(args, "no_progress"):
        args.no_progress = True  # commands whose bars are drawn outside elastic_lm.progress
    try:
        if getattr(args, "print_config", False):
            from elastic_lm.cli.common import config_from_args, config_yaml

            resolve = getattr(_command_module(args.command), "config_of", config_from_args)
            print(config_yaml(resolve(args)), end="")
            return 0
        return int(_command_module(args.command).run(args) or 0)
    except UserError as error:
        if debug:
            raise
        print(f"elastic-lm {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # Output piped into e.g. `head` that closed early: not an error of ours or the user's.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"elastic-lm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a full disk, a truncated file...: one line, unless --debug
        message = None if debug else describe(error)
        if message is None:
            raise  # a bug of ours: the traceback is what a report needs
        print(f"elastic-lm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
