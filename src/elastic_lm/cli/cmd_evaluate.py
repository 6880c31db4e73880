"""``elastic-lm evaluate``: sentence-embedding scores and fine-tuning of exported encoders; decoder
perplexity."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = (
    "score exported encoders as sentence embeddings (retrieval, fidelity, probes), fine-tune them on "
    "classification tasks (same budget each); decoder perplexity"
)
EXAMPLES = (
    "  elastic-lm evaluate runs/elm-mlm\n"
    "  elastic-lm evaluate runs/elm-mlm --set evaluate.steps=300 --set 'evaluate.references=[minilm-l6]'"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory with export/index.json")
    parser.add_argument(
        "--config", help="YAML config (default: RUN_DIR/config.yaml when present, else the defaults)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set evaluate.steps=300 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from elastic_lm.config import load_config
    from elastic_lm.pipeline.rundir import RunDirectory
    from elastic_lm.pipeline.stages import evaluate_stage

    saved = args.run_dir / "config.yaml"
    config_file = args.config or (saved if saved.is_file() else None)
    config = load_config(config_file, [*args.overrides, f"run_dir={args.run_dir}"])
    from elastic_lm.pipeline.lock import locked

    with locked(args.run_dir, create=False):  # not while another command writes there
        outputs = evaluate_stage(config, RunDirectory(args.run_dir))
    if outputs.get("downstream") is None:
        print("evaluate.enabled is false: nothing evaluated")
        return 0
    data = json.loads(Path(outputs["downstream"]).read_text(encoding="utf-8"))
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
