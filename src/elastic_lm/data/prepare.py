"""DataConfig + tokenizer -> ready splits and DataLoaders: the one call training and pruning use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from elastic_lm.data.collate import Collator, collator_for
from elastic_lm.data.config import DataConfig
from elastic_lm.data.sources import label_names, load_labelled, load_text_corpus
from elastic_lm.data.splits import split_dataset, subsample
from elastic_lm.data.tokenization import tokenize_splits


@dataclass(frozen=True)
class DataLoaders:
    """Train (shuffled, seeded), validation and test loaders."""

    train: DataLoader
    validation: DataLoader
    test: DataLoader


@dataclass(frozen=True)
class PreparedData:
    """Tokenized splits plus the collator that batches them.

    Distributed training builds its own samplers from ``splits``; everyone else calls
    :meth:`dataloaders`.
    """

    splits: DatasetDict
    collator: Collator
    task: str
    label_names: list[str] | None

    @property
    def num_labels(self) -> int:
        """Classes for classification, 1 for regression, 0 for language modelling."""
        if self.label_names is not None:
            return len(self.label_names)
        return 1 if self.task == "regression" else 0

    def dataloaders(self, batch_size: int, seed: int = 0, num_workers: int = 0) -> DataLoaders:
        """Loaders over the splits; the train order depends only on ``seed``."""
        generator = torch.Generator().manual_seed(seed)

        def loader(split: Dataset, shuffle: bool) -> DataLoader:
            return DataLoader(
                split,  # type: ignore[arg-type]
                batch_size=batch_size,
                shuffle=shuffle,
                collate_fn=self.collator,
                num_workers=num_workers,
                generator=generator if shuffle else None,
            )

        return DataLoaders(
            loader(self.splits["train"], True),
            loader(self.splits["validation"], False),
            loader(self.splits["test"], False),
        )


def load_splits(config: DataConfig) -> DatasetDict:
    """Raw (untokenized) train/validation/test splits for ``config``."""
    if config.labelled:
        data = load_labelled(
            config.source,
            text_column=config.text_column,
            label_column=config.label_column,
            text_pair_column=config.text_pair_column,
            task="regression" if config.task == "regression" else "classification",
        )
    else:
        data = load_text_corpus(config.source, text_column=config.text_column)
    if isinstance(data, Dataset):
        data = subsample(data, config.max_examples, config.seed)
    else:
        data = DatasetDict({k: subsample(v, config.max_examples, config.seed) for k, v in data.items()})
    return split_dataset(data, config.validation_ratio, config.test_ratio, config.seed)


def prepare_data(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, *, use_cache: bool = True
) -> PreparedData:
    """Load, split, tokenize (cached on disk) and pick the collator for ``config.task``."""
    collator = collator_for(config.task, tokenizer, config.mlm_probability, config.seed)
    raw = load_splits(config)
    names = label_names(raw) if config.task == "classification" else None
    splits = tokenize_splits(raw, tokenizer, config.max_length, config.task, use_cache=use_cache)
    return PreparedData(splits, collator, config.task, names)


def build_dataloaders(config: DataConfig, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> DataLoaders:
    """Everything in one call: ``config`` + tokenizer -> train/validation/test DataLoaders."""
    return prepare_data(config, tokenizer).dataloaders(batch_size, seed=config.seed)
