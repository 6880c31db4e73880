"""``elastic-lm export``: turn chosen sub-networks into standalone Hugging Face models."""

from __future__ import annotations

import argparse

from elastic_lm.cli.common import add_config_arguments
from elastic_lm.errors import UserError

HELP = "turn chosen sub-networks into standalone Hugging Face models"
EXAMPLES = "  elastic-lm export runs/elm-mlm --pareto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    raise UserError("'elastic-lm export' is not available in this version yet (planned: issue #3)")
