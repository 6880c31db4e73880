"""Small training helpers shared by the pipeline and the baselines: fixed-architecture runs, losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from elastic_lm.config import Config
from elastic_lm.train.loop import TrainSettings, train_supernet
from elastic_lm.train.losses import LOSSES, CombinedLoss, Loss
from elastic_lm.train.strategies import FixedSpace, StandardStrategy


class OutputDistillationMSE(Loss):
    """Regression distillation: MSE between the student's and the teacher's predictions.

    ``logit-kd`` is a KL over classes and means nothing for one regression output.
    """

    name = "output-mse"
    needs_teacher = True
    default_when = ("teacher", "largest")

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        return F.mse_loss(student.logits.float(), teacher.logits.detach().float())


LOSSES.setdefault(OutputDistillationMSE.name, OutputDistillationMSE)


def task_loss(task: str) -> str:
    return "regression" if task == "regression" else "classification"


def distill_losses(task: str) -> list[dict[str, Any]]:
    """Task loss everywhere plus distillation to the teacher's (or in-place largest's) outputs."""
    kd = "output-mse" if task == "regression" else "logit-kd"
    return [{"name": task_loss(task)}, {"name": kd, "when": ["teacher", "largest"]}]


def has_checkpoints(run_dir: Path) -> bool:
    return any((Path(run_dir) / "train" / "checkpoints").glob("step-*"))


def train_fixed(
    model: torch.nn.Module,
    config: Config,
    train_rows: Sequence[Any],
    val_rows: Sequence[Any],
    collator: Any,
    task: str,
    run_dir: Path,
    *,
    steps: int,
    learning_rate: float,
    teacher: torch.nn.Module | None = None,
    progress: bool = False,
) -> None:
    """Train ``model`` at its full size (fine-tuning, or distillation from ``teacher``), resumable."""
    arch = model.model.largest()  # type: ignore[union-attr]
    strategy = StandardStrategy(FixedSpace(arch), seed=config.seed, target="teacher" if teacher else "labels")
    spec = distill_losses(task) if teacher is not None else [{"name": task_loss(task)}]
    settings = TrainSettings.from_config(
        config.train,
        seed=config.seed,
        device=config.device,
        steps=steps,
        learning_rate=learning_rate,
        collate_fn=collator,
        progress=progress,
        tensorboard=False,
        eval_every=max(1, steps),
        checkpoint_every=max(1, steps),
        keep_checkpoints=1,
        eval_archs={"largest": arch},
        resume=has_checkpoints(run_dir),
    )
    if teacher is not None:
        teacher.eval()
    train_supernet(
        model,
        strategy,
        CombinedLoss(spec),
        train_rows,
        val_data=val_rows,
        teacher=teacher,
        settings=settings,
        run_dir=run_dir,
    )
    model.eval()


__all__ = ["OutputDistillationMSE", "distill_losses", "task_loss", "train_fixed"]
