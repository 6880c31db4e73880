"""Did a change to the super-network's training help? Two prune runs' searches, paired by architecture.

    PYTHONPATH=src python benchmarks/pruning_paired_search.py runs/prune-movie-sentiment-cpu-s1 \\
        runs/prune-movie-sentiment-cpu-s1-nr2

Both runs must share the fine-tuned model and data split (a ``--tag`` copy of a benchmark run with one
``--set`` changed). The two searches evaluate many of the same architectures (the seeded initial
design); on those, the difference in validation quality (B minus A, in points) depends on the
training alone, not on which members the search happened to find. Prints JSON: the number of shared
architectures, the mean difference, the mean per size band of non-embedding parameters, and each
run's validation front. Reads ``search/trials.json`` only; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from elastic_lm.search.pareto import front_mask

BANDS_M: tuple[tuple[float, float | None], ...] = ((0.0, 2.0), (2.0, 5.0), (5.0, 8.0), (8.0, None))


def trial_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each finished trial's metrics, keyed by its architecture (canonical JSON)."""
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    return {
        json.dumps(t["architecture"], sort_keys=True): t["metrics"]
        for t in trials
        if t.get("state", "COMPLETE") == "COMPLETE"
    }


def validation_front(metrics: dict[str, dict[str, float]], quality: str) -> list[list[float]]:
    """``[millions of non-embedding parameters, quality x 100]`` of the non-dominated trials."""
    points = sorted((m["params_nonembedding"], m[quality]) for m in metrics.values())
    kept = front_mask(points, ["minimize", "minimize" if quality.endswith("loss") else "maximize"])
    return [
        [round(size / 1e6, 2), round(100 * value, 2)]
        for (size, value), k in zip(points, kept, strict=True)
        if k
    ]


def paired(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], quality: str) -> dict[str, Any]:
    """Mean quality difference (B minus A, points) on the shared architectures, overall and by size."""
    shared = sorted(set(a) & set(b), key=lambda k: a[k]["params_nonembedding"])
    diffs = [(a[k]["params_nonembedding"] / 1e6, 100 * (b[k][quality] - a[k][quality])) for k in shared]
    bands = []
    for low, high in BANDS_M:
        inside = [d for size, d in diffs if low <= size and (high is None or size < high)]
        if inside:
            mean_in = round(statistics.mean(inside), 2)
            bands.append({"params_m": [low, high], "n": len(inside), "mean": mean_in})
    mean = round(statistics.mean(d for _, d in diffs), 2) if diffs else None
    return {"shared_architectures": len(shared), "mean_difference": mean, "by_size": bands}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_a", type=Path, help="the reference run directory")
    parser.add_argument("run_b", type=Path, help="the changed run directory")
    parser.add_argument("--quality", default="val_accuracy", help="a trial metric (default val_accuracy)")
    args = parser.parse_args(argv)
    a, b = trial_metrics(args.run_a), trial_metrics(args.run_b)
    out = {
        "benchmark": "pruning-paired-search",
        "a": str(args.run_a),
        "b": str(args.run_b),
        "quality": args.quality,
        **paired(a, b, args.quality),
        "front_a": validation_front(a, args.quality),
        "front_b": validation_front(b, args.quality),
    }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
