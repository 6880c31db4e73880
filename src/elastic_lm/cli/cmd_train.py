"""``elastic-lm train``: train a super-network (MLM, CLM or classification) with a teacher."""

from __future__ import annotations

import argparse
import functools
import json
import sys

from elastic_lm.cli.common import add_config_arguments, add_restart_arguments, config_from_args, restart_aside
from elastic_lm.errors import UserError
from elastic_lm.pipeline.rundir import RunDirectory

HELP = "train a super-network (MLM, CLM or classification) with a teacher"
EXAMPLES = (
    "  elastic-lm train configs/elm-mlm.yaml --set train.steps=500\n"
    "  elastic-lm train configs/elm-mlm.yaml            # again: resumes from the newest checkpoint\n"
    "  elastic-lm train configs/elm-mlm.yaml --restart  # start over (the old RUN_DIR/train is kept aside)\n"
    "  torchrun --nproc_per_node 4 -m elastic_lm.cli.main train configs/elm-mlm.yaml"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in RUN_DIR/train/checkpoints (the default now)",
    )
    add_restart_arguments(parser, "RUN_DIR/train")
    parser.add_argument(
        "--json", action="store_true", help="print the outcome (steps, final loss, super-network) as JSON"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.restart and args.resume:
        raise UserError("--restart and --resume contradict each other; pick one")
    if args.restart:
        restart_aside(config.run_dir, RunDirectory(config.run_dir).stage_dir("train"), yes=args.yes)
    resume = not args.restart
    from elastic_lm.pipeline.engine import run_recipe
    from elastic_lm.pipeline.recipes.nas import RECIPE
    from elastic_lm.pipeline.stages import train_stage  # torch & co. only when training

    train = functools.partial(train_stage, resume=resume, progress=not args.no_progress)
    outcomes = run_recipe(
        RECIPE,
        config,
        start="train",
        until="train",
        stages={"train": train},
        redo=False,  # a changed setting is refused, never a reason to replace checkpoints
        resume=resume,
        log=None,
    )
    outputs = outcomes[-1].outputs
    if outputs and args.json:
        print(json.dumps(outputs, indent=2, default=str))
        return 0
    if outputs:  # the main process
        loss = outputs.get("final_loss")
        # None: resumed at the last step, nothing left to train (the checkpoint is complete)
        done = f"loss {loss:.4f}" if isinstance(loss, float) else "already finished: no step left"
        print(
            f"trained to step {outputs['steps']} ({done}); super-network saved in {outputs['supernet']}",
            file=sys.stderr,
        )
    return 0
