"""Linear probe: logistic regression on the frozen, pooled sentence embedding.

Why a probe next to fine-tuning: it asks what the embedding already encodes, costs seconds instead of
minutes per model and task, and has no training recipe that could favour one model. Its weakness (it
barely separates a cut model from its teacher) is why retrieval is reported beside it; the majority
and chance lines say how far above trivial a score is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch

from elastic_lm.data.config import DataConfig
from elastic_lm.errors import DataError


@dataclass(frozen=True)
class ProbeTask:
    """One labelled task's texts, split as the data pipeline splits it: the probe is fitted on train and
    scored on validation + test (nothing is tuned, so both are held out)."""

    name: str
    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]
    label_names: tuple[str, ...]

    def baselines(self) -> dict[str, float]:
        """The trivial lines: predict the training majority class; guess uniformly at random."""
        majority = Counter(self.train_labels).most_common(1)[0][0]
        predictions = [majority] * len(self.test_labels)
        k = len(self.label_names)
        scores = classification_scores(predictions, list(self.test_labels), k)
        return {
            "majority_accuracy": scores["accuracy"],
            "majority_macro_f1": scores["macro_f1"],
            "chance_accuracy": 1.0 / k,
        }


def load_probe_task(name: str, config: DataConfig) -> ProbeTask:
    """A labelled ``config`` (asset or user file) as train and held-out (validation + test) lists."""
    import datasets

    from elastic_lm.data.prepare import load_splits
    from elastic_lm.data.sources import label_names

    if config.task != "classification":
        raise DataError(f"probe task {name!r} must be a classification task (data.task: classification)")
    splits = load_splits(config)
    names = label_names(splits) or []
    train = splits["train"]
    # nothing is tuned on validation, so it is held out as much as test: score on both (less noise)
    test = datasets.concatenate_datasets([splits["validation"], splits["test"]])
    if len(test) == 0:
        raise DataError(f"probe task {name!r} has an empty test split; raise its test_ratio or max_examples")
    if len(set(train["label"])) < 2:
        raise DataError(f"probe task {name!r}: the train split has one class; give it more examples")
    return ProbeTask(
        name=name,
        train_texts=tuple(train["text"]),
        train_labels=tuple(int(y) for y in train["label"]),
        test_texts=tuple(test["text"]),
        test_labels=tuple(int(y) for y in test["label"]),
        label_names=tuple(names),
    )


@dataclass(frozen=True)
class ProbeScore:
    """Test-split scores of the probe on one task."""

    accuracy: float
    macro_f1: float
    train_examples: int
    test_examples: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def classification_scores(predictions: list[int], labels: list[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 over all ``num_labels`` classes (a class never predicted scores 0)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(
            f1_score(labels, predictions, labels=list(range(num_labels)), average="macro", zero_division=0)
        ),
    }


def fit_probe(
    train_x: torch.Tensor,
    train_y: list[int] | tuple[int, ...],
    test_x: torch.Tensor,
    test_y: list[int] | tuple[int, ...],
    num_labels: int,
    *,
    c: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> ProbeScore:
    """Fit L2-regularised logistic regression (lbfgs, deterministic) and score it on the test split."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    predictions = clf.predict(np.asarray(test_x, dtype=np.float64)).tolist()
    scores = classification_scores(predictions, list(test_y), num_labels)
    return ProbeScore(scores["accuracy"], scores["macro_f1"], len(train_y), len(test_y))


__all__ = ["ProbeScore", "ProbeTask", "classification_scores", "fit_probe", "load_probe_task"]
