"""Pruning benchmark: MiniLM-L6 on labelled sets, our fronts against real baselines, several seeds.

    python benchmarks/pruning.py --quick        # a shared 2-core CPU, minutes
    python benchmarks/pruning.py --budget cpu --tasks movie-sentiment,sms-spam,bbc-topic --seeds 0,1 --resume
    python benchmarks/pruning.py --budget cpu --tasks movie-sentiment,sms-spam,bbc-topic --modes post-training

For each task, seed and mode (``nas``: super-network, search and the baselines; ``post-training``:
retraining-free masks, Kwon et al. 2022) it runs ``configs/prune-sentiment.yaml`` with
``data.source=TASK``, ``seed`` and ``data.seed`` set, in ``runs/prune-TASK-BUDGET-sSEED[-post]``
(the two modes share the fine-tuned model), then re-measures the CPU latency of every exported model
*interleaved* (round-robin, one thread, so background load hits all models alike) and writes
``benchmarks/results/pruning-BUDGET/TASK-sSEED-MODE.json``: per member and baseline non-embedding
and total params, latency, test accuracy with its bootstrap interval; each front's hypervolume in
(non-embedding params / unpruned, test error) with reference (1, 1); the front's coverage; the
largest share of non-embedding parameters removed within 1 point of the unpruned test accuracy, with
its measured speed-up and the paired test-set difference (and its standard error). ``--resume``
keeps the JSON of runs already finished; ``--tag NAME`` keeps an experiment (e.g. with ``--set``)
apart: ``runs/...-NAME`` and ``benchmarks/results/pruning-BUDGET-NAME/``. ``summary.json`` holds the
issue-18 fields (see ``pruning_summary.py``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from elastic_lm.config import load_config  # noqa: E402
from elastic_lm.data import DataConfig, collator_for  # noqa: E402
from elastic_lm.evaluate.metrics import paired_difference  # noqa: E402
from elastic_lm.export.load import load_exported  # noqa: E402
from elastic_lm.io import atomic_write_json  # noqa: E402
from elastic_lm.metrics.latency import example_inputs, time_interleaved  # noqa: E402
from elastic_lm.pipeline.recipes.prune import STAGES as PRUNE_STAGES  # noqa: E402
from elastic_lm.prune import run_prune  # noqa: E402
from elastic_lm.prune.coverage import front_gaps  # noqa: E402
from elastic_lm.prune.evaluation import fixed_batches, logits_and_labels  # noqa: E402
from elastic_lm.prune.final import load_test_split  # noqa: E402
from elastic_lm.search.pareto import hypervolume, pareto_mask  # noqa: E402
from pruning_summary import export_unpruned, full_nonembedding, share_finetuning, summarise  # noqa: E402


def family(name: str) -> str:
    return "ours" if name.startswith("trial-") else name.split(" ")[0]


def measure_all(folders: dict[str, Path], seq_len: int, repeats: int) -> dict[str, float]:
    """Median latency (ms, batch 1, one thread) of every exported model, timed round-robin.

    The thread count is restored afterwards: the next run of the pair (the post-training mode) would
    otherwise train and prune on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = []
        for folder in folders.values():
            model = load_exported(folder)
            ids = example_inputs(model, 1, seq_len, torch.device("cpu"))
            fns.append(lambda m=model, x=ids: m(input_ids=x))
        with torch.inference_mode():
            done = time_interleaved(fns, warmup=3, repeats=repeats)
    finally:
        torch.set_num_threads(threads)
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
    return paired_difference(
        correct_per_example(member, data).numpy(), correct_per_example(unpruned, data).numpy()
    )


def run_one(task: str, seed: int, mode: str, budget: str, args: argparse.Namespace) -> dict[str, Any]:
    """One prune run (``mode`` nas: with baselines unless ``--set prune.baselines=false``) on ``task``
    at ``seed``, re-measured; its JSON."""
    nas = mode == "nas"
    overrides = [f"seed={seed}", f"data.seed={seed}", f"data.source={task}", f"prune.mode={mode}",
                 f"prune.baselines={'true' if nas else 'false'}", *args.overrides]  # fmt: skip
    if args.run_dir and args.tasks == ["movie-sentiment"] and args.seeds == [0] and nas:
        overrides.append(f"run_dir={args.run_dir}")
    else:
        suffix = ("" if nas else "-post") + (f"-{args.tag}" if args.tag else "")
        overrides.append(f"run_dir=runs/prune-{task}-{budget}-s{seed}{suffix}")
    config = load_config(ROOT / "configs" / "prune-sentiment.yaml", overrides, budget=budget)
    share_finetuning(Path(config.run_dir), mode)
    torch.manual_seed(seed)
    started = time.time()
    result = run_prune(config, baselines=config.prune.baselines, progress=False)  # --set may turn them off
    pipeline_s = time.time() - started

    rows: list[dict[str, Any]] = []
    folders: dict[str, Path] = {}
    for item in result.exported:
        folders[item["name"]] = result.run_dir / item["path"]
        rows.append({"name": item["name"], **item["metrics"]})
    for point in result.baselines:
        folders[point["name"]] = Path(point["path"])
        rows.append({"name": point["name"], **point["metrics"]})
    if "unpruned" not in folders:  # no baselines stage (post-training mode): export the full model here
        folders["unpruned"] = export_unpruned(result.run_dir)
        full = full_nonembedding(result, folders["unpruned"])
        rows.append({"name": "unpruned", **result.unpruned, "params_nonembedding": full})
    latency = measure_all(folders, config.search.latency_seq_len, args.latency_repeats)
    intervals = tuple(f"{s}_accuracy_ci_{e}" for s in ("val", "test") for e in ("low", "high"))
    keep = ("name", "params_nonembedding", "params", "latency_ms", "test_accuracy", "test_f1", "val_accuracy",
            *intervals)  # fmt: skip
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
    return {
        "benchmark": "pruning",
        "budget": budget,
        "mode": mode,
        "task": task,
        "overrides": args.overrides,
        "model": config.model.source,
        "data": config.data.source,
        "seed": config.seed,
        "pipeline_seconds": round(pipeline_s, 1),  # this invocation (stages already done are skipped)
        "stage_seconds": stage_seconds(result.run_dir),
        "export_outputs": json.loads((result.run_dir / "export" / "stage.json").read_text())["outputs"],
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "latency": {"batch_size": 1, "seq_len": config.search.latency_seq_len, "threads": 1,
                    "repeats": args.latency_repeats, "how": "exported model, interleaved, median"},
        "test_rows": test_rows,
        "unpruned_test_accuracy": unpruned["test_accuracy"],
        "unpruned_test_accuracy_standard_error": (p * (1 - p) / test_rows) ** 0.5,
        "unpruned": unpruned,
        "fronts": fronts,
        "front_coverage": front_gaps([m["params_nonembedding"] for m in fronts.get("ours", [])], full),
        "hypervolume": {name: front_hypervolume(points, full) for name, points in fronts.items()},
        "hypervolume_normalisation": "x: non-embedding params / unpruned, y: 1 - test accuracy, ref (1, 1)",
        "nonembedding_params_removed_at_1pt_drop": ours["nonembedding_params_removed"],
        "speedup_at_that_point": ours["speedup"],
        "member_at_that_point": ours["member"],
        "paired_test_gap_at_that_point": ours.get("paired_test_gap"),
        "baselines_at_1pt_drop": {name: point for name, point in at_1pt.items() if name != "ours"},
    }  # fmt: skip


def run_pair(
    task: str, seed: int, budget: str, results_dir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every mode of one task / seed, in order (the modes share the fine-tuning); their JSON."""
    torch.set_num_threads(args.threads)
    runs = []
    for mode in args.modes:
        path = results_dir / f"{task}-s{seed}-{mode}.json"
        if args.resume and path.is_file():
            runs.append(json.loads(path.read_text()))
            continue
        out = run_one(task, seed, mode, budget, args)
        atomic_write_json(path, out)
        shown = ("unpruned_test_accuracy", "hypervolume", "nonembedding_params_removed_at_1pt_drop",
                 "speedup_at_that_point", "stage_seconds")  # fmt: skip
        row = {"task": task, "seed": seed, "mode": mode, **{k: out[k] for k in shown}}
        print(json.dumps(row), flush=True)
        runs.append(out)
    return runs


def _tag(value: str) -> str:
    """A name that is safe inside a folder name."""
    if not value or not all(c.isalnum() or c in "-_." for c in value) or value.startswith("."):
        raise argparse.ArgumentTypeError(f"--tag {value!r}: use letters, digits, '-', '_' or '.'")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the recipe's quick budget (CPU minutes)")
    parser.add_argument("--budget", help="a budget of configs/prune-sentiment.yaml (quick, cpu, full)")
    parser.add_argument(
        "--tasks",
        type=lambda s: s.split(","),
        default=["movie-sentiment"],
        help="comma-separated data sources (built-in sets or your files)",
    )
    parser.add_argument(
        "--seeds",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0],
        help="comma-separated seeds (model seed and data split)",
    )
    parser.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=["nas", "post-training"],
        help="nas (super-network + search + baselines) and / or post-training",
    )
    parser.add_argument("--resume", action="store_true", help="keep the JSON of finished task/seed/mode runs")
    parser.add_argument("--run-dir", type=Path, help="where the prune run goes (one task, seed 0, nas)")
    parser.add_argument("--out", type=Path, help="JSON summary path")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (latency: always 1)")
    parser.add_argument("--jobs", type=int, default=1, help="task / seed pairs run at once, one process each")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value on top of the budget (repeatable)")  # fmt: skip
    parser.add_argument(
        "--tag",
        type=_tag,
        help="an experiment's name: its run directories (runs/...-TAG) and results "
        "(benchmarks/results/pruning-BUDGET-TAG/) go beside the default ones, never over them",
    )
    args = parser.parse_args(argv)
    budget = args.budget or ("quick" if args.quick else "full")
    results_dir = ROOT / "benchmarks" / "results" / f"pruning-{budget}{f'-{args.tag}' if args.tag else ''}"
    pairs = [(task, seed) for task in args.tasks for seed in args.seeds]
    if args.jobs > 1 and len(pairs) > 1:
        spawn = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(pairs)), mp_context=spawn) as pool:
            done = list(pool.map(run_pair, *zip(*pairs, strict=True), repeat(budget), repeat(results_dir),
                                 repeat(args)))  # fmt: skip
    else:
        done = [run_pair(task, seed, budget, results_dir, args) for task, seed in pairs]
    runs = [run for pair in done for run in pair]
    summary = summarise(runs)
    path = args.out or results_dir / "summary.json"
    atomic_write_json(path, {"budget": budget, "tasks": args.tasks, "seeds": args.seeds, **summary})
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
