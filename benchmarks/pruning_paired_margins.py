"""Paired test margins over the baselines of finished ``benchmarks/pruning.py`` runs (issue 18).

``margin_over_baselines`` subtracts two test accuracies, each with its own noise: on BBC News's 222 test
rows one example is 0.45 points. Here each margin is re-measured pair-wise: the best exported member
with no more non-embedding parameters than the baseline (as the summary picks it) and the baseline
answer the same test rows, and :func:`paired_difference` gives the mean difference, its standard error
and a 95 % interval. Reads each result JSON's fronts, re-loads the models from the run directories.

    PYTHONPATH=src python benchmarks/pruning_paired_margins.py \\
        --results benchmarks/results/pruning-cpu --runs runs --out margins.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from elastic_lm.config import load_config  # noqa: E402
from elastic_lm.evaluate.metrics import paired_difference  # noqa: E402
from elastic_lm.io import atomic_write_json  # noqa: E402
from elastic_lm.prune.baselines import baseline_slug  # noqa: E402
from pruning import correct_per_example  # noqa: E402
from pruning_summary import best_member_within  # noqa: E402


def run_margins(result: dict[str, Any], run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per baseline kind and point: the chosen member, the unpaired margin and the paired one (points)."""
    data = load_config(run_dir / "config.yaml").data
    ours = result["fronts"].get("ours", [])
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, points in result["fronts"].items():
        if kind == "ours":
            continue
        for b in points:
            best = best_member_within(ours, b)
            if best is None:
                continue
            paired = paired_difference(
                correct_per_example(run_dir / "export" / best["name"], data).numpy(),
                correct_per_example(run_dir / "baselines" / baseline_slug(b["name"]), data).numpy(),
            )
            low, high = paired["ci95"]
            out.setdefault(kind, []).append(
                {
                    "baseline": b["name"],
                    "member": best["name"],
                    "margin": round(100 * (best["test_accuracy"] - b["test_accuracy"]), 2),
                    "paired": round(100 * float(paired["difference"]), 2),
                    "standard_error": round(100 * float(paired["standard_error"]), 2),
                    "ci95": [round(100 * low, 2), round(100 * high, 2)],
                }
            )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="a folder of TASK-sSEED-nas.json")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where prune-TASK-BUDGET-sSEED are")
    parser.add_argument("--tag", help="the runs' --tag in pruning.py (run dirs prune-TASK-BUDGET-sSEED-TAG)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    per_run: dict[str, Any] = {}
    for path in sorted(args.results.glob("*-nas.json")):
        result = json.loads(path.read_text())
        suffix = f"-{args.tag}" if args.tag else ""
        run_dir = args.runs / f"prune-{result['task']}-{result['budget']}-s{result['seed']}{suffix}"
        per_run[f"{result['task']}-s{result['seed']}"] = run_margins(result, run_dir)
    summary: dict[str, Any] = {}
    for kind in sorted({kind for run in per_run.values() for kind in run}):
        points = [p for run in per_run.values() for p in run.get(kind, [])]
        summary[kind] = {
            "mean_margin": round(sum(p["margin"] for p in points) / len(points), 2),
            # independent runs: the error of the mean
            "mean_standard_error": round(
                sum(p["standard_error"] ** 2 for p in points) ** 0.5 / len(points), 2
            ),
        }
    output = {"results": str(args.results), "per_run": per_run, "per_kind": summary}
    print(json.dumps(output, indent=1))
    if args.out:
        atomic_write_json(args.out, output)
    return output


if __name__ == "__main__":
    main()
