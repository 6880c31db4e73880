"""Train one fixed model with the super-network loop: fine-tuning, teacher re-training, baselines.

Reusing :func:`~elastic_lm.train.loop.train_supernet` (rather than a second loop) gives plain
training the same seeding, checkpointing, mixed precision and logging as super-network training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from elastic_lm.architecture import Architecture
from elastic_lm.train.loop import TrainResult, TrainSettings, train_supernet
from elastic_lm.train.losses import CombinedLoss
from elastic_lm.train.strategies import make_strategy


class OneMemberSpace:
    """A space with one member, so the standard strategy always trains that architecture."""

    def __init__(self, arch: Architecture | None) -> None:
        self.arch = arch

    def largest(self) -> Architecture | None:
        return self.arch

    def smallest(self) -> Architecture | None:
        return self.arch

    def sample(self, rng: Any) -> Architecture | None:
        return self.arch


class FixedModel(nn.Module):
    """A plain (non-elastic) model behind the interface the training loop drives."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def set_architecture(self, arch: Any) -> None:
        """Nothing to select: a standalone model is its own only member."""

    def reset(self) -> None:
        """Nothing to reset."""

    def forward(self, **inputs: Any) -> Any:
        return self.inner(**inputs)


def train_one_model(
    model: nn.Module,
    losses: list[dict[str, Any]],
    train_data: Sequence[Any],
    *,
    settings: TrainSettings,
    run_dir: str | Path,
    val_data: Sequence[Any] | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``model`` as it is (an elastic model at its current architecture, or any HF model).

    With ``teacher``, the model learns from it (losses such as ``logit-kd`` read its outputs), so a
    baseline can be distilled with exactly the teacher a super-network had.
    """
    elastic = hasattr(model, "set_architecture")
    arch = model.architecture if elastic else None
    return train_supernet(
        model if elastic else FixedModel(model),
        make_strategy(
            "standard",
            OneMemberSpace(arch),
            seed=settings.seed,
            target="teacher" if teacher is not None else "labels",
        ),
        CombinedLoss(losses),
        train_data,
        val_data=val_data,
        teacher=teacher,
        settings=settings,
        run_dir=run_dir,
    )
