"""``elastic-lm run``: run the whole pipeline of a config, stage by stage, resumably."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.errors import UserError

HELP = "run the whole pipeline of a config, stage by stage, resumably"
EXAMPLES = "  elastic-lm run configs/elm-mlm.yaml --until search"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config_from_args(args)  # validate the config even before the command exists
    raise UserError("'elastic-lm run' is not available in this version yet (planned: issue #7)")
