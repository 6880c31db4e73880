"""``elastic-lm prune``: structural pruning of a pre-trained encoder on a labelled task (Klein et al.)."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.errors import UserError

HELP = "structural pruning of a pre-trained encoder on a labelled task (Klein et al.)"
EXAMPLES = "  elastic-lm prune configs/prune-sentiment.yaml --baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config_from_args(args)  # validate the config even before the command exists
    raise UserError("'elastic-lm prune' is not available in this version yet (planned: issue #6)")
