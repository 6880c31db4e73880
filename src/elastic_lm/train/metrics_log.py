"""The training log: metrics.csv (step, split, name, value) and, when installed, TensorBoard."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class MetricsLog:
    """Long-format ``metrics.csv`` (step, split, name, value) plus optional TensorBoard.

    On resume, rows after the resumed step (written before the interruption) are dropped so the
    file reads as one uninterrupted run; TensorBoard gets ``purge_step`` for the same reason.
    """

    def __init__(self, folder: Path, *, enabled: bool, start_step: int, tensorboard: bool) -> None:
        self.enabled = enabled
        self.writer: Any = None
        self.path = folder / "metrics.csv"
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if start_step > 0 and self.path.exists():
            with self.path.open(newline="") as f:
                kept = [r for r in list(csv.reader(f))[1:] if int(r[0]) <= start_step]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows([["step", "split", "name", "value"], *kept])
        self._file = self.path.open("a", newline="")
        self._csv = csv.writer(self._file)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.writer = None
            else:
                self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step + 1)

    def log(self, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._csv.writerow([step, split, name, f"{value:.8g}"])
            if self.writer is not None:
                self.writer.add_scalar(f"{split}/{name}", value, step)
        self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self.writer is not None:
                self.writer.close()


__all__ = ["MetricsLog"]
