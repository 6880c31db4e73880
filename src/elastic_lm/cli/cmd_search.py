"""``elastic-lm search``: multi-objective search for the Pareto set of sub-networks."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.errors import UserError

HELP = "multi-objective search for the Pareto set of sub-networks of a trained super-network"
EXAMPLES = "  elastic-lm search configs/elm-mlm.yaml --set search.trials=100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config_from_args(args)  # validate the config even before the command exists
    raise UserError("'elastic-lm search' is not available in this version yet (planned: issue #5)")
