"""Batch builders for the three kinds of task, all from ``transformers``' well-tested collators.

MLM uses ``DataCollatorForLanguageModeling`` (15 % of maskable tokens; of those 80 % [MASK], 10 %
random, 10 % unchanged; special tokens and padding never masked; seedable). CLM blocks are already
fixed-length, so stacking is enough. Classification pads each batch to its longest example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    default_data_collator,
)

from elastic_lm.errors import DataError

Collator = Callable[[list[dict[str, Any]]], dict[str, Any]]


def mlm_collator(
    tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int | None = None
) -> Collator:
    """Masked-LM batches: ``input_ids`` with masks applied, ``labels`` -100 where not masked."""
    if tokenizer.mask_token is None:
        raise DataError(
            f"tokenizer '{tokenizer.name_or_path}' has no mask token, so it cannot do data.task "
            "mlm: use a BERT-style tokenizer or set data.task to clm"
        )
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed)


def clm_collator() -> Collator:
    """Causal-LM batches from equal-length blocks (input_ids, attention_mask, labels)."""
    return default_data_collator


def classification_collator(tokenizer: PreTrainedTokenizerBase) -> Collator:
    """Dynamic padding; ``label`` becomes ``labels`` as Hugging Face models expect."""
    return _DropSpecialMask(DataCollatorWithPadding(tokenizer))


class _DropSpecialMask:
    """Classification does not need ``special_tokens_mask``; drop it before padding."""

    def __init__(self, inner: Collator) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        cleaned = [{k: v for k, v in f.items() if k != "special_tokens_mask"} for f in features]
        return self.inner(cleaned)


def collator_for(
    task: str, tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int = 0
) -> Collator:
    """The collator for ``task`` (mlm, clm, classification or regression)."""
    if task == "mlm":
        return mlm_collator(tokenizer, mlm_probability, seed)
    if task == "clm":
        return clm_collator()
    if task in ("classification", "regression"):
        return classification_collator(tokenizer)
    raise DataError(f"data.task '{task}' is unknown: use mlm, clm, classification or regression")
