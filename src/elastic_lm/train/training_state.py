"""A trainer's state in and out of checkpoints: what :mod:`elastic_lm.train.loop` saves every
``checkpoint_every`` steps and restores on ``--resume`` (the file format is
:mod:`elastic_lm.train.checkpoint`'s)."""

from __future__ import annotations

import time
from typing import Any

from elastic_lm.errors import ConfigError
from elastic_lm.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from elastic_lm.train.distributed import barrier


def restore_training(trainer: Any) -> None:
    """Load the newest checkpoint into a trainer (model, optimiser, schedule, losses, strategy, RNG);
    refuses settings that would make the resumed run differ from an uninterrupted one."""
    path = latest_checkpoint(trainer.ckpt_dir)
    if path is None:
        return
    ckpt = load_checkpoint(path, trainer.model, trainer.ctx.device)
    saved = ckpt.state.get("settings", {})
    for name in ("batch_size", "grad_accumulation", "seed", "steps"):
        if name in saved and saved[name] != getattr(trainer.s, name):
            raise ConfigError(
                f"train.{name}={getattr(trainer.s, name)} differs from the checkpoint's "
                f"{saved[name]} ({path}); resume with the same value or use a new run_dir"
            )
    trainer.optimizer.load_state_dict(ckpt.trainer["optimizer"])
    trainer.scheduler.load_state_dict(ckpt.trainer["scheduler"])
    if saved.get("learning_rate", trainer.s.learning_rate) != trainer.s.learning_rate:
        _rescale_learning_rate(trainer)  # resuming a diverged run with a lower rate
    trainer.losses.load_state_dict(ckpt.trainer["losses"])
    if trainer.scaler is not None and "scaler" in ckpt.trainer:
        trainer.scaler.load_state_dict(ckpt.trainer["scaler"])
    trainer.strategy.load_state_dict(ckpt.strategy)
    for name, holder in (trainer.s.extra_state or {}).items():
        saved_extra = ckpt.extra(name)
        if saved_extra is not None:
            holder.load_state_dict(saved_extra)
    set_rng_state(ckpt.trainer["rng"])
    trainer.start = ckpt.step
    trainer.last_ckpt = path


def _rescale_learning_rate(trainer: Any) -> None:
    """Put ``train.learning_rate`` in place of the checkpoint's, at the same schedule position."""
    factor = trainer.scheduler.lr_lambdas[0](trainer.scheduler.last_epoch)
    trainer.scheduler.base_lrs = [trainer.s.learning_rate] * len(trainer.optimizer.param_groups)
    for group in trainer.optimizer.param_groups:
        group["initial_lr"] = trainer.s.learning_rate
        group["lr"] = trainer.s.learning_rate * factor


def save_training(trainer: Any, step: int) -> None:
    """Checkpoint a trainer at ``step`` (rank 0 writes; every rank waits for it)."""
    if trainer.ctx.is_main:
        states = {
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "losses": trainer.losses.state_dict(),
            "rng": rng_state(),
        }
        if trainer.scaler is not None:
            states["scaler"] = trainer.scaler.state_dict()
        state = {
            "micro_batches_done": step * trainer.s.grad_accumulation,
            "world_size": trainer.ctx.world_size,
            "settings": trainer.s.public(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        trainer.last_ckpt = save_checkpoint(
            trainer.ckpt_dir,
            step,
            model=trainer.model,
            trainer=states,
            strategy=trainer.strategy.state_dict(),
            state=state,
            keep=trainer.s.keep_checkpoints,
            extra={name: h.state_dict() for name, h in (trainer.s.extra_state or {}).items()},
        )
    barrier(trainer.ctx)


__all__ = ["restore_training", "save_training"]
