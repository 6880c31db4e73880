"""``elastic-lm prune``: structural pruning of a pre-trained encoder on a labelled task (Klein et al.)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

from elastic_lm.cli.common import add_config_arguments, config_from_args

if TYPE_CHECKING:
    from elastic_lm.pipeline.recipes.prune import PruneResult

HELP = "structural pruning: an encoder on a labelled task (Klein et al.), or a causal LM on a corpus"
EXAMPLES = (
    "  elastic-lm prune configs/prune-sentiment.yaml --budget quick --baselines\n"
    "  elastic-lm prune configs/prune-sentiment.yaml --set space.preset=prune-medium\n"
    "  elastic-lm prune configs/prune-smollm2.yaml --budget quick --baselines\n"
    "  elastic-lm report runs/prune-sentiment"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also train layer-dropping, head-pruning, uniform-scaling and unpruned baselines",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument("--json", action="store_true", help="print the result (exports, baselines) as JSON")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.model.task == "causal-lm":  # decoders: the decoder recipe (search, heal, baselines)
        from elastic_lm.pipeline.recipes.decoder import run_decoder_prune

        run_decoder_prune(config, baselines=args.baselines or None)
        return 0
    from elastic_lm.pipeline.recipes.prune import run_prune  # torch & co. only when pruning

    result = run_prune(config, baselines=args.baselines or None, progress=not args.no_progress)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        return 0
    print_result(result)
    return 0


def print_result(result: PruneResult) -> None:
    """The headline numbers of a prune run (shared with ``elastic-lm run`` on a pruning recipe)."""
    acc = result.unpruned.get("test_accuracy")
    print(
        f"unpruned model: test accuracy {acc:.4f}" if acc is not None else "unpruned model", file=sys.stderr
    )
    for item in result.exported:
        m = item["metrics"]
        shown = ", ".join(
            f"{k} {m[k]:.4g}" for k in ("params_nonembedding", "latency_ms", "test_accuracy") if k in m
        )
        print(f"{result.run_dir / item['path']}: {shown}", file=sys.stderr)
    for point in result.baselines:
        print(f"baseline {point['name']}: test accuracy {point['metrics'].get('test_accuracy', 0):.4f}")
    if result.report is None:
        print(f"report: elastic-lm report {result.run_dir}", file=sys.stderr)
