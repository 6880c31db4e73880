"""One sub-network, inherited weights, fixed batches -> its task metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.evaluate.metrics import (
    accuracy,
    f1_binary,
    f1_macro,
    pearson,
    perplexity_from_nll,
    spearman,
)
from elastic_lm.model import ElasticForMaskedLM, ElasticPreTrainedModel

# Data task names and model task names both work; each maps to one kind of metric set.
TASK_KINDS = {
    "mlm": "masked-lm",
    "masked-lm": "masked-lm",
    "clm": "causal-lm",
    "causal-lm": "causal-lm",
    "classification": "classification",
    "sequence-classification": "classification",
    "regression": "regression",
}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def task_kind(task: str) -> str:
    """``masked-lm``, ``causal-lm``, ``classification`` or ``regression`` for a task name."""
    if task not in TASK_KINDS:
        raise ConfigError(f"task {task!r} is unknown; use one of {sorted(TASK_KINDS)}")
    return TASK_KINDS[task]


def _masked_positions_loss(
    model: ElasticForMaskedLM, inputs: dict[str, torch.Tensor], labels: torch.Tensor
) -> float:
    """Summed MLM cross-entropy, running the vocabulary head on the masked positions only.

    The head (hidden x vocabulary) dominates the cost of a small model; only ~15 % of positions
    carry a label, so this is several times cheaper and gives the same loss as the full forward.
    """
    hidden = model.model(**inputs).last_hidden_state
    keep = labels != -100
    logits = model.mlm(hidden[keep], model.model.embeddings.word.active_weight).float()
    return float(F.cross_entropy(logits, labels[keep], reduction="sum"))


def evaluate_subnetwork(
    model: ElasticPreTrainedModel,
    arch: Architecture,
    batches: Sequence[dict[str, torch.Tensor]],
    task: str,
) -> dict[str, float]:
    """Metrics of ``arch`` using the super-network's weights (no fine-tuning), in eval mode.

    Language modelling: ``loss`` (mean cross-entropy per labelled token, nats/token, weighted by
    token count across batches) and ``perplexity``. Classification: ``loss``, ``accuracy``,
    ``f1`` (macro) and, with two classes, ``f1_binary`` (positive class 1). Regression: ``loss``
    (= ``mse``), ``mse``, ``pearson``, ``spearman``. The model's train/eval mode is restored.
    """
    kind = task_kind(task)
    if kind == "classification" and model.config.num_labels == 1:
        kind = "regression"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, count = 0.0, 0
    outputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    try:
        with torch.inference_mode(), model.using(arch):
            for batch in batches:
                inputs = {k: batch[k].to(device) for k in _INPUTS if k in batch}
                labels = batch["labels"].to(device)
                if kind == "masked-lm" and isinstance(model, ElasticForMaskedLM):
                    loss_sum += _masked_positions_loss(model, inputs, labels)
                    count += int((labels != -100).sum())
                    continue
                logits = model(**inputs).logits.float()
                if kind in ("masked-lm", "causal-lm"):
                    if kind == "causal-lm":
                        logits, labels = logits[:, :-1], labels[:, 1:]
                    flat = labels.reshape(-1)
                    loss_sum += float(
                        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, reduction="sum")
                    )
                    count += int((flat != -100).sum())
                elif kind == "classification":
                    loss_sum += float(F.cross_entropy(logits, labels.long(), reduction="sum"))
                    count += len(labels)
                    outputs.append(logits.argmax(-1).cpu().numpy())
                    targets.append(labels.cpu().numpy())
                else:
                    pred = logits.reshape(-1)
                    loss_sum += float(F.mse_loss(pred, labels.float().reshape(-1), reduction="sum"))
                    count += len(pred)
                    outputs.append(pred.cpu().numpy())
                    targets.append(labels.float().reshape(-1).cpu().numpy())
    finally:
        model.train(was_training)
    if count == 0:
        raise ConfigError("evaluation batches hold no labelled token or example; use more eval batches")
    loss = loss_sum / count
    if kind in ("masked-lm", "causal-lm"):
        return {"loss": loss, "perplexity": perplexity_from_nll(loss)}
    pred, target = np.concatenate(outputs), np.concatenate(targets)
    if kind == "classification":
        metrics = {
            "loss": loss,
            "accuracy": accuracy(pred, target),
            "f1": f1_macro(pred, target, model.config.num_labels),
        }
        if model.config.num_labels == 2:
            metrics["f1_binary"] = f1_binary(pred, target)
        return metrics
    return {"loss": loss, "mse": loss, "pearson": pearson(pred, target), "spearman": spearman(pred, target)}
