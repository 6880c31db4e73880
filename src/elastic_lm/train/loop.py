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
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from elastic_lm.architecture import Architecture
from elastic_lm.errors import CheckpointError, ConfigError, DataError, UserError
from elastic_lm.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from elastic_lm.train.distributed import (
    DistContext,
    all_reduce_gradients,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_parameters,
    init_distributed,
)
from elastic_lm.train.strategies import Strategy, SubnetTask

MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
)


class TrainingDiverged(UserError):  # noqa: N818 (the name users search for)
    """The loss became NaN, infinite or exploded; the last checkpoint on disk is the last good state."""


# A loss this many times its first value in a run (at least 1.0) has exploded: a too-high learning
# rate. Ordinary noise, warm-up bumps and a resumed run's first steps stay far below it.
EXPLODED_FACTOR = 10.0


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
        positive = ("steps", "batch_size", "grad_accumulation", "checkpoint_every", "eval_every")
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


# --- seeding and data order -------------------------------------------------------------------


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


# --- optimiser, schedule, precision -----------------------------------------------------------


def _no_decay(name: str, param: Tensor) -> bool:
    """Biases and normalisation weights are not decayed (decay would pull norms towards 0)."""
    lowered = name.lower()
    return param.ndim < 2 or lowered.endswith("bias") or "norm" in lowered or ".ln" in lowered


def build_optimizer(
    named: Sequence[tuple[str, nn.Parameter]], lr: float, weight_decay: float
) -> torch.optim.AdamW:
    decay = [p for n, p in named if not _no_decay(n, p)]
    plain = [p for n, p in named if _no_decay(n, p)]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        # The fused kernel is several times faster than the default per-tensor loop on CPU (measured
        # 0.05-0.16 s vs 0.4-0.9 s per step for MiniLM-L6's 22.7 M parameters on 2 cores).
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then linear or cosine decay to 0 (or constant)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16/fp16 autocast where asked and supported; fp32 by default on CPU."""
    cuda = device.type == "cuda"
    if precision == "fp32":
        return None
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision='bf16' but this GPU lacks bf16; use fp16 or fp32")
        return torch.bfloat16
    if precision == "fp16":
        if not cuda:
            raise ConfigError("train.precision='fp16' needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    if cuda:  # auto
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


# --- logging ----------------------------------------------------------------------------------


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


# --- the loop ---------------------------------------------------------------------------------


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _detached(outputs: Any) -> Any:
    """A copy of model outputs with every tensor detached (the in-place teacher)."""
    if isinstance(outputs, Tensor):
        return outputs.detach()
    if isinstance(outputs, tuple | list):
        return type(outputs)(_detached(o) for o in outputs)
    if isinstance(outputs, Mapping):  # HF ModelOutput is an OrderedDict subclass
        return type(outputs)(**{k: _detached(v) for k, v in outputs.items()})
    if is_dataclass(outputs) and not isinstance(outputs, type):
        return replace(outputs, **{f.name: _detached(getattr(outputs, f.name)) for f in fields(outputs)})
    return outputs


def _needs(losses: nn.Module, target: str, *, reference: bool = False) -> dict[str, Any]:
    """Which extra outputs the losses applying at ``target`` read (of the reference when asked:
    block-wise distillation reads the teacher's hidden states but runs the student's layers)."""
    applying = [
        loss
        for label, loss in getattr(losses, "parts", {}).items()
        if (reference or not getattr(loss, "layerwise_loss", False))
        and target in getattr(losses, "when", {}).get(label, (target,))
    ]
    flags: dict[str, Any] = {}
    if any(getattr(loss, "reads_hidden_states", False) for loss in applying):
        flags["output_hidden_states"] = True
    if any(getattr(loss, "reads_attentions", False) for loss in applying):
        flags["output_attentions"] = True
    return flags


def _logits_positions(
    model: nn.Module, losses: nn.Module, targets: Sequence[str], batch: Mapping[str, Any], enabled: bool
) -> dict[str, Tensor]:
    """``{"logits_positions": labels != -100}`` when the model can restrict its MLM logits and every
    loss applying at ``targets`` reads only those; else nothing (full logits)."""
    labels = batch.get("labels")
    if not enabled or not getattr(model, "supports_logits_positions", False):
        return {}
    if not isinstance(labels, Tensor) or labels.dim() != 2:
        return {}
    when = getattr(losses, "when", None)
    if when is None:
        return {}
    for label, loss in getattr(losses, "parts", {}).items():
        applies = any(t in when.get(label, ()) for t in targets)
        if applies and not getattr(loss, "labelled_positions_only", False):
            return {}
    return {"logits_positions": labels != -100}


def _eval_archs(strategy: Strategy, settings: TrainSettings) -> dict[str, Architecture]:
    if settings.eval_archs is not None:
        return dict(settings.eval_archs)
    space = getattr(strategy, "space", None)
    if space is None:
        return {}
    archs = {"largest": space.largest(), "smallest": space.smallest()}
    if hasattr(space, "middle"):
        archs["middle"] = space.middle()
    elif hasattr(space, "sample"):
        archs["middle"] = space.sample(random.Random(f"elastic-lm:val:{settings.seed}"))
    return archs


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
        self.amp = _amp_dtype(settings.precision, dev)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.batches = StepBatches(
            train_data, settings.batch_size, settings.seed, self.ctx, settings.collate_fn
        )
        self.val_data = val_data if val_data is not None and len(val_data) > 0 else None
        self.eval_archs = _eval_archs(strategy, settings) if self.val_data is not None else {}
        self.start = 0
        self.last_ckpt: Path | None = None

    def _collect_parameters(self) -> None:
        """The trainable parameters of the model and the losses (again after a shape change)."""
        named = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        named += [(f"loss.{n}", p) for n, p in self.losses.named_parameters() if p.requires_grad]
        self.named, self.params = named, [p for _, p in named]

    # --- checkpoints --------------------------------------------------------------------------

    def resume(self) -> None:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return
        ckpt = load_checkpoint(path, self.model, self.ctx.device)
        saved = ckpt.state.get("settings", {})
        for name in ("batch_size", "grad_accumulation", "seed", "steps"):
            if name in saved and saved[name] != getattr(self.s, name):
                raise ConfigError(
                    f"train.{name}={getattr(self.s, name)} differs from the checkpoint's "
                    f"{saved[name]} ({path}); resume with the same value or use a new run_dir"
                )
        self.optimizer.load_state_dict(ckpt.trainer["optimizer"])
        self.scheduler.load_state_dict(ckpt.trainer["scheduler"])
        if saved.get("learning_rate", self.s.learning_rate) != self.s.learning_rate:
            self._rescale_learning_rate()  # resuming a diverged run with a lower rate
        self.losses.load_state_dict(ckpt.trainer["losses"])
        if self.scaler is not None and "scaler" in ckpt.trainer:
            self.scaler.load_state_dict(ckpt.trainer["scaler"])
        self.strategy.load_state_dict(ckpt.strategy)
        for name, holder in (self.s.extra_state or {}).items():
            saved_extra = ckpt.extra(name)
            if saved_extra is not None:
                holder.load_state_dict(saved_extra)
        set_rng_state(ckpt.trainer["rng"])
        self.start = ckpt.step
        self.last_ckpt = path

    def _rescale_learning_rate(self) -> None:
        """Put ``train.learning_rate`` in place of the checkpoint's, at the same schedule position."""
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.scheduler.base_lrs = [self.s.learning_rate] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.s.learning_rate
            group["lr"] = self.s.learning_rate * factor

    def save(self, step: int) -> None:
        if self.ctx.is_main:
            trainer = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "losses": self.losses.state_dict(),
                "rng": rng_state(),
            }
            if self.scaler is not None:
                trainer["scaler"] = self.scaler.state_dict()
            state = {
                "micro_batches_done": step * self.s.grad_accumulation,
                "world_size": self.ctx.world_size,
                "settings": self.s.public(),
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            self.last_ckpt = save_checkpoint(
                self.ckpt_dir,
                step,
                model=self.model,
                trainer=trainer,
                strategy=self.strategy.state_dict(),
                state=state,
                keep=self.s.keep_checkpoints,
                extra={name: h.state_dict() for name, h in (self.s.extra_state or {}).items()},
            )
        barrier(self.ctx)

    # --- one step -----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.amp)

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
            batch = _to_device(batch, self.ctx.device)
            mask = batch.get("attention_mask", batch.get("input_ids"))
            tokens += int(mask.sum()) if "attention_mask" in batch else int(mask.numel())
            teacher_out = None
            if need_teacher:
                with torch.no_grad(), self._autocast():
                    flags = _needs(self.losses, "teacher", reference=True)
                    flags |= _logits_positions(
                        self.teacher, self.losses, ["teacher"], batch, self.s.masked_logits
                    )
                    teacher_out = self._forward(self.teacher, batch, flags)
            kept = None
            for task in tasks:
                flags = _needs(self.losses, task.target)
                targets = [task.target]
                if task.keep_outputs:
                    flags |= _needs(self.losses, "largest", reference=True)
                    targets.append("largest")
                flags |= _logits_positions(self.model, self.losses, targets, batch, self.s.masked_logits)
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
                    kept = _detached(out)
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
                    batch = _to_device(batch, self.ctx.device)
                    flags = _logits_positions(
                        self.model, self.losses, ["labels"], batch, self.s.masked_logits
                    )
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
                        self.eval_archs = _eval_archs(self.strategy, self.s)
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
    "StepBatches",
    "TrainResult",
    "TrainSettings",
    "TrainingDiverged",
    "build_optimizer",
    "derive_seed",
    "lr_factor",
    "shard_batch",
    "train_supernet",
    "training_batches",
]
