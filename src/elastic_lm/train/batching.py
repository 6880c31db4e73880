"""Which rows each micro-step sees: a pure function of (seed, step), so a resumed run replays exactly."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.distributed import (
    DistContext,
)
from elastic_lm.train.settings import TrainSettings


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (same in every process and machine)."""
    digest = hashlib.sha256(":".join(map(str, ("elastic-lm", *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StepBatches:
    """Global micro-batch ``k`` of a seeded, epoch-wise shuffled stream, and this rank's shard.

    The stream is the concatenation of one ``randperm`` per epoch (seeded by ``(seed, epoch)``);
    micro-batch ``k`` holds stream positions ``[k * B, (k + 1) * B)``. Every rank collates the
    whole global batch with the RNGs seeded by ``(seed, k)`` and keeps its contiguous ``B / W`` rows
    (:func:`shard_batch`), so padding and random MLM masking do not depend on the number of
    processes, and a teacher cache filled from :func:`training_batches` matches. Resuming needs
    only ``k``.
    """

    def __init__(
        self,
        data: Sequence[Any],
        batch_size: int,
        seed: int,
        ctx: DistContext,
        collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    ) -> None:
        if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise DataError(
                f"train_data of type {type(data).__name__} is not indexable; pass a map-style "
                "dataset (a list or torch Dataset with __len__ and __getitem__), not a DataLoader"
            )
        if len(data) == 0:
            raise DataError("train_data is empty; give at least one example")
        if batch_size % ctx.world_size:
            raise ConfigError(
                f"train.batch_size={batch_size} is not divisible by the {ctx.world_size} "
                f"processes; use a multiple of {ctx.world_size}"
            )
        self.data, self.batch_size, self.seed, self.ctx = data, batch_size, seed, ctx
        self.collate = collate_fn or default_collate
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k >= epoch - 1}
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(len(self.data), generator=g)
        return self._perms[epoch]

    def global_indices(self, k: int) -> list[int]:
        """The dataset rows of global micro-batch ``k``, in order."""
        n, start = len(self.data), k * self.batch_size
        return [int(self._perm(p // n)[p % n]) for p in range(start, start + self.batch_size)]

    def indices(self, k: int) -> list[int]:
        """This rank's share of :meth:`global_indices`."""
        local = self.batch_size // self.ctx.world_size
        return self.global_indices(k)[self.ctx.rank * local : (self.ctx.rank + 1) * local]

    def global_batch(self, k: int) -> dict[str, Any]:
        """Global micro-batch ``k`` collated with every RNG seeded by ``(seed, k)``."""
        seed = derive_seed(self.seed, "batch", k)
        seed_everything(seed)
        reseed_collator(self.collate, seed)
        return self.collate([self.data[i] for i in self.global_indices(k)])


def reseed_collator(collate: Any, seed: int) -> None:
    """Re-seed a collator's own generator (HF ``DataCollatorForLanguageModeling(seed=...)``).

    Such a collator draws masks from a private generator that advances from batch to batch and is
    in no checkpoint; seeding it per batch makes masking a function of the batch index, so resumed
    and multi-process runs mask exactly as an uninterrupted single-process run.
    """
    generator = getattr(collate, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)
    elif isinstance(generator, np.random.Generator):
        collate.generator = np.random.default_rng(seed)
    elif generator is None and getattr(collate, "seed", None) is not None:
        if getattr(collate, "return_tensors", "pt") == "np":
            collate.generator = np.random.default_rng(seed)
        else:
            collate.generator = torch.Generator().manual_seed(seed)


def shard_batch(batch: Mapping[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """Rank ``rank``'s contiguous rows of every per-example entry (tensors and lists)."""
    if world_size == 1:
        return dict(batch)
    sizes = {len(v) for v in batch.values() if isinstance(v, Tensor | list) and len(v) > 0}
    rows = max(sizes) if sizes else 0
    local = rows // world_size
    part = slice(rank * local, (rank + 1) * local)
    return {k: v[part] if isinstance(v, Tensor | list) and len(v) == rows else v for k, v in batch.items()}


def training_batches(
    train_data: Sequence[Any], settings: TrainSettings, start: int = 0
) -> Iterator[dict[str, Any]]:
    """The global micro-batches a run sees, in order (``k = start, start + 1, ...``).

    For filling a teacher cache: ``TopKLogitCache.fill(teacher_fn, training_batches(data, s))``
    stores batch ``k`` under index ``k``; train with ``settings.batch_hook = cache.attach``.
    """
    batches = StepBatches(train_data, settings.batch_size, settings.seed, DistContext(), settings.collate_fn)
    for k in range(start, settings.steps * settings.grad_accumulation):
        yield batches.global_batch(k)


__all__ = [
    "StepBatches",
    "derive_seed",
    "reseed_collator",
    "seed_everything",
    "shard_batch",
    "training_batches",
]
