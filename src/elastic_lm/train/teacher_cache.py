"""A disk cache of teacher top-k logits, so an expensive teacher runs once for many epochs/students.

One safetensors shard per batch (``topk-00000012.safetensors``) holds ``values`` [..., k] and
``indices`` [..., k] (int32) and, if given, ``example_ids`` (the dataset rows of the batch, so the
loop can check its data order still matches). Shards are written to a temporary name and renamed,
so a crash never leaves a half-written shard, and :meth:`TopKLogitCache.fill` resumes by skipping
shards that exist. Batches are keyed by their index in a deterministic loader order (fixed shuffle
seed); the loss that reads them is ``losses.TopKLogitDistillation`` (its docstring states the
approximation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from elastic_lm.errors import CheckpointError, ConfigError

_META = "topk_cache.json"


class TopKLogitCache:
    """Write and read teacher top-k logits, keyed by batch index."""

    def __init__(self, directory: str | os.PathLike[str], k: int | None = None) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / _META
        if meta_path.exists():
            stored = int(json.loads(meta_path.read_text())["k"])
            if k is not None and k != stored:
                raise ConfigError(
                    f"teacher cache {self.directory} holds k={stored}, asked for k={k}; "
                    "use the same k or a new cache directory"
                )
            k = stored
        if k is None or k < 1:
            raise ConfigError(f"topk k={k} must be >= 1 for a new cache; e.g. k=64")
        self.k = int(k)
        self.directory.mkdir(parents=True, exist_ok=True)
        if not meta_path.exists():
            meta_path.write_text(json.dumps({"k": self.k, "format": 1}))

    def _path(self, index: int) -> Path:
        return self.directory / f"topk-{int(index):08d}.safetensors"

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self._path(index).exists()

    def indices(self) -> list[int]:
        """The batch indices already cached, sorted."""
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("topk-*.safetensors"))

    def __len__(self) -> int:
        return len(self.indices())

    def write(
        self,
        index: int,
        logits: Tensor,
        example_ids: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Path:
        """Keep the top-k of ``logits`` [..., V] for batch ``index`` (float16 halves the disk)."""
        k = min(self.k, logits.shape[-1])
        values, idx = logits.detach().float().topk(k, dim=-1)
        tensors = {
            "values": values.to(dtype).cpu().contiguous(),
            "indices": idx.to(torch.int32).cpu().contiguous(),
        }
        if example_ids is not None:
            tensors["example_ids"] = example_ids.detach().to(torch.int64).cpu().contiguous()
        path = self._path(index)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"k": str(k)})
        os.replace(tmp, path)
        return path

    def read(self, index: int) -> dict[str, Tensor]:
        """``values`` (float32), ``indices`` (int64, ready for ``gather``) and ``example_ids``."""
        path = self._path(index)
        if not path.exists():
            raise CheckpointError(f"teacher cache has no batch {index} in {self.directory}; run fill() first")
        data = load_file(str(path))
        out = {"values": data["values"].float(), "indices": data["indices"].long()}
        if "example_ids" in data:
            out["example_ids"] = data["example_ids"]
        return out

    def attach(self, index: int, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``batch`` plus ``teacher_topk_values`` and ``teacher_topk_indices``."""
        cached = self.read(index)
        out = dict(batch)
        out["teacher_topk_values"] = cached["values"]
        out["teacher_topk_indices"] = cached["indices"]
        return out

    @torch.no_grad()
    def fill(
        self,
        teacher: Callable[[Mapping[str, Any]], Tensor],
        batches: Iterable[Mapping[str, Any]],
        dtype: torch.dtype = torch.float32,
    ) -> int:
        """Run ``teacher(batch) -> logits`` on every batch not cached yet; returns how many ran.

        The teacher callable is usually ``lambda b: model(**inputs(b)).logits``. Batch ``i`` of
        ``batches`` is stored as index ``i``; ``example_ids`` is stored when the batch has it.
        """
        ran = 0
        for index, batch in enumerate(batches):
            if index in self:
                continue
            self.write(index, teacher(batch), batch.get("example_ids"), dtype=dtype)
            ran += 1
        return ran


__all__ = ["TopKLogitCache"]
