"""Benchmark: which search strategy finds the best (val_loss x params) front on a trained super-network?

A real super-network: MiniLM-L6 converted into the ELM space (BERT blocks only: the converter cannot
add MobileBERT blocks yet), trained a few hundred sandwich steps on Jane Austen with
``train_from_config``; saved with ``save_supernet`` under ``--out`` and reused by later runs.
Objectives: MLM validation loss with inherited weights (a handful of fixed, seeded MLM batches) and
parameter count. Every strategy runs ``--trials`` trials per seed; evaluations are memoised by
``arch.key()`` across strategies and seeds (and on disk), so one architecture is evaluated once.

Hypervolume is computed afterwards with bounds common to every run (params: smallest..largest member;
val_loss: the range over every architecture evaluated by any run), so numbers are comparable.
Reported: median over seeds of the hypervolume after 25, 50, 100 trials, and the median number of
trials each strategy needs to reach random search's median hypervolume at the full budget.

    PYTHONPATH=src python benchmarks/search.py            # full: 7 strategies x 3 seeds x 100 trials
    PYTHONPATH=src python benchmarks/search.py --quick    # smoke run: 30 trials, 1 seed, 3 strategies

Prints one JSON object (the command to reproduce it included).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import optuna
import torch

from elastic_lm.config import load_config
from elastic_lm.evaluate import fixed_eval_batches
from elastic_lm.export.supernet import load_supernet
from elastic_lm.io import atomic_write_json
from elastic_lm.pipeline.objectives import MetricContext, build_objectives
from elastic_lm.search import STRATEGIES, hypervolume, normalise, run_search, to_losses
from supernets import cached_supernet

ALL_STRATEGIES = ("random", "stratified", "local", "mo-rea", "nsga2", "motpe", "gp")


def train_config(
    out: Path,
    steps: int,
    max_examples: int,
    seq_len: int,
    batch_size: int = 16,
    lr: float = 5e-4,
    data: tuple[str, ...] = ("austen",),
    split_ratio: float = 0.1,
) -> Any:
    return load_config(
        None,
        [
            "model.source=minilm-l6",
            f"data.source=[{', '.join(data)}]",
            f"data.validation_ratio={split_ratio}",
            f"data.test_ratio={split_ratio}",
            f"data.max_examples={max_examples}",
            f"data.max_length={seq_len}",
            "space.options={blocks: [bert]}",
            f"train.steps={steps}",
            f"train.batch_size={batch_size}",
            f"train.learning_rate={lr}",
            f"train.eval_every={steps}",
            f"train.checkpoint_every={steps}",
            "device=cpu",
            f"run_dir={out / 'train-run'}",
        ],
    )


def supernet(
    out: Path, steps: int, max_examples: int, seq_len: int, batch_size: int, lr: float
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The trained super-network under ``out/supernet`` (trained and saved on the first run)."""
    config = train_config(out, steps, max_examples, seq_len, batch_size, lr)
    info = {
        "source": "minilm-l6",
        "data": "austen",
        "max_examples": max_examples,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "learning_rate": lr,
        "strategy": config.train.strategy,
    }
    model, space, info = cached_supernet(config, out / "supernet", out / "supernet-info.json", info)
    return model, load_supernet(out / "supernet").tokenizer(), space, info


def given_supernet(folder: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """A super-network saved by another benchmark (``save_supernet``), with its sibling info JSON."""
    saved = load_supernet(folder)
    info_file = folder.with_suffix(".json")
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return saved.model, saved.tokenizer(), saved.space, {"folder": str(folder), **info}


def eval_batches(
    tokenizer: Any, args: argparse.Namespace, n_batches: int, batch_size: int, seq_len: int
) -> list:
    """Fixed validation batches of the data the super-network was trained on (same split)."""
    from elastic_lm.data import prepare_data

    config = train_config(
        args.out, 1, args.max_examples, seq_len, data=tuple(args.data), split_ratio=args.split_ratio
    )
    prepared = prepare_data(config.data, tokenizer)
    return fixed_eval_batches(prepared.splits["validation"], prepared.collator, n_batches, batch_size, seed=0)


def history(
    points: list[list[float]], bounds: list[tuple[float, float]], directions: list[str]
) -> list[float]:
    """Hypervolume after each trial under common bounds (a point outside them adds nothing)."""
    out, seen = [], []
    for p in points:
        seen.append(p)
        out.append(hypervolume(normalise(to_losses(np.array(seen), directions), bounds, directions)))
    return out


def summarise(runs: dict[str, list[list[list[float]]]], objectives: list[Any], trials: int) -> dict[str, Any]:
    """Median hypervolume at 25/50/100 trials and trials needed to reach random's final median.

    Bounds are common to every run: params from the objective (smallest..largest member), val_loss
    the range over every point of every run here.
    """
    directions = [o.direction for o in objectives]
    losses = [p[0] for r in runs.values() for points in r for p in points]
    bounds = [(min(losses), max(losses)), objectives[1].bounds or (0.0, 1.0)]
    curves = {s: [history(points, bounds, directions) for points in r] for s, r in runs.items()}
    checkpoints = sorted({n for n in (25, 50, 100, trials) if n <= trials})
    median_at = {
        s: {str(n): round(statistics.median(c[n - 1] for c in cs), 4) for n in checkpoints}
        for s, cs in curves.items()
    }
    target = median_at.get("random", {}).get(str(trials))
    to_reach: dict[str, int | None] = {}
    for s, cs in curves.items():
        needed = [next((i + 1 for i, hv in enumerate(c) if hv >= target), None) for c in cs] if target else []
        reached = [n for n in needed if n is not None]
        to_reach[s] = int(statistics.median(reached)) if target and len(reached) * 2 > len(needed) else None
    return {
        "bounds": {"val_loss": list(bounds[0]), "params": list(bounds[1])},
        "hypervolume_median": median_at,
        "trials_to_reach_random_at_full_budget": {"target": target, **to_reach},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 trials, 1 seed, 3 strategies")
    parser.add_argument("--strategies", nargs="+", default=None, choices=ALL_STRATEGIES)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--train-lr", type=float, default=5e-4)
    parser.add_argument("--max-examples", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--eval-batches", type=int, default=4)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/search"))
    parser.add_argument(
        "--supernet",
        type=Path,
        help="search this saved super-network instead of training one (e.g. the distilled ELM one of "
        "benchmarks/distillation.py); pass the --data/--max-examples/--seq-len it was trained with",
    )
    parser.add_argument("--data", nargs="+", default=["austen"], help="data sources (validation split)")
    parser.add_argument("--split-ratio", type=float, default=0.1, help="validation (and test) share")
    args = parser.parse_args(argv)
    assert set(STRATEGIES) >= set(ALL_STRATEGIES)

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = args.trials or (30 if args.quick else 100)
    seeds = args.seeds or (1 if args.quick else 3)
    strategies = args.strategies or (("random", "mo-rea", "nsga2") if args.quick else ALL_STRATEGIES)
    args.out.mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    if args.supernet:
        model, tokenizer, space, info = given_supernet(args.supernet)
    else:
        model, tokenizer, space, info = supernet(
            args.out, args.train_steps, args.max_examples, args.seq_len, args.train_batch_size, args.train_lr
        )
    model.eval()
    batches = eval_batches(tokenizer, args, args.eval_batches, args.eval_batch_size, args.seq_len)
    cache_file = args.out / f"eval-cache-{args.eval_batches}x{args.eval_batch_size}x{args.seq_len}.json"
    cache: dict[str, dict[str, float]] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    ctx = MetricContext(model, batches, latency_seq_len=args.seq_len, eval_cache=cache)
    config = load_config(None, ["search.objectives=[{name: val_loss}, {name: params}]"])
    objectives = build_objectives(config.search.objectives, ctx, space)

    runs: dict[str, list[list[list[float]]]] = {}
    seconds: dict[str, float] = {}
    distinct: dict[str, list[int]] = {}  # distinct architectures per run: trials spent on repeats add nothing
    for strategy in strategies:
        runs[strategy], seconds[strategy], distinct[strategy] = [], 0.0, []
    command = "PYTHONPATH=src python benchmarks/search.py " + shlex.join(argv or sys.argv[1:])
    report: dict[str, Any] = {}
    for seed in range(seeds):  # seeds outermost: result.json always holds every finished round
        for strategy in strategies:
            t0 = time.perf_counter()
            result = run_search(
                space, objectives, strategy=strategy, n_trials=trials, seed=seed, progress=False
            )
            runs[strategy].append([[e.metrics[o.name] for o in objectives] for e in result.evaluations])
            distinct[strategy].append(len({e.arch.key() for e in result.evaluations}))
            atomic_write_json(cache_file, cache)
            seconds[strategy] = round(seconds[strategy] + time.perf_counter() - t0, 1)
            print(f"seed {seed} {strategy}: {len(cache)} architectures evaluated so far", file=sys.stderr)
        report = {
            "benchmark": "search strategies on a trained ELM super-network (val_loss x params)",
            "command": command,
            "supernet": info,
            "space_size": space.size(),
            "eval": {
                "batches": args.eval_batches,
                "batch_size": args.eval_batch_size,
                "seq_len": args.seq_len,
            },
            "trials": trials,
            "seeds_completed": seed + 1,
            **summarise(runs, objectives, trials),
            "architectures_evaluated": len(cache),
            "distinct_architectures_per_run": distinct,
            "search_seconds": seconds,
            "total_seconds": round(time.perf_counter() - began, 1),
            "threads": args.threads,
        }
        atomic_write_json(args.out / "result.json", report)
    atomic_write_json(args.out / "result.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
