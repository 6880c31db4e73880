"""How to train (TrainSettings), what training returns (TrainResult) and how it stops (TrainingDiverged)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError, UserError

MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
)


class TrainingDiverged(UserError):  # noqa: N818 (the name users search for)
    """The loss became NaN, infinite or exploded; the last checkpoint on disk is the last good state."""


@dataclass
class TrainSettings:
    """How to train. ``batch_size`` is the *global* micro-batch (split over ranks).

    One optimiser step sees ``batch_size * grad_accumulation`` examples whatever the number of
    processes, so a run's loss curve does not depend on how many GPUs trained it.
    """

    steps: int = 200
    batch_size: int = 16
    grad_accumulation: int = 1
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    eval_every: int = 100
    eval_batches: int = 8
    eval_batch_size: int | None = None
    eval_archs: dict[str, Architecture] | None = None
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None
    # called with (k, global micro-batch k) before sharding, e.g. ``TopKLogitCache.attach``
    batch_hook: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None
    # called as before_step(step, model, strategy, optimizer) at the start of every step; returns
    # True when it replaced parameters (ELM dynamic modules), so the loop re-collects them. It must
    # resize the optimiser state itself and do the same on every rank.
    before_step: Callable[[int, nn.Module, Any, torch.optim.Optimizer], bool] | None = None
    # objects with JSON-safe state_dict() / load_state_dict(), saved as NAME.json in every
    # checkpoint and restored on resume (``dynamic``: ELM dynamic modules)
    extra_state: dict[str, Any] | None = None
    # MLM logits only at the labelled positions when every loss of a pass reads nothing else (a
    # model with ``supports_logits_positions``); about half of a MiniLM step at seq 128
    masked_logits: bool = True

    def validate(self) -> None:
        """Every bad value is a ConfigError naming the field, the value and a fix."""
        if int(self.steps) < 0:
            raise ConfigError(f"train.steps={self.steps} must be >= 0 (0: the source model, untrained)")
        positive = ("batch_size", "grad_accumulation", "checkpoint_every", "eval_every")
        for name in (*positive, "keep_checkpoints", "eval_batches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 1")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate} must be > 0; e.g. 5e-4")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"train.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"train.schedule={self.schedule!r} is unknown; use linear, cosine or constant")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"train.precision={self.precision!r} is unknown; use auto, fp32, bf16 or fp16")

    @classmethod
    def from_config(cls, train: Any, *, seed: int = 0, device: str = "auto", **extra: Any) -> TrainSettings:
        """Settings from the config's ``train`` section (any object with those attributes)."""
        names = {f.name for f in fields(cls)}
        values = {n: getattr(train, n) for n in names if hasattr(train, n)}
        return cls(**{**values, "seed": seed, "device": device, **extra})

    def public(self) -> dict[str, Any]:
        """The JSON-able part, for ``state.json``."""
        skip = {"eval_archs", "collate_fn", "batch_hook", "before_step", "extra_state"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class TrainResult:
    """What a run did: losses per step (of this invocation), the last validation and checkpoint."""

    steps: int
    start_step: int
    losses: list[float]
    val: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    run_dir: Path | None = None
    # set by ``train_from_config``: the trained model (rebuilt when a resume re-shaped it) and the
    # space after training (adjusted by dynamic modules); save this space for the search
    model: nn.Module | None = None
    space: Any = None


__all__ = ["MODEL_INPUT_KEYS", "TrainResult", "TrainSettings", "TrainingDiverged"]
