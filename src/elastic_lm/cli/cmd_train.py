"""``elastic-lm train``: train a super-network (MLM, CLM or classification) with a teacher."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.errors import UserError

HELP = "train a super-network (MLM, CLM or classification) with a teacher"
EXAMPLES = "  elastic-lm train configs/elm-mlm.yaml --set train.steps=500"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config_from_args(args)  # validate the config even before the command exists
    raise UserError("'elastic-lm train' is not available in this version yet (planned: issue #4)")
