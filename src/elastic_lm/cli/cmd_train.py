"""``elastic-lm train``: train a super-network (MLM, CLM or classification) with a teacher."""

from __future__ import annotations

import argparse
import sys
import time

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.pipeline import RunDirectory

HELP = "train a super-network (MLM, CLM or classification) with a teacher"
EXAMPLES = (
    "  elastic-lm train configs/elm-mlm.yaml --set train.steps=500\n"
    "  elastic-lm train configs/elm-mlm.yaml --resume\n"
    "  torchrun --nproc_per_node 4 -m elastic_lm.cli.main train configs/elm-mlm.yaml"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in RUN_DIR/train/checkpoints (exactly)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from elastic_lm.train.build import train_from_config  # torch & co. only when training

    started = time.time()
    result = train_from_config(config, resume=args.resume, progress=not args.no_progress)
    if _is_main_rank():
        run_dir = RunDirectory(config.run_dir)
        run_dir.save_config(config)
        outputs = {"checkpoint": str(result.checkpoint), "val_loss": result.val}
        run_dir.mark_done("train", config, started, outputs)
        last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
        print(
            f"trained to step {result.steps} (loss {last}); checkpoint {result.checkpoint}", file=sys.stderr
        )
    return 0


def _is_main_rank() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0
