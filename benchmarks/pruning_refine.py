"""Does refining the exported members pay (``prune.refine_steps``)? Test accuracy before and after.

    PYTHONPATH=src python benchmarks/pruning_refine.py --run runs/prune-movie-sentiment-cpu-s1 --steps 200

Reads a finished NAS prune run directory and never writes into it (checkpoints go to a temporary
folder). Each exported member (or ``--members trial-3,trial-9``) is trained alone for ``--steps``
steps with the code ``prune.refine_steps`` runs, then both the exported member (the super-network's
shared weights) and the refined one answer the run's validation and test splits. Prints JSON: per
member its non-embedding parameters, validation and test accuracy before and after, the paired
per-example test difference with its standard error and the refining time; the mean difference;
and, when the run has baselines, each baseline's margin (test accuracy of the best member with no
more non-embedding parameters minus the baseline's, in points) before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from elastic_lm.architecture import Architecture  # noqa: E402
from elastic_lm.config import load_config  # noqa: E402
from elastic_lm.data import collator_for  # noqa: E402
from elastic_lm.export.load import load_exported  # noqa: E402
from elastic_lm.prune.evaluation import fixed_batches, logits_and_labels  # noqa: E402
from elastic_lm.prune.final import load_test_split  # noqa: E402
from elastic_lm.prune.parts import PruneParts  # noqa: E402
from elastic_lm.prune.refine import refine_member  # noqa: E402
from pruning_summary import margins as summary_margins  # noqa: E402


def correct(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    logits, labels = logits_and_labels(model, batches)
    return (logits.argmax(-1) == labels).double()


def margins(members: list[dict[str, Any]], baselines: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per baseline: the best member at or under its size minus it, in test points (``key``: the
    members' accuracy before or after), as :func:`pruning_summary.margins` computes it."""
    ours = [{"params_nonembedding": m["params_nonembedding"], "test_accuracy": m[key]} for m in members]
    points = {p["name"]: [p["metrics"]] for p in baselines if p["name"] != "unpruned"}
    return {name: values[0] for name, values in summary_margins({"fronts": {"ours": ours, **points}}).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished NAS prune run directory")
    parser.add_argument("--steps", type=int, default=200, help="refining steps per member")
    parser.add_argument("--members", type=lambda s: s.split(","), help="trial-N names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    config = load_config(args.run / "config.yaml")
    config.prune.refine_steps = args.steps
    parts = PruneParts(config)
    supernet, teacher = parts.supernet(), parts.finetuned()
    searched = json.loads((args.run / "search" / "trials.json").read_text())
    trials = {f"trial-{t['number']}": t for t in searched}
    index = json.loads((args.run / "export" / "index.json").read_text())
    chosen = [e for e in index if args.members is None or e["name"] in args.members]
    rows = load_test_split(config.data, parts.tokenizer)
    batches = fixed_batches(rows, collator_for(config.data.task, parts.tokenizer), 64)
    val_batches = parts.val_batches()

    members = []
    for entry in chosen:
        name = entry["name"]
        exported = load_exported(args.run / entry["path"])
        before, val_before = correct(exported, batches), correct(exported, val_batches)
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="elastic-lm-refine-") as scratch:
            arch = Architecture.from_dict(trials[name]["architecture"])
            refined = refine_member(parts, supernet, arch, teacher, Path(scratch))
        seconds = time.time() - started
        after, val_after = correct(refined, batches), correct(refined, val_batches)
        diff = after - before
        row = {
            "name": name,
            "params_nonembedding": entry["metrics"]["params_nonembedding"],
            "test_accuracy_before": float(before.mean()),
            "test_accuracy_after": float(after.mean()),
            "paired_difference": float(diff.mean()),
            "paired_standard_error": float(diff.std() / len(diff) ** 0.5),
            "val_accuracy_before": float(val_before.mean()),
            "val_accuracy_after": float(val_after.mean()),
            "refine_seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)
        members.append(row)

    baselines_file = args.run / "search" / "baselines.json"
    baselines = json.loads(baselines_file.read_text()) if baselines_file.is_file() else []
    out = {
        "benchmark": "pruning-refine",
        "command": "python benchmarks/pruning_refine.py " + " ".join(argv or sys.argv[1:]),
        "run": str(args.run),
        "steps": args.steps,
        "learning_rate": config.prune.finetune_learning_rate,
        "test_rows": len(rows),
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "members": members,
        "mean_paired_difference": sum(m["paired_difference"] for m in members) / max(len(members), 1),
        "margin_before": margins(members, baselines, "test_accuracy_before"),
        "margin_after": margins(members, baselines, "test_accuracy_after"),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
