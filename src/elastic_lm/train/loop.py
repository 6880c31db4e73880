"""The super-network training loop: a strategy picks the sub-networks of a step, losses compare.

Per optimiser step: ``tasks = strategy(step)``; for each gradient-accumulation micro-batch, each
task selects its architecture, runs the model and back-propagates
``losses(outputs, batch, reference, target=task.target)``. A task with ``keep_outputs`` (the
largest, first) leaves its detached outputs as the reference of later ``target="largest"`` tasks
(in-place distillation). Then gradients are averaged over ranks, clipped, and AdamW takes one step.

Reproducibility is by construction rather than by bookkeeping: the global batch of micro-step ``k``
is a pure function of ``(seed, k)`` (a seeded permutation per epoch, collated with every RNG seeded
by ``(seed, k)``, so MLM masking in a collator is too), and the forward passes run with the RNGs
seeded by ``(seed, k, rank)`` (dropout). Resuming from a checkpoint at step ``s`` therefore replays
exactly what an uninterrupted run does after ``s``; RNG states are still saved for code outside
the loop.

The rooms around it: settings and results (``settings.py``), which rows a step sees
(``batching.py``), the optimiser and schedule (``optim.py``), what a step asks of the model
(``step_inputs.py``), checkpoints in and out (``training_state.py``), the log (``metrics_log.py``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from elastic_lm.errors import CheckpointError, ConfigError
from elastic_lm.train.batching import (
    StepBatches,
    derive_seed,
    reseed_collator,
    seed_everything,
    shard_batch,
    training_batches,
)
from elastic_lm.train.checkpoint import (
    latest_checkpoint,
)
from elastic_lm.train.distributed import (
    all_reduce_gradients,
    all_reduce_mean,
    all_reduce_sum,
    broadcast_parameters,
    init_distributed,
)
from elastic_lm.train.metrics_log import MetricsLog
from elastic_lm.train.optim import amp_dtype, autocast, build_optimizer, grad_scaler, lr_factor
from elastic_lm.train.settings import MODEL_INPUT_KEYS, TrainingDiverged, TrainResult, TrainSettings
from elastic_lm.train.step_inputs import detached, eval_archs, logits_positions, needs, to_device
from elastic_lm.train.strategies import Strategy, SubnetTask
from elastic_lm.train.training_state import restore_training, save_training

# A loss this many times its first value in a run (at least 1.0) has exploded: a too-high learning
# rate. Ordinary noise, warm-up bumps and a resumed run's first steps stay far below it.
EXPLODED_FACTOR = 10.0


# --- the loop ---------------------------------------------------------------------------------


class _Trainer:
    """State of one run; ``train_supernet`` is its public face."""

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        losses: nn.Module,
        train_data: Sequence[Any],
        val_data: Sequence[Any] | None,
        teacher: nn.Module | None,
        settings: TrainSettings,
        run_dir: Path,
    ) -> None:
        settings.validate()
        self.s = settings
        self.ctx = init_distributed(settings.device)
        self.model, self.strategy, self.losses, self.teacher = model, strategy, losses, teacher
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "train"
        self.ckpt_dir = self.folder / "checkpoints"
        dev = self.ctx.device
        model.to(dev)
        losses.to(dev)
        if teacher is not None:
            teacher.to(dev).eval().requires_grad_(False)
        if hasattr(losses, "attach"):  # losses that hook the modules (MiniLM relations)
            losses.attach(model, teacher)
        self._collect_parameters()
        broadcast_parameters(
            [*model.parameters(), *model.buffers(), *losses.parameters(), *losses.buffers()],
            self.ctx,
        )
        self.optimizer = build_optimizer(self.named, settings.learning_rate, settings.weight_decay)
        warmup = round(settings.warmup_fraction * settings.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, settings.steps, warmup, settings.schedule),
        )
        self.amp = amp_dtype(settings.precision, dev)
        self.scaler = grad_scaler(self.amp)
        self.batches = StepBatches(
            train_data, settings.batch_size, settings.seed, self.ctx, settings.collate_fn
        )
        self.val_data = val_data if val_data is not None and len(val_data) > 0 else None
        self.eval_archs = eval_archs(strategy, settings) if self.val_data is not None else {}
        self.start = 0
        self.last_ckpt: Path | None = None

    def _collect_parameters(self) -> None:
        """The trainable parameters of the model and the losses (again after a shape change)."""
        named = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        named += [(f"loss.{n}", p) for n, p in self.losses.named_parameters() if p.requires_grad]
        self.named, self.params = named, [p for _, p in named]

    # --- checkpoints --------------------------------------------------------------------------

    def resume(self) -> None:
        restore_training(self)

    def save(self, step: int) -> None:
        save_training(self, step)

    # --- one step -----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.ctx.device, self.amp)

    def _forward(self, module: nn.Module, batch: Mapping[str, Any], flags: Mapping[str, Any]) -> Any:
        inputs = {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}
        return module(**inputs, **flags)

    def train_step(self, step: int, tasks: list[SubnetTask]) -> tuple[Tensor, dict[str, float], int]:
        """Forward/backward every task on every micro-batch; returns summed loss, parts, tokens."""
        accum = self.s.grad_accumulation
        total = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        parts: dict[str, float] = defaultdict(float)
        role_count: dict[str, int] = defaultdict(int)
        for task in tasks:
            role_count[task.role] += 1
        tokens = 0
        need_teacher = any(t.target == "teacher" for t in tasks) and self.teacher is not None
        for micro in range(accum):
            k = step * accum + micro
            batch = self.batches.global_batch(k)
            if self.s.batch_hook is not None:
                batch = self.s.batch_hook(k, batch)
            batch = shard_batch(batch, self.ctx.rank, self.ctx.world_size)
            seed_everything(derive_seed(self.s.seed, "forward", k, self.ctx.rank))  # dropout
            batch = to_device(batch, self.ctx.device)
            mask = batch.get("attention_mask", batch.get("input_ids"))
            tokens += int(mask.sum()) if "attention_mask" in batch else int(mask.numel())
            teacher_out = None
            if need_teacher:
                with torch.no_grad(), self._autocast():
                    flags = needs(self.losses, "teacher", reference=True)
                    flags |= logits_positions(
                        self.teacher, self.losses, ["teacher"], batch, self.s.masked_logits
                    )
                    teacher_out = self._forward(self.teacher, batch, flags)
            kept = None
            for task in tasks:
                flags = needs(self.losses, task.target)
                targets = [task.target]
                if task.keep_outputs:
                    flags |= needs(self.losses, "largest", reference=True)
                    targets.append("largest")
                flags |= logits_positions(self.model, self.losses, targets, batch, self.s.masked_logits)
                self.model.set_architecture(task.arch)
                layerwise = bool(getattr(self.losses, "layerwise", False))
                with self._autocast():
                    out = None
                    if task.keep_outputs or not layerwise or self.losses.needs_forward(task.target):
                        out = self._forward(self.model, batch, flags)
                    ref = {"teacher": teacher_out, "largest": kept}.get(task.target)
                    extra = {"model": self.model} if layerwise else {}
                    loss, loss_parts = self.losses(out, batch, ref, target=task.target, **extra)
                scaled = loss / accum
                if self.scaler is not None:
                    scaled = self.scaler.scale(scaled)
                if scaled.requires_grad:  # e.g. block-wise loss of a sub-network with no layer left
                    scaled.backward()
                total += loss.detach().double() / accum
                weight = 1.0 / (accum * role_count[task.role])
                parts[f"loss/{task.role}"] += float(loss.detach()) * weight
                for label, value in loss_parts.items():
                    parts[f"{task.role}/{label}"] += float(value) * weight
                if task.keep_outputs:
                    kept = detached(out)
                del out, loss
        return total, dict(parts), tokens

    # --- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean label loss of each evaluation architecture over the first ``eval_batches``."""
        if self.val_data is None or not self.eval_archs:
            return {}
        self.model.eval()
        size = self.s.eval_batch_size or self.s.batch_size
        collate = self.s.collate_fn or default_collate
        n_batches = min(self.s.eval_batches, math.ceil(len(self.val_data) / size))
        results: dict[str, float] = {}
        try:
            for name, arch in self.eval_archs.items():
                self.model.set_architecture(arch)
                acc = torch.zeros(2, dtype=torch.float64, device=self.ctx.device)
                for b in range(self.ctx.rank, n_batches, self.ctx.world_size):
                    seed = derive_seed(self.s.seed, "val", b)  # same masks at every evaluation
                    seed_everything(seed)
                    reseed_collator(collate, seed)
                    rows = range(b * size, min(len(self.val_data), (b + 1) * size))
                    batch = collate([self.val_data[i] for i in rows])
                    batch = to_device(batch, self.ctx.device)
                    flags = logits_positions(self.model, self.losses, ["labels"], batch, self.s.masked_logits)
                    with self._autocast():
                        out = self._forward(self.model, batch, flags)
                        loss, _ = self.losses(out, batch, None, target="labels")
                    acc += torch.stack(
                        [
                            loss.detach().double(),
                            torch.ones((), dtype=torch.float64, device=acc.device),
                        ]
                    )
                acc = all_reduce_sum(acc, self.ctx)
                results[name] = float(acc[0] / acc[1].clamp_min(1))
        except ConfigError:  # no loss applies to the labels (pure distillation): nothing to report
            results = {}
        finally:
            self.model.train()
        return results

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        if self.s.resume:
            self.resume()
        elif (found := latest_checkpoint(self.ckpt_dir)) is not None:  # would be pruned away
            raise CheckpointError(
                f"run_dir {self.run_dir} already has training checkpoints ({found.name}); pass "
                "--resume (resume=True) to continue, or use a new run_dir"
            )
        log = MetricsLog(
            self.folder,
            enabled=self.ctx.is_main,
            start_step=self.start,
            tensorboard=self.s.tensorboard,
        )
        from elastic_lm.progress import Progress  # a bar on a terminal, log lines elsewhere

        bar = Progress(
            self.s.steps, "train", initial=self.start, enabled=self.ctx.is_main and self.s.progress
        )
        losses: list[float] = []
        val: dict[str, float] = {}
        if hasattr(self.losses, "attach"):  # again: the last run's end removed the hooks
            self.losses.attach(self.model, self.teacher)
        try:
            self.model.train()
            for step in range(self.start, self.s.steps):
                began = time.perf_counter()
                hook = self.s.before_step
                if hook is not None and hook(step, self.model, self.strategy, self.optimizer):
                    self._collect_parameters()
                    if hasattr(self.losses, "attach"):  # resized modules lost their hooks
                        self.losses.attach(self.model, self.teacher)
                    if self.val_data is not None:  # the space changed: largest / smallest too
                        self.eval_archs = eval_archs(self.strategy, self.s)
                tasks = self.strategy(step)
                self.optimizer.zero_grad(set_to_none=True)
                total, parts, tokens = self.train_step(step, tasks)
                all_reduce_gradients(self.params, self.ctx)
                summary = all_reduce_mean(
                    torch.tensor([float(total), *parts.values()], dtype=torch.float64), self.ctx
                )
                loss = float(summary[0])
                first = losses[0] if losses else loss
                if math.isfinite(loss) and loss > EXPLODED_FACTOR * max(first, 1.0):
                    raise TrainingDiverged(
                        f"training loss exploded to {loss:.4g} at step {step + 1} (it started this "
                        f"run at {first:.4g}); lower train.learning_rate (now "
                        f"{self.s.learning_rate:g}), then resume from the last good checkpoint "
                        f"({self.last_ckpt or 'none written yet'})"
                    )
                if not math.isfinite(loss):
                    where = self.last_ckpt or "none written yet"
                    raise TrainingDiverged(
                        f"training loss is {loss} at step {step + 1}; lower train.learning_rate "
                        f"(now {self.s.learning_rate:g}), raise warm-up or use precision=fp32, "
                        f"then resume from the last good checkpoint ({where})"
                    )
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                norm = torch.nn.utils.clip_grad_norm_(self.params, self.s.max_grad_norm)
                if self.scaler is None and not torch.isfinite(norm):  # fp16: the scaler skips it
                    raise TrainingDiverged(
                        f"gradient norm is {float(norm)} at step {step + 1} (loss {loss:.4g}); lower "
                        f"train.learning_rate (now {self.s.learning_rate:g}) or use precision=fp32, "
                        f"then resume from the last good checkpoint ({self.last_ckpt or 'none yet'})"
                    )
                lr = self.optimizer.param_groups[0]["lr"]
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.scheduler.step()
                tokens = int(all_reduce_sum(torch.tensor(float(tokens)), self.ctx))
                elapsed = max(time.perf_counter() - began, 1e-9)
                done = step + 1
                losses.append(loss)
                row = {"loss": loss, "lr": lr, "grad_norm": float(norm)}
                row |= {"tokens": tokens, "tokens_per_s": tokens / elapsed}
                row |= dict(zip(parts, (float(v) for v in summary[1:]), strict=True))
                log.log(done, "train", row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens / elapsed:.0f}")
                if done % self.s.eval_every == 0 or done == self.s.steps:
                    val = self.validate()
                    log.log(done, "val", val)
                if done % self.s.checkpoint_every == 0 or done == self.s.steps:
                    self.save(done)
        finally:
            if bar is not None:
                bar.close()
            log.close()
            if hasattr(self.losses, "detach"):
                self.losses.detach()
            if hasattr(self.model, "reset"):
                self.model.reset()
        return TrainResult(
            steps=self.s.steps,
            start_step=self.start,
            losses=losses,
            val=val,
            checkpoint=self.last_ckpt,
            run_dir=self.run_dir,
        )


def train_supernet(
    model: nn.Module,
    strategy: Strategy,
    losses: nn.Module,
    train_data: Sequence[Any],
    *,
    val_data: Sequence[Any] | None = None,
    teacher: nn.Module | None = None,
    settings: TrainSettings | None = None,
    run_dir: str | Path,
) -> TrainResult:
    """Train ``model`` (an elastic super-network) and checkpoint it under ``run_dir/train``.

    ``model`` has ``set_architecture(arch)`` / ``reset()`` and returns an HF-style output;
    ``losses`` is a ``CombinedLoss`` (called ``losses(out, batch, reference, target=...)``, its
    learned projections are optimised too); ``train_data`` / ``val_data`` are map-style datasets
    collated by ``settings.collate_fn`` (default: stack). Under ``torchrun`` each process trains a
    shard of every global batch; only rank 0 writes.
    """
    trainer = _Trainer(
        model,
        strategy,
        losses,
        train_data,
        val_data,
        teacher,
        settings or TrainSettings(),
        Path(run_dir),
    )
    return trainer.run()


__all__ = [
    "MODEL_INPUT_KEYS",
    "MetricsLog",
    "StepBatches",
    "TrainResult",
    "TrainSettings",
    "TrainingDiverged",
    "build_optimizer",
    "derive_seed",
    "lr_factor",
    "reseed_collator",
    "seed_everything",
    "shard_batch",
    "train_supernet",
    "training_batches",
]
