"""Data: your files or a built-in asset -> splits -> cached tokens -> batches."""

from __future__ import annotations

from elastic_lm.data.collate import (
    classification_collator,
    clm_collator,
    collator_for,
    mlm_collator,
)
from elastic_lm.data.config import DataConfig, TaskKind
from elastic_lm.data.prepare import (
    DataLoaders,
    PreparedData,
    build_dataloaders,
    load_splits,
    prepare_data,
)
from elastic_lm.data.sources import (
    encode_labels,
    encode_regression,
    label_names,
    load_labelled,
    load_text_corpus,
)
from elastic_lm.data.splits import split_dataset, subsample
from elastic_lm.data.tokenization import group_blocks, tokenize, tokenize_splits

__all__ = [
    "DataConfig",
    "DataLoaders",
    "PreparedData",
    "TaskKind",
    "build_dataloaders",
    "classification_collator",
    "clm_collator",
    "collator_for",
    "encode_labels",
    "encode_regression",
    "group_blocks",
    "label_names",
    "load_labelled",
    "load_splits",
    "load_text_corpus",
    "mlm_collator",
    "prepare_data",
    "split_dataset",
    "subsample",
    "tokenize",
    "tokenize_splits",
]
