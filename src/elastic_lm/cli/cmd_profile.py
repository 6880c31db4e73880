"""``elastic-lm profile``: measure latency on this machine and fit a latency predictor."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.errors import UserError

HELP = "measure latency on this machine and fit a latency predictor"
EXAMPLES = "  elastic-lm profile configs/elm-mlm.yaml --samples 64"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config_from_args(args)  # validate the config even before the command exists
    raise UserError("'elastic-lm profile' is not available in this version yet (planned: issue #5)")
