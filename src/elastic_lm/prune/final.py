"""The final evaluation: the only code that reads the test split.

Keeping it in one function makes "the search never saw test data" checkable: a test replaces
:func:`load_test_split` and proves nothing before the final stage calls it.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from elastic_lm.data import DataConfig, collator_for, tokenize_splits
from elastic_lm.prune import data as _data
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches


def load_test_split(config: DataConfig, tokenizer: PreTrainedTokenizerBase) -> list[dict[str, Any]]:
    """Tokenized test batches' rows (call only for the final report)."""
    from datasets import DatasetDict

    raw = DatasetDict({"test": _data.load_test_rows(config)})
    return tokenize_splits(raw, tokenizer, config.max_length, config.task)["test"]


def final_evaluation(
    models: dict[str, Any],
    config: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """Test metrics for each named model: ``{name: model}`` or ``{name: (supernet, arch)}``, with
    95 % bootstrap intervals of accuracy and macro F1 (``test_accuracy_ci``) for classifiers."""
    from elastic_lm.prune.intervals import model_intervals

    rows = load_test_split(config, tokenizer)
    batches = fixed_batches(rows, collator_for(config.task, tokenizer), batch_size)
    out: dict[str, dict[str, float]] = {}
    for name, entry in models.items():
        model, arch = entry if isinstance(entry, tuple) else (entry, None)
        out[name] = {f"test_{k}": v for k, v in evaluate_model(model, batches, config.task, arch).items()}
        if config.task == "classification":
            out[name].update(model_intervals(model, batches, "test", arch, seed=config.seed))
    return out


__all__ = ["final_evaluation", "load_test_split"]
