"""Encoders: fine-tune a classification head with one fixed budget, score accuracy and F1."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from elastic_lm.data.config import DataConfig
from elastic_lm.errors import DataError
from elastic_lm.evaluate.downstream.models import (
    _slug,
    folder_params,
    load_tokenizer,
)
from elastic_lm.evaluate.downstream.results import (
    EncoderResult,
    FineTuneBudget,
    ModelEntry,
    TaskScore,
)
from elastic_lm.evaluate.metrics import accuracy, f1_binary, f1_macro


def classification_metrics(
    predictions: Sequence[int], labels: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy and F1: binary F1 of class 1 for two classes (spam, positive), else macro F1.

    A class with no true and no predicted example contributes F1 0 to the macro mean (as scikit-learn
    with ``labels=range(K), zero_division=0``), so a model that ignores a class is not flattered.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise DataError("the test split is empty; raise data test_ratio or max_examples")
    p = np.asarray([int(x) for x in predictions])
    y = np.asarray([int(x) for x in labels])
    f1 = f1_binary(p, y, positive=1) if num_labels == 2 else f1_macro(p, y, num_labels)
    return {"accuracy": accuracy(p, y), "f1": f1}


def fine_tune(folder: str | Path, data: Any, budget: FineTuneBudget, work_dir: str | Path) -> nn.Module:
    """Fine-tune ``AutoModelForSequenceClassification`` from ``folder`` on prepared ``data``.

    The head is initialised from a seed derived from ``budget.seed``, and the loop replays batches and
    dropout from the same seed, so the same model and budget give the same weights.
    """
    from transformers import AutoModelForSequenceClassification

    import elastic_lm.model  # noqa: F401  (registers elastic-lm's own classes with the Auto API)
    from elastic_lm.train.loop import TrainSettings, derive_seed, seed_everything
    from elastic_lm.train.single import train_one_model

    seed_everything(derive_seed(budget.seed, "downstream-head"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=data.num_labels)
    settings = TrainSettings(
        steps=budget.steps,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        warmup_fraction=budget.warmup_fraction,
        seed=budget.seed,
        device=budget.device,  # type: ignore[arg-type]
        checkpoint_every=budget.steps,
        eval_every=budget.steps,
        keep_checkpoints=1,
        progress=False,
        tensorboard=False,
        collate_fn=data.collator,
    )
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)  # a crashed earlier attempt must not be "resumed"
    try:
        train_one_model(
            model,
            [{"name": "classification"}],
            data.splits["train"],
            settings=settings,
            run_dir=work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model


@torch.no_grad()
def predict_labels(model: nn.Module, loader: Any) -> tuple[list[int], list[int]]:
    """Arg-max predictions and gold labels over a classification loader."""
    model.eval()
    device = next(model.parameters()).device
    predictions: list[int] = []
    labels: list[int] = []
    for batch in loader:
        inputs = {
            k: v.to(device)
            for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        logits = model(**inputs).logits
        predictions += logits.argmax(-1).tolist()
        labels += batch["labels"].tolist()
    return predictions, labels


def evaluate_encoder(
    entry: ModelEntry,
    tasks: Sequence[tuple[str, DataConfig]],
    budget: FineTuneBudget,
    work_dir: str | Path,
    tokenizer_fallback: Callable[[], Any] | None = None,
    on_task: Callable[[], None] | None = None,
) -> EncoderResult:
    """Fine-tune ``entry`` on each task and score it on that task's test split; ``on_task`` is called
    after each task (progress)."""
    from elastic_lm.data.prepare import prepare_data

    tokenizer = load_tokenizer(entry.path, tokenizer_fallback)
    scores: dict[str, TaskScore] = {}
    for name, data_config in tasks:
        data = prepare_data(data_config, tokenizer)
        model = fine_tune(entry.path, data, budget, Path(work_dir) / _slug(entry.name) / _slug(name))
        loader = data.dataloaders(budget.batch_size, seed=budget.seed).test
        predictions, labels = predict_labels(model, loader)
        metrics = classification_metrics(predictions, labels, data.num_labels)
        scores[name] = TaskScore(
            accuracy=metrics["accuracy"],
            f1=metrics["f1"],
            f1_average="binary" if data.num_labels == 2 else "macro",
            num_labels=data.num_labels,
            test_examples=len(labels),
        )
        del model
        if on_task is not None:
            on_task()
    return EncoderResult(entry.name, str(entry.path), folder_params(entry.path), scores)


__all__ = ["classification_metrics", "evaluate_encoder", "fine_tune", "predict_labels"]
