"""A fixed list of evaluation batches: every architecture is ranked on exactly the same tokens."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from elastic_lm.errors import ConfigError

Batch = dict[str, torch.Tensor]


def _fresh(collate: Callable[[list[dict[str, Any]]], dict[str, Any]], seed: int) -> Any:
    """A copy of ``collate`` whose own generator (Hugging Face MLM collators) restarts at ``seed``.

    Such collators keep one generator across calls, so calling the same object twice would mask
    different tokens; a reset copy masks the same ones every time.
    """
    fresh = copy.copy(collate)
    if hasattr(fresh, "generator") and hasattr(fresh, "seed"):
        fresh.generator = None
        fresh.seed = seed
    return fresh


def fixed_eval_batches(
    dataset: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    n_batches: int,
    batch_size: int,
    seed: int = 0,
) -> list[Batch]:
    """``n_batches`` batches of a seeded subset of ``dataset`` (fewer when it is small).

    Same arguments, same batches: examples are chosen by a seeded permutation, and masking (MLM)
    is seeded too, so every architecture sees the same masked tokens. Build them once per search.
    """
    if n_batches < 1 or batch_size < 1:
        raise ConfigError(
            f"eval batches: n_batches={n_batches}, batch_size={batch_size}; both must be at least 1"
        )
    if len(dataset) == 0:
        raise ConfigError("eval batches: the validation split is empty; give data.validation a size > 0")
    order = np.random.default_rng(seed).permutation(len(dataset))[: n_batches * batch_size]
    fn = _fresh(collate, seed)
    batches: list[Batch] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(order), batch_size):
            features = [dict(dataset[int(i)]) for i in order[start : start + batch_size]]
            batch = fn(features)
            batches.append({k: torch.as_tensor(v) for k, v in batch.items() if k != "special_tokens_mask"})
    return batches
