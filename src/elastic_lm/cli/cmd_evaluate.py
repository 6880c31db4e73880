"""``elastic-lm evaluate``: sentence-embedding scores and fine-tuning of exported encoders; decoder
perplexity."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.config import Config

HELP = (
    "score exported encoders as sentence embeddings (retrieval, fidelity, probes), fine-tune them on "
    "classification tasks (same budget each); decoder perplexity"
)
EXAMPLES = (
    "  elastic-lm evaluate runs/elm-mlm\n"
    "  elastic-lm evaluate runs/elm-mlm --set evaluate.steps=300 --set 'evaluate.references=[minilm-l6]'\n"
    "  elastic-lm evaluate runs/elm-mlm --json > scores.json"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--config",
        dest="config_file",
        help="with RUN_DIR: a YAML config to use instead of RUN_DIR/config.yaml",
    )
    parser.add_argument("--json", action="store_true", help="print downstream.json on stdout instead")


def config_of(args: argparse.Namespace) -> Config:
    """The run directory's config (or ``--config``), its budget and overrides; defaults when none."""
    from elastic_lm.config import load_config

    target = Path(args.config) if args.config else None
    if target is not None and target.is_dir() and not args.config_file:
        if (target / "config.yaml").is_file():
            return config_from_args(args)
        overrides = [f"run_dir={target}", *args.overrides]  # an export made outside a run
        return load_config(None, [*overrides, *_run_dir_override(args)], budget=args.budget)
    if target is not None and target.is_dir():
        overrides = [f"run_dir={target}", *args.overrides, *_run_dir_override(args)]
        return load_config(args.config_file, overrides, budget=args.budget)
    return config_from_args(args)


def _run_dir_override(args: argparse.Namespace) -> list[str]:
    return [f"run_dir={args.run_dir}"] if args.run_dir is not None else []


def run(args: argparse.Namespace) -> int:
    from elastic_lm.pipeline.rundir import RunDirectory
    from elastic_lm.pipeline.stages import evaluate_stage

    config = config_of(args)
    from elastic_lm.pipeline.lock import locked

    with locked(Path(config.run_dir), create=False):  # not while another command writes there
        outputs = evaluate_stage(config, RunDirectory(Path(config.run_dir)))
    if outputs.get("downstream") is None:
        print("{}" if args.json else "evaluate.enabled is false: nothing evaluated")
        return 0
    data = json.loads(Path(outputs["downstream"]).read_text(encoding="utf-8"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for row in data["encoders"]:
        avg = row["average"]
        scores = f"average accuracy {avg['accuracy']:.4f}, F1 {avg['f1']:.4f}"
        print(f"{row['name']}: {row['params']:,} params, {scores}")
    for row in data["decoders"]:
        print(f"{row['name']}: {row['params']:,} params, perplexity {row['perplexity']:.2f}")
    print(f"downstream evaluation written: {outputs['downstream']} and {outputs['csv']}")
    if outputs.get("embedding"):
        print(f"sentence-embedding evaluation written: {outputs['embedding']}")
    return 0
