"""Benchmark: how well do the latency predictors rank and predict held-out sub-networks on this machine?

ELM search space at MiniLM-L6 shape (random weights: latency depends only on shapes), whole extracted
models timed round-robin, lookup table + regressors fitted on the training part, scored on held-out
sub-networks, then a fixed set of architectures re-measured as a stand-in for a Pareto set.

    PYTHONPATH=src python benchmarks/latency.py            # full (several minutes on 2 cores)
    PYTHONPATH=src python benchmarks/latency.py --quick    # smoke run (about a minute)
    PYTHONPATH=src python benchmarks/latency.py --pareto runs/elm-mlm-quick   # re-check a real Pareto set

Prints one JSON object (the command to reproduce it included). Goals: MAPE <= 0.05, tau >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from elastic_lm.profile import (
    ProfileSettings,
    fit_predictors,
    machine_description,
    prediction_errors,
    recheck,
    supernet_for_space,
)
from elastic_lm.space import preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few sub-networks, short sequences")
    parser.add_argument("--task", default="masked-lm", choices=("masked-lm", "sequence-classification"))
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--held-out", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quantile", type=float, default=0.5, help="0.5: median of the samples")
    parser.add_argument("--clock", default="wall", choices=("wall", "thread"), help="thread: CPU time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write predictor.json etc. here")
    parser.add_argument("--pareto", type=Path, help="re-check the Pareto set of this run folder (elm space)")
    args = parser.parse_args(argv)

    n_train = args.train or (12 if args.quick else 48)
    n_held = args.held_out or (8 if args.quick else 16)
    settings = ProfileSettings(
        batch_size=args.batch_size,
        seq_len=args.seq_len or (64 if args.quick else 128),
        threads=args.threads,
        warmup=2 if args.quick else 3,
        repeats=args.repeats or (7 if args.quick else 15),
        quantile=args.quantile,
        clock=args.clock,
    )
    space = preset("elm")
    supernet = supernet_for_space(space, task=args.task)
    start = time.perf_counter()
    result = fit_predictors(
        supernet, space, settings, n_train=n_train, n_held_out=n_held, seed=args.seed, out_dir=args.out
    )
    fit_s = time.perf_counter() - start

    if args.pareto is not None:  # a real search's Pareto set (e.g. the quick start's run folder)
        from elastic_lm.export.pareto import pareto_trials

        front = [t.architecture for t in pareto_trials(args.pareto)[0] if space.contains(t.architecture)]
        fixed, labels, on = front, [f"pareto{i}" for i in range(len(front))], f"Pareto set of {args.pareto}"
    else:  # stand-in: the middle member and a few fresh samples
        rng = random.Random(args.seed + 1000)
        fixed = [space.middle()] + [space.sample(rng) for _ in range(3 if args.quick else 7)]
        labels = ["middle"] + [f"sample{i}" for i in range(len(fixed) - 1)]
        on = "middle member + fixed random samples (no --pareto RUN_DIR given)"
    recommended = min(result.errors, key=lambda k: result.errors[k]["mape"])
    rows = recheck(
        result.predictors[recommended],
        supernet,
        fixed,
        settings,
        labels=labels,
        path=None if args.out is None else args.out / "latency_check.json",
    )
    recheck_err = prediction_errors([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    measured = [r.latency_ms for r in result.train + result.held_out]
    noise = [r.iqr_ms / r.latency_ms for r in result.train + result.held_out]
    out: dict[str, Any] = {
        "benchmark": "latency predictors, ELM space at MiniLM-L6 shape (random weights)",
        "command": " ".join(["PYTHONPATH=src", "python", *map(shlex.quote, sys.argv)]),
        "task": args.task,
        "settings": settings.to_dict(),
        "n_train": len(result.train),
        "n_held_out": len(result.held_out),
        "predictor_mape": {k: round(v["mape"], 4) for k, v in result.errors.items()},
        "predictor_kendall_tau": {k: round(v["kendall_tau"], 4) for k, v in result.errors.items()},
        "predictor_max_abs_error_ms": {k: round(v["max_abs_error_ms"], 3) for k, v in result.errors.items()},
        "recommended": recommended,
        "pareto_recheck_error": {
            "mape": round(recheck_err["mape"], 4),
            "kendall_tau": round(recheck_err["kendall_tau"], 4),
            "n": recheck_err["n"],
            "on": on,
        },
        "measured_ms_range": [round(min(measured), 2), round(max(measured), 2)],
        "median_relative_iqr": round(sorted(noise)[len(noise) // 2], 4),
        "lookup_entries": len(result.predictors["lookup"].entries),
        "goals": {"mape": 0.05, "kendall_tau": 0.9},
        "fit_seconds": round(fit_s, 1),
        "machine": machine_description(settings),
        "loadavg": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
