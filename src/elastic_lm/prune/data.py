"""Task data for pruning: the search sees train and validation only; test lives in ``final.py``.

Why split this way: every choice the pipeline makes (fine-tuning, importance, super-network
training, the search, the baselines' layer choice) must be blind to the test split, or the reported
test accuracy is optimistic. ``load_search_data`` drops the test rows as soon as the deterministic
split is cut; only :func:`elastic_lm.prune.final.load_test_split` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from elastic_lm.data import DataConfig, collator_for, label_names, load_splits, tokenize_splits
from elastic_lm.errors import ConfigError


@dataclass(frozen=True)
class TaskData:
    """Tokenized train / validation rows (the validation is carved from the training data)."""

    train: Dataset
    validation: Dataset
    collator: Any
    task: str
    label_names: list[str] | None

    @property
    def num_labels(self) -> int:
        """Classes for classification, 1 for regression."""
        return len(self.label_names) if self.label_names is not None else 1


def check_labelled(config: DataConfig) -> None:
    """Pruning is supervised: refuse language-modelling data with a one-line fix."""
    if config.task not in ("classification", "regression"):
        raise ConfigError(
            f"data.task={config.task!r} is not a labelled task; 'elastic-lm prune' needs "
            "data.task classification or regression"
        )


def _raw_splits(config: DataConfig) -> DatasetDict:
    check_labelled(config)
    if config.validation_ratio <= 0:
        raise ConfigError(
            "data.validation_ratio=0 leaves the search no validation data; use e.g. 0.1 "
            "(it is carved from the training data, the test split stays untouched)"
        )
    return load_splits(config)


def load_search_data(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, *, use_cache: bool = True
) -> TaskData:
    """Train and validation splits, tokenized; the test split is discarded here, unread."""
    raw = _raw_splits(config)
    names = label_names(raw) if config.task == "classification" else None
    kept = DatasetDict({"train": raw["train"], "validation": raw["validation"]})
    del raw  # the test rows never leave this function
    splits = tokenize_splits(kept, tokenizer, config.max_length, config.task, use_cache=use_cache)
    collator = collator_for(config.task, tokenizer, config.mlm_probability, config.seed)
    return TaskData(splits["train"], splits["validation"], collator, config.task, names)


def count_rows(config: DataConfig) -> int:
    """All labelled rows, before the split (how small the data set is; no row is returned)."""
    return sum(len(split) for split in _raw_splits(config).values())


def load_test_rows(config: DataConfig) -> Dataset:
    """The raw test split (private to ``final.py``; see the module docstring)."""
    return _raw_splits(config)["test"]


__all__ = ["TaskData", "check_labelled", "load_search_data"]
