"""The cross-task summary of ``benchmarks/pruning.py`` (issue 18) and the helpers its runs share.

``summarise(runs)`` reduces the per task / seed / mode JSONs to the fields the issue names:
``min_removed_at_1pt``, ``min_speedup_at_1pt``, ``front_top_share``, ``front_max_gap``,
``margin_over_baselines`` (per baseline kind, mean over runs and fractions, in test-accuracy points,
with the per-run numbers), ``min_margin_over_baselines``, ``post_training`` and
``stage_seconds_total``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def share_finetuning(run_dir: Path, mode: str) -> None:
    """Copy the fine-tuned model from the sibling run of the other mode (the same stage, same inputs).

    Both modes start from the same ``finetune`` stage (its inputs do not include the mode), so the
    second mode of a task / seed reuses it instead of fine-tuning for another quarter of an hour.
    """
    sibling = Path(str(run_dir).removesuffix("-post")) if mode != "nas" else Path(f"{run_dir}-post")
    source, target = sibling / "finetune", run_dir / "finetune"
    if (source / "stage.json").is_file() and not target.exists():
        tmp = target.with_name("finetune.copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("train"))
        tmp.rename(target)


def export_unpruned(run_dir: Path) -> Path:
    """The fine-tuned full model as a stock model folder (post-training runs have no baselines)."""
    from elastic_lm.export import export_subnetwork
    from elastic_lm.model import ElasticForSequenceClassification
    from elastic_lm.prune.source import load_tokenizer

    out = run_dir / "bench" / "unpruned"
    if not (out / "config.json").is_file():
        model = ElasticForSequenceClassification.from_pretrained(run_dir / "finetune" / "model-original")
        tokenizer = load_tokenizer(run_dir / "finetune" / "model")
        export_subnetwork(model.eval(), model.model.largest(), out, tokenizer=tokenizer)
    return out


def full_nonembedding(result: Any, folder: Path) -> float:
    """The unpruned model's non-embedding parameters: as the search recorded them (post-training
    mode), else as the export of the full model (``folder``, from :func:`export_unpruned`) counted them."""
    summary = json.loads((Path(result.run_dir) / "search" / "summary.json").read_text())
    if "params_nonembedding" in summary.get("unpruned", {}):
        return float(summary["unpruned"]["params_nonembedding"])
    return float(json.loads((folder / "export.json").read_text())["params_non_embedding"])


def best_member_within(ours: list[dict[str, Any]], baseline: dict[str, Any]) -> dict[str, Any] | None:
    """The member with the best test accuracy and no more non-embedding params than ``baseline``."""
    fit = [m for m in ours if m["params_nonembedding"] <= baseline["params_nonembedding"]]
    return max(fit, key=lambda m: m["test_accuracy"], default=None)


def margins(run: dict[str, Any]) -> dict[str, list[float]]:
    """Per baseline point: best of ours with no more non-embedding params, minus the baseline (points)."""
    ours = run["fronts"].get("ours", [])
    out: dict[str, list[float]] = {}
    for kind, points in run["fronts"].items():
        if kind == "ours":
            continue
        for b in points:
            best = best_member_within(ours, b)
            accuracy = best["test_accuracy"] if best else 0.0
            out.setdefault(kind, []).append(round(100 * (accuracy - b["test_accuracy"]), 2))
    return out


def stage_seconds_total(runs: list[dict[str, Any]]) -> float:
    """Seconds the runs' stages took when they ran, each fine-tuning once (the issue's time budget).

    A post-training run's ``finetune`` is a copy of its NAS twin's, so it counts only when the twin
    is absent. Latency timing and the paired test comparisons of the benchmark itself are not in it.
    """
    nas = {(r["task"], r["seed"]) for r in runs if r.get("mode", "nas") == "nas"}
    total = 0.0
    for r in runs:
        shared = r.get("mode", "nas") != "nas" and (r["task"], r["seed"]) in nas
        total += sum(v for k, v in r.get("stage_seconds", {}).items() if not (shared and k == "finetune"))
    return round(total, 1)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's summary fields over every run (NAS and post-training modes reported apart)."""
    nas = [r for r in runs if r.get("mode", "nas") == "nas"]
    post = [r for r in runs if r.get("mode") == "post-training"]
    present = sorted(f"{r['task']}-s{r['seed']}-{r.get('mode', 'nas')}" for r in runs)
    out: dict[str, Any] = {"runs_present": present, "stage_seconds_total": stage_seconds_total(runs)}
    if nas:
        per_run = {f"{r['task']}-s{r['seed']}": margins(r) for r in nas}
        kinds = sorted({k for m in per_run.values() for k in m})
        margin = {
            k: round(sum(v for m in per_run.values() for v in m.get(k, [])) /
                     max(1, sum(len(m.get(k, [])) for m in per_run.values())), 2)
            for k in kinds
        }  # fmt: skip
        out.update(
            min_removed_at_1pt=min(r["nonembedding_params_removed_at_1pt_drop"] for r in nas),
            min_speedup_at_1pt=min(r["speedup_at_that_point"] for r in nas),
            front_top_share=min(r["front_coverage"]["front_top_share"] for r in nas),
            front_max_gap=max(r["front_coverage"]["front_max_gap"] for r in nas),
            margin_over_baselines=margin,
            min_margin_over_baselines=min(margin.values()) if margin else None,
            margin_per_run=per_run,
        )
    if post:
        tasks: dict[str, Any] = {}
        for r in post:
            seconds = r["stage_seconds"].get("export", 0.0)
            entry = tasks.setdefault(r["task"], {"runs": []})
            entry["runs"].append(
                {
                    "seed": r["seed"],
                    "removed_at_1pt": r["nonembedding_params_removed_at_1pt_drop"],
                    "speedup_at_1pt": r["speedup_at_that_point"],
                    "seconds": seconds,
                    "cpu_seconds": r.get("export_outputs", {}).get("cpu_seconds"),
                    "hypervolume": r["hypervolume"].get("ours", 0.0),
                    "unpruned_test_accuracy": r["unpruned_test_accuracy"],
                }
            )
            twin = next((n for n in nas if n["task"] == r["task"] and n["seed"] == r["seed"]), None)
            if twin is not None:
                entry["runs"][-1]["nas_hypervolume"] = twin["hypervolume"].get("ours", 0.0)
        for entry in tasks.values():
            entry["min_removed_at_1pt"] = min(x["removed_at_1pt"] for x in entry["runs"])
            entry["max_seconds"] = max(x["seconds"] for x in entry["runs"])
            compared = [
                x["nas_hypervolume"] > x["hypervolume"] for x in entry["runs"] if "nas_hypervolume" in x
            ]
            entry["nas_hypervolume_beats_it"] = all(compared) if compared else None
        out["post_training"] = {
            "per_task": tasks,
            "min_removed_at_1pt": min(e["min_removed_at_1pt"] for e in tasks.values()),
            "max_seconds": max(e["max_seconds"] for e in tasks.values()),
            "nas_hypervolume_beats_it_on_every_task": (
                all(e["nas_hypervolume_beats_it"] for e in tasks.values())
                if all(e["nas_hypervolume_beats_it"] is not None for e in tasks.values())
                else None
            ),
        }
    return out


__all__ = [
    "best_member_within",
    "export_unpruned",
    "full_nonembedding",
    "margins",
    "share_finetuning",
    "stage_seconds_total",
    "summarise",
]
