"""Pruning benchmark: MiniLM-L6 on movie-review sentiment, our Pareto set against real baselines.

    python benchmarks/pruning.py --quick        # a shared 2-core CPU, minutes
    python benchmarks/pruning.py --budget cpu   # 4,000 rows, a 2-core CPU, about half an hour
    python benchmarks/pruning.py                # the recipe's full budget (hours on a CPU)

Runs ``elastic-lm prune configs/prune-sentiment.yaml --budget quick|full --baselines``, then
re-measures the CPU latency of every exported model *interleaved* (round-robin, one thread, so
background load on a shared machine hits all models alike) and writes one JSON with, for our Pareto
set and each baseline family: non-embedding params, total params, latency, test accuracy per member;
the hypervolume of each front on one normalisation (non-embedding params / unpruned's, test error,
reference point (1, 1)); and the largest share of non-embedding parameters removed within 1 point of
the unpruned model's test accuracy, with its measured speed-up (exported vs unpruned) and the paired
test-set difference to the unpruned model with its standard error (how much of "within 1 point" is
noise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from elastic_lm.config import load_config  # noqa: E402
from elastic_lm.data import DataConfig, collator_for  # noqa: E402
from elastic_lm.export.load import load_exported  # noqa: E402
from elastic_lm.io import atomic_write_json  # noqa: E402
from elastic_lm.metrics.latency import example_inputs, time_interleaved  # noqa: E402
from elastic_lm.pipeline.recipes.prune import STAGES as PRUNE_STAGES  # noqa: E402
from elastic_lm.prune import run_prune  # noqa: E402
from elastic_lm.prune.evaluation import fixed_batches, logits_and_labels  # noqa: E402
from elastic_lm.prune.final import load_test_split  # noqa: E402
from elastic_lm.search.pareto import hypervolume, pareto_mask  # noqa: E402


def family(name: str) -> str:
    return "ours" if name.startswith("trial-") else name.split(" ")[0]


def measure_all(folders: dict[str, Path], seq_len: int, repeats: int) -> dict[str, float]:
    """Median latency (ms, batch 1, one thread) of every exported model, timed round-robin."""
    torch.set_num_threads(1)
    fns = []
    for folder in folders.values():
        model = load_exported(folder)
        ids = example_inputs(model, 1, seq_len, torch.device("cpu"))
        fns.append(lambda m=model, x=ids: m(input_ids=x))
    with torch.inference_mode():
        done = time_interleaved(fns, warmup=3, repeats=repeats)
    return {name: m.median_ms for name, m in zip(folders, done, strict=True)}


def front_hypervolume(points: list[dict[str, float]], full_params: float) -> float:
    """HV in (non-embedding params / unpruned, test error), both in [0, 1], reference (1, 1)."""
    if not points:
        return 0.0
    losses = np.array([[p["params_nonembedding"] / full_params, 1.0 - p["test_accuracy"]] for p in points])
    return float(hypervolume(losses[pareto_mask(losses)]))


def best_within(points: list[dict[str, float]], unpruned: dict[str, float], drop: float) -> dict[str, Any]:
    """The member removing most non-embedding params with test accuracy >= unpruned - drop."""
    ok = [p for p in points if p["test_accuracy"] >= unpruned["test_accuracy"] - drop]
    if not ok:
        return {"nonembedding_params_removed": 0.0, "speedup": 1.0, "member": None}
    best = min(ok, key=lambda p: p["params_nonembedding"])
    return {
        "nonembedding_params_removed": 1.0 - best["params_nonembedding"] / unpruned["params_nonembedding"],
        "speedup": unpruned["latency_ms"] / best["latency_ms"],
        "member": best["name"],
    }


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Wall time of each stage when it ran, from its ``stage.json`` (a re-run that skips it keeps it)."""
    out = {}
    for stage in PRUNE_STAGES:
        record = run_dir / stage / "stage.json"
        if record.is_file():
            out[stage] = round(float(json.loads(record.read_text()).get("seconds", 0.0)), 1)
    return out


def correct_per_example(folder: Path, data: DataConfig) -> torch.Tensor:
    """1.0 / 0.0 per test example for the exported model in ``folder`` (its own tokenizer)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batches = fixed_batches(load_test_split(data, tokenizer), collator_for(data.task, tokenizer), 64)
    logits, labels = logits_and_labels(load_exported(folder), batches)
    return (logits.argmax(-1) == labels).double()


def paired_gap(member: Path, unpruned: Path, data: DataConfig) -> dict[str, Any]:
    """Member's test accuracy minus the unpruned model's, paired per example, with its standard error.

    Both models answer the same test rows, so the per-example differences carry the comparison's own
    noise; two independent binomial errors would overstate it.
    """
    diff = correct_per_example(member, data) - correct_per_example(unpruned, data)
    mean, se = float(diff.mean()), float(diff.std() / len(diff) ** 0.5)
    return {"difference": mean, "standard_error": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the recipe's quick budget (CPU minutes)")
    parser.add_argument("--budget", help="a budget of configs/prune-sentiment.yaml (quick, cpu, full)")
    parser.add_argument("--run-dir", type=Path, help="where the prune run goes")
    parser.add_argument("--out", type=Path, help="JSON result path")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the whole run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value on top of the budget (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = args.budget or ("quick" if args.quick else "full")
    overrides = ["prune.baselines=true", "seed=0", "data.seed=0", *args.overrides]
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    config = load_config(ROOT / "configs" / "prune-sentiment.yaml", overrides, budget=budget)
    torch.manual_seed(0)
    started = time.time()
    result = run_prune(config, baselines=True, progress=False)
    pipeline_s = time.time() - started

    rows: list[dict[str, Any]] = []
    folders: dict[str, Path] = {}
    for item in result.exported:
        folders[item["name"]] = result.run_dir / item["path"]
        rows.append({"name": item["name"], **item["metrics"]})
    for point in result.baselines:
        folders[point["name"]] = Path(point["path"])
        rows.append({"name": point["name"], **point["metrics"]})
    latency = measure_all(folders, config.search.latency_seq_len, args.latency_repeats)
    keep = ("name", "params_nonembedding", "params", "latency_ms", "test_accuracy", "test_f1", "val_accuracy")
    members = [{k: ({**r, "latency_ms": latency[r["name"]]}).get(k) for k in keep} for r in rows]
    unpruned = next(m for m in members if m["name"] == "unpruned")
    full = unpruned["params_nonembedding"]
    fronts: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        if m["name"] != "unpruned":
            fronts.setdefault(family(m["name"]), []).append(m)
    at_1pt = {name: best_within(points, unpruned, 0.01) for name, points in fronts.items()}
    for point in at_1pt.values():
        if point["member"] is not None:
            point["paired_test_gap"] = paired_gap(folders[point["member"]], folders["unpruned"], config.data)
    ours = at_1pt.get("ours", best_within([], unpruned, 0.01))
    test_rows = len(load_test_split(config.data, AutoTokenizer.from_pretrained(folders["unpruned"])))
    p = unpruned["test_accuracy"]
    out = {
        "benchmark": "pruning",
        "budget": budget,
        "overrides": args.overrides,
        "model": config.model.source,
        "data": config.data.source,
        "seed": config.seed,
        "pipeline_seconds": round(pipeline_s, 1),  # this invocation (stages already done are skipped)
        "stage_seconds": stage_seconds(result.run_dir),
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "latency": {"batch_size": 1, "seq_len": config.search.latency_seq_len, "threads": 1,
                    "repeats": args.latency_repeats, "how": "exported model, interleaved, median"},
        "test_rows": test_rows,
        "unpruned_test_accuracy": unpruned["test_accuracy"],
        "unpruned_test_accuracy_standard_error": (p * (1 - p) / test_rows) ** 0.5,
        "unpruned": unpruned,
        "fronts": fronts,
        "hypervolume": {name: front_hypervolume(points, full) for name, points in fronts.items()},
        "hypervolume_normalisation": "x: non-embedding params / unpruned, y: 1 - test accuracy, ref (1, 1)",
        "nonembedding_params_removed_at_1pt_drop": ours["nonembedding_params_removed"],
        "speedup_at_that_point": ours["speedup"],
        "member_at_that_point": ours["member"],
        "paired_test_gap_at_that_point": ours.get("paired_test_gap"),
        "baselines_at_1pt_drop": {name: point for name, point in at_1pt.items() if name != "ours"},
    }  # fmt: skip
    path = args.out or ROOT / "benchmarks" / "results" / f"pruning-{budget}.json"
    atomic_write_json(path, out)
    print(json.dumps({k: out[k] for k in ("unpruned_test_accuracy", "hypervolume",
                                          "nonembedding_params_removed_at_1pt_drop",
                                          "speedup_at_that_point")}, indent=1))  # fmt: skip
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
