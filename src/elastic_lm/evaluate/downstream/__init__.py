"""Downstream evaluation of exported models: the papers' GLUE-style tables.

A search ranks sub-networks by cheap proxies on the super-network; what a user ships is the exported
standalone model, and what they care about is how it does on a task once fine-tuned. So every
encoder (exported masked-LM folders, plus optional reference models such as the unpruned source) is
fine-tuned on every configured classification task with one fixed, seeded budget -- the differences in
the table come from the models, never from the recipe -- and scored on the task's test split
(accuracy and F1). Decoders (causal-LM exports) get held-out perplexity on the corpus and greedy
continuations of a few fixed prompts.

Fine-tuning reuses the project's training loop (``train_supernet`` with the standard strategy on a
one-member space, as the teacher's re-training does), so seeding, warm-up, clipping and devices are
those of every other run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from elastic_lm.data.config import DataConfig
from elastic_lm.errors import DataError
from elastic_lm.evaluate.downstream.decoder import (
    evaluate_decoder,
    greedy_continuation,
    greedy_tokens,
    load_causal_lm,
    perplexity,
)
from elastic_lm.evaluate.downstream.encoder import (
    classification_metrics,
    evaluate_encoder,
    fine_tune,
    predict_labels,
)
from elastic_lm.evaluate.downstream.models import (
    exported_models,
    folder_params,
    load_tokenizer,
    model_kind,
    reference_models,
)
from elastic_lm.evaluate.downstream.results import (
    DecoderResult,
    DownstreamResults,
    EncoderResult,
    FineTuneBudget,
    ModelEntry,
    ModelKind,
    TaskScore,
)
from elastic_lm.io import atomic_write_json, atomic_write_text

# --- the whole evaluation -----------------------------------------------------------------------


def evaluate_models(
    models: Sequence[ModelEntry],
    tasks: Sequence[tuple[str, DataConfig]],
    budget: FineTuneBudget,
    *,
    corpus: DataConfig | None,
    prompts: Sequence[str] = (),
    max_new_tokens: int = 20,
    work_dir: str | Path,
    tokenizer_fallback: Callable[[], Any] | None = None,
) -> DownstreamResults:
    """Encoders fine-tuned on ``tasks``; decoders scored on ``corpus`` (needed only if there are any).

    Progress counts jobs (one fine-tune per encoder and task, one score per decoder): a bar on a
    terminal, a line with count, rate and ETA every ``ELASTIC_LM_PROGRESS_SECONDS`` elsewhere.
    """
    from elastic_lm.progress import Progress

    encoders: list[EncoderResult] = []
    decoders: list[DecoderResult] = []
    kinds = [model_kind(entry.path) for entry in models]
    total = sum(len(tasks) if kind == "encoder" else 1 for kind in kinds)
    with Progress(total, "evaluate", unit="job") as bar:
        for entry, kind in zip(models, kinds, strict=True):
            bar.set_postfix(model=entry.name)
            if kind == "encoder":
                encoders.append(
                    evaluate_encoder(entry, tasks, budget, work_dir, tokenizer_fallback, on_task=bar.update)
                )
                continue
            if corpus is None:
                raise DataError(
                    f"{entry.name} is a causal LM; perplexity needs a corpus (the config's data section)"
                )
            decoders.append(
                evaluate_decoder(
                    entry,
                    corpus,
                    prompts,
                    max_new_tokens,
                    budget.batch_size,
                    tokenizer_fallback,
                    budget.device,
                )
            )
            bar.update()
    settings = {**asdict(budget), "prompts": list(prompts), "max_new_tokens": max_new_tokens}
    settings["task_data"] = {name: cfg.model_dump(mode="json") for name, cfg in tasks}
    if corpus is not None:
        settings["corpus"] = corpus.model_dump(mode="json")
    return DownstreamResults([name for name, _ in tasks], settings, encoders, decoders)


DOWNSTREAM_FILES = ("downstream.json", "downstream.csv")  # what write_downstream writes, in order


def write_downstream(folder: str | Path, results: DownstreamResults) -> tuple[Path, Path]:
    """``downstream.json`` (everything) and ``downstream.csv`` (one row per model), written atomically."""
    folder = Path(folder)
    json_name, csv_name = DOWNSTREAM_FILES
    json_path = atomic_write_json(folder / json_name, results.to_dict())
    task_columns = [f"{t}/{m}" for t in results.tasks for m in ("accuracy", "f1")]
    header = ["kind", "name", "path", "params", *task_columns, "average/accuracy", "average/f1", "perplexity"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for e in results.encoders:
        row: dict[str, Any] = {"kind": "encoder", "name": e.name, "path": e.path, "params": e.params}
        for task, score in e.tasks.items():
            row[f"{task}/accuracy"] = f"{score.accuracy:.6f}"
            row[f"{task}/f1"] = f"{score.f1:.6f}"
        row["average/accuracy"] = f"{e.average['accuracy']:.6f}"
        row["average/f1"] = f"{e.average['f1']:.6f}"
        writer.writerow(row)
    for d in results.decoders:
        writer.writerow(
            {
                "kind": "decoder",
                "name": d.name,
                "path": d.path,
                "params": d.params,
                "perplexity": f"{d.perplexity:.6f}",
            }
        )
    csv_path = atomic_write_text(folder / csv_name, buffer.getvalue())
    return json_path, csv_path


__all__ = [
    "DOWNSTREAM_FILES",
    "DecoderResult",
    "DownstreamResults",
    "EncoderResult",
    "FineTuneBudget",
    "ModelEntry",
    "ModelKind",
    "TaskScore",
    "classification_metrics",
    "evaluate_decoder",
    "evaluate_encoder",
    "evaluate_models",
    "exported_models",
    "fine_tune",
    "folder_params",
    "greedy_continuation",
    "greedy_tokens",
    "load_causal_lm",
    "load_tokenizer",
    "model_kind",
    "perplexity",
    "predict_labels",
    "reference_models",
    "write_downstream",
]
