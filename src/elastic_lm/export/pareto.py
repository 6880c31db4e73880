"""Export the Pareto set of a finished search (or its best member under a parameter budget).

Reads the run directory's plain files with the report's readers (``search/trials.json`` +
``search/summary.json``, see ``docs/report.md``), recomputes the Pareto set the way the report does, exports
each member into ``RUN_DIR/export/<name>/`` and writes ``RUN_DIR/export/index.json``
(``[{"name", "path", "metrics", "format"}]``, paths relative to ``RUN_DIR``), which the report links.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from elastic_lm.errors import DataError
from elastic_lm.export.sentence import export_sentence_transformer, sentence_spec_of
from elastic_lm.export.subnet import ExportedModel, export_subnetwork
from elastic_lm.export.supernet import SUPERNET_SUBDIR, Supernet, check_in_space, load_supernet
from elastic_lm.io import atomic_write_json
from elastic_lm.metrics.size import count_params
from elastic_lm.progress import Progress
from elastic_lm.report.inputs import Trial, find_summary, find_trials_file, load_summary, load_trials
from elastic_lm.search.objectives import COST_METRICS
from elastic_lm.search.pareto import front_mask, spread


def pareto_trials(run_dir: Path) -> tuple[list[Trial], dict[str, str], str]:
    """Usable trials on the recomputed front, the objectives' directions, and the search strategy."""
    summary = load_summary(find_summary(run_dir))
    trials = load_trials(find_trials_file(run_dir))
    directions = {o.name: o.direction for o in summary.objectives}
    usable = [
        t
        for t in trials
        if t.usable
        and t.architecture is not None
        and all(isinstance(t.metrics.get(n), int | float) and math.isfinite(t.metrics[n]) for n in directions)
    ]
    if not usable:
        raise DataError(
            f"{run_dir}/search has no complete, feasible trial reporting every objective "
            f"({', '.join(directions)}); run or resume 'elastic-lm search' first"
        )
    points = [[t.metrics[n] for n in directions] for t in usable]
    mask = front_mask(points, list(directions.values()))
    return [t for t, keep in zip(usable, mask, strict=True) if keep], directions, summary.strategy


def trial_params(trial: Trial, supernet: Supernet, embeddings: bool = True) -> float:
    """A trial's parameter count: the search's metric when it recorded one, else counted."""
    name = "params" if embeddings else "params_nonembedding"
    if name in trial.metrics:
        return trial.metrics[name]
    assert trial.architecture is not None
    return count_params(supernet.model.config, trial.architecture, embeddings)


def best_under_budget(
    trials: list[Trial],
    directions: dict[str, str],
    max_params: int,
    supernet: Supernet,
    *,
    embeddings: bool = True,
) -> Trial | None:
    """The front member with the best quality objective among those with at most ``max_params``
    (``embeddings``: whether the count includes them); None when none fits. The best, not the
    largest: on a front that also ranks latency, a smaller member can be faster *and* worse."""

    def params(t: Trial) -> float:
        return trial_params(t, supernet, embeddings)

    fitting = [t for t in trials if params(t) <= max_params]
    if not fitting:
        return None
    quality = next((n for n in directions if n not in COST_METRICS), None)
    if quality is None:
        return min(fitting, key=params)
    sign = 1.0 if directions[quality] == "minimize" else -1.0
    return min(fitting, key=lambda t: (sign * t.metrics[quality], params(t)))


def export_pareto(
    run_dir: str | Path,
    *,
    supernet_dir: str | Path | None = None,
    max_params: int | None = None,
    max_models: int | None = None,
    onnx: bool = False,
    prefer_stock: bool = True,
    seq_len: int = 128,
    budget_marks: Sequence[float] = (),
    tune: Callable[[Any, Any], Any] | None = None,
) -> list[ExportedModel]:
    """Export every Pareto member of ``run_dir`` (or the best one with at most ``max_params``).

    ``budget_marks`` (shares of the largest member's size): the best member at or under each is
    exported even when ``max_models`` would spread it away. ``tune(model, arch)`` returns a model
    whose sub-network ``arch`` is exported instead of the super-network's (e.g. a copy re-fitted by
    :func:`elastic_lm.heal.reconstruct.reconstruct_layers`).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; 'elastic-lm run CONFIG' creates it")
    front, directions, strategy = pareto_trials(run_dir)
    source = Path(supernet_dir) if supernet_dir is not None else run_dir / SUPERNET_SUBDIR
    if not source.is_dir():
        raise DataError(
            f"super-network folder {source} does not exist; train one ('elastic-lm train') "
            "or pass --supernet DIR"
        )
    supernet = load_supernet(source)
    chosen = front
    if max_params is not None:
        best = best_under_budget(front, directions, max_params, supernet)
        if best is None:
            smallest = min(trial_params(t, supernet) for t in front)
            raise DataError(
                f"--max-params {max_params:,} is below every Pareto member (smallest: {int(smallest):,}); "
                "raise the budget"
            )
        chosen = [best]
    first = next(iter(directions))
    size = next((n for n in directions if n.startswith("params") or n in ("flops", "latency_ms")), first)
    marked = _marked(chosen, directions, size, budget_marks) if max_params is None else []
    rest = [t for t in chosen if t not in marked]
    room = None if max_models is None else max(max_models - len(marked), 0)
    chosen = marked + (spread(rest, lambda t: t.metrics[size], room) if room != 0 else [])
    tokenizer = supernet.tokenizer()
    sentence = sentence_spec_of(supernet.provenance.get("source_model"))  # None: not an embedding model
    exported: list[ExportedModel] = []
    index: list[dict[str, Any]] = []
    bar = Progress(len(chosen), "export", unit="model")
    for trial in sorted(chosen, key=lambda t: t.number):
        assert trial.architecture is not None
        check_in_space(supernet.space, trial.architecture)
        name = f"trial-{trial.number}"
        provenance = {
            **supernet.provenance,
            "supernet": str(source),
            "run_dir": str(run_dir),
            "strategy": strategy,
            "trial": trial.number,
        }
        done = export_subnetwork(
            supernet.model if tune is None else tune(supernet.model, trial.architecture),
            trial.architecture,
            run_dir / "export" / name,
            tokenizer=tokenizer,
            provenance=provenance,
            metrics=trial.metrics,
            onnx=onnx,
            prefer_stock=prefer_stock,
            seq_len=seq_len,
        )
        exported.append(done)
        index.append(
            {"name": name, "path": f"export/{name}", "metrics": trial.metrics, "format": done.format}
        )
        if sentence is not None and done.task != "causal-lm" and tokenizer is not None:
            st = export_sentence_transformer(done.path, sentence)
            index[-1]["sentence_transformers"] = f"export/{st.name}"
        bar.update()
    bar.close()
    atomic_write_json(run_dir / "export" / "index.json", index)
    return exported


def _marked(front: list[Trial], directions: dict[str, str], size: str, marks: Sequence[float]) -> list[Trial]:
    """The best front member at or under each budget mark (the covering helper of pruning)."""
    from elastic_lm.prune.coverage import best_at_marks

    quality = next((n for n in directions if n != size and n not in ("params", "flops", "latency_ms")), None)
    if not marks or quality is None:
        return []
    records = [{"number": t.number, "metrics": t.metrics} for t in front]
    numbers = best_at_marks(records, size, quality, directions[quality] == "maximize", marks)
    by_number = {t.number: t for t in front}
    return [by_number[n] for n in numbers]


__all__ = ["SUPERNET_SUBDIR", "best_under_budget", "export_pareto", "pareto_trials", "trial_params"]
