"""The healing loop: train a (cut, exported) causal LM to match the full model on the user's text.

Why a separate, small loop rather than the super-network trainer: healing trains one fixed model at a
time (a stock ``LlamaForCausalLM`` export, or elastic-lm's class for non-uniform shapes) for a budget
in tokens or minutes that must be *the same* for every member, baseline and the teacher itself, so
that compression and adaptation to the corpus can be told apart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.errors import ConfigError

Batch = dict[str, Any]


@dataclass(frozen=True)
class HealBudget:
    """How long each model is healed (``tokens`` and / or ``minutes``, whichever ends first)."""

    tokens: int | None = 20000
    minutes: float | None = None
    batch_size: int = 4
    learning_rate: float = 1e-4
    top_k: int | None = 64
    seed: int = 0
    precision: str = "auto"  # train.precision: healing is training (bf16 autocast where asked)

    def __post_init__(self) -> None:
        if self.tokens is None and self.minutes is None:
            raise ConfigError("heal: set heal.tokens or heal.minutes (healing needs a budget)")

    @classmethod
    def from_section(cls, section: Any, seed: int, precision: str = "auto") -> HealBudget:
        return cls(
            tokens=section.tokens,
            minutes=section.minutes,
            batch_size=section.batch_size,
            learning_rate=section.learning_rate,
            top_k=section.top_k,
            seed=seed,
            precision=precision,
        )


@dataclass
class HealResult:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def _forward(model: nn.Module, batch: Batch, hidden: bool) -> Any:
    kwargs: dict[str, Any] = {"input_ids": batch["input_ids"], "use_cache": False}
    if "attention_mask" in batch:
        kwargs["attention_mask"] = batch["attention_mask"]
    if hidden:
        kwargs["output_hidden_states"] = True
    return model(**kwargs)


def _with_topk(batch: Batch, teacher_logits: torch.Tensor, k: int | None) -> Batch:
    if k is None:
        return batch
    k = min(k, teacher_logits.shape[-1])
    values, indices = teacher_logits.topk(k, dim=-1)
    return {**batch, "teacher_topk_values": values, "teacher_topk_indices": indices}


@torch.no_grad()
def kd_divergence(student: nn.Module, teacher: nn.Module, batches: Sequence[Batch]) -> float:
    """Mean per-token KL(teacher || student) over the real tokens of ``batches`` (full logits)."""
    student.eval()
    total, count = 0.0, 0
    for batch in batches:
        s = _forward(student, batch, False).logits.float().log_softmax(-1)
        t = _forward(teacher, batch, False).logits.float().log_softmax(-1)
        kl = (t.exp() * (t - s)).sum(-1)
        mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
        total += float(kl[mask].sum())
        count += int(mask.sum())
    return total / max(count, 1)


def heal_model(
    student: nn.Module,
    teacher: nn.Module,
    data: Sequence[Any],
    collate: Callable[[list[Any]], Batch],
    budget: HealBudget,
    losses: Sequence[dict[str, Any]],
    log: Callable[[str], None] | None = None,
    kept_layers: Sequence[int] | None = None,
) -> HealResult:
    """Train ``student`` in place on ``data`` (shuffled, seeded) until the budget is spent.

    ``losses`` is a ``train.losses``-style spec (``topk-kd`` takes the teacher's ``budget.top_k``
    largest logits, computed on the fly); every part applies (target ``teacher``). ``kept_layers``:
    the teacher layer each student layer was cut from (see :func:`kept_layer_map`), so hidden-state
    losses compare a layer with its own origin rather than a uniform spread.
    """
    from elastic_lm.train.losses import CombinedLoss
    from elastic_lm.train.optim import amp_dtype, autocast, grad_scaler

    if len(data) == 0:
        raise ConfigError("heal: the training split is empty; give data.source more text")
    s_cfg, t_cfg = cast(Any, student).config, cast(Any, teacher).config
    context = {
        "n_student_layers": s_cfg.num_hidden_layers + 1 if hasattr(s_cfg, "num_hidden_layers") else 1,
        "student_width": getattr(s_cfg, "hidden_size", 0),
        "teacher_width": getattr(t_cfg, "hidden_size", 0),
    }
    spec = [dict(entry) for entry in losses]
    if budget.top_k is None and any(e["name"] == "topk-kd" for e in spec):
        spec = [{**e, "name": "logit-kd"} if e["name"] == "topk-kd" else e for e in spec]
    if any(e["name"] in ("relational", "hidden") for e in spec):
        n_s, n_t = context["n_student_layers"], getattr(t_cfg, "num_hidden_layers", 0) + 1
        layer_map = [round(i * (n_t - 1) / max(n_s - 1, 1)) for i in range(n_s)]
        if kept_layers is not None:
            layer_map = kept_layer_map(kept_layers)
            if len(layer_map) != n_s or max(layer_map) >= n_t:
                raise ConfigError(
                    f"heal: kept_layers={list(kept_layers)} does not match the student's layers"
                )
        spec = [{**e, "layer_map": layer_map} if e["name"] in ("relational", "hidden") else e for e in spec]
    combined = CombinedLoss(spec, **context)
    hidden = any(getattr(p, "reads_hidden_states", False) for p in combined.parts.values())
    top_k = budget.top_k if any(e["name"] == "topk-kd" for e in spec) else None
    params = [p for p in list(student.parameters()) + list(combined.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=budget.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(budget.seed)
    device = next(student.parameters()).device
    amp = amp_dtype(budget.precision, device)
    scaler = grad_scaler(amp)
    teacher.eval()
    student.train()
    result = HealResult()
    start = time.perf_counter()
    deadline = start + budget.minutes * 60 if budget.minutes is not None else math.inf
    while True:
        order = torch.randperm(len(data), generator=generator).tolist()
        for first in range(0, len(order) - budget.batch_size + 1, budget.batch_size):
            spent = budget.tokens is not None and result.tokens >= budget.tokens
            if spent or time.perf_counter() >= deadline:
                result.seconds = time.perf_counter() - start
                student.eval()
                return result
            batch = collate([data[i] for i in order[first : first + budget.batch_size]])
            with torch.no_grad(), autocast(device, amp):
                t_out = _forward(teacher, batch, hidden)
            batch = _with_topk(batch, t_out.logits, top_k)
            with autocast(device, amp):
                s_out = _forward(student, batch, hidden)
                loss, _ = combined(s_out, batch, t_out, target="teacher")
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
            else:  # fp16 on a GPU: scaled loss, unscaled before clipping
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(optimizer)
                scaler.update()
            result.steps += 1
            mask = batch.get("attention_mask")
            result.tokens += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            result.losses.append(float(loss.detach()))
            if log is not None and result.steps % 10 == 0:
                log(f"  heal step {result.steps}: loss {result.losses[-1]:.4f}, {result.tokens} tokens")
        if budget.batch_size > len(order):
            raise ConfigError(f"heal.batch_size={budget.batch_size} exceeds the {len(order)} training rows")


def kept_layer_map(kept_layers: Sequence[int]) -> list[int]:
    """Hidden-state index map of a depth-pruned student: its embeddings (0) meet the teacher's, and the
    output of its ``j``-th layer meets the output of the teacher layer it was cut from."""
    return [0, *(int(i) + 1 for i in kept_layers)]


def perplexity(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Held-out perplexity: exp of the mean next-token cross-entropy over real tokens."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = _forward(model, batch, False).logits[:, :-1].float()
            target = batch["input_ids"][:, 1:]
            mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))[:, 1:].bool()
            ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total += float(ce[mask].sum())
            count += int(mask.sum())
    return math.exp(total / max(count, 1))


__all__ = ["HealBudget", "HealResult", "heal_model", "kd_divergence", "kept_layer_map", "perplexity"]
