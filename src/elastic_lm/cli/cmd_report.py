"""``elastic-lm report``: write the Pareto plots and the HTML report of a run directory."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments
from elastic_lm.errors import UserError

HELP = "write the Pareto plots and the HTML report of a run directory"
EXAMPLES = "  elastic-lm report runs/elm-mlm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    raise UserError("'elastic-lm report' is not available in this version yet (planned: issue #5)")
