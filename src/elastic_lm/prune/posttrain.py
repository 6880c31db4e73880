"""Retraining-free structured pruning (Kwon et al., NeurIPS 2022): no super-network, no fine-tuning.

From the mask gradients of a few hundred labelled examples (:mod:`elastic_lm.importance.fisher`):

1. **mask search**: for every number of kept heads, the budget left over (parameters or FLOPs)
   buys FFN units; keep the most important heads and units globally, choose the split with the
   largest kept Fisher importance;
2. **mask rearrangement**: inside each sub-layer, swap a kept and a pruned unit while that lowers
   the second-order loss ``z^T F z`` of the pruned set ``z`` (F: the sub-layer's Fisher block), so
   units that matter together are kept together;
3. **mask tuning**: sub-layer by sub-layer, the kept units' scales are solved by least squares so
   the pruned model's pre-norm hidden state reconstructs the unpruned model's; the scales are then
   folded into the output projection, so the result is a plain model with fewer heads and units.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.importance.fisher import SubLayer, sublayers
from elastic_lm.model.attention import ElasticAttention

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
Masks = dict[str, torch.Tensor]  # sub-layer name -> bool [units], True = kept


def unit_costs(model: nn.Module, constraint: str = "params", seq_len: int = 128) -> dict[str, float]:
    """Parameters (or FLOPs per token at ``seq_len``) that one head / FFN unit costs."""
    c: Any = model.config
    d, dh = int(c.hidden_size), int(c.hidden_size) // int(c.num_attention_heads)
    if constraint == "flops":  # multiply-adds x 2: projections, plus scores and mixing per token
        return {"heads": 2.0 * 4 * d * dh + 4.0 * seq_len * dh, "ffn": 4.0 * d}
    return {"heads": 4.0 * d * dh + 3.0 * dh, "ffn": 2.0 * d + 1.0}


def search_masks(
    subs: Sequence[SubLayer], fisher: dict[str, torch.Tensor], costs: dict[str, float], budget: float
) -> Masks:
    """Kept heads and units under ``budget`` (in ``costs``' unit) with the most Fisher importance."""
    heads = [(float(v), s.name, i) for s in subs if s.kind == "heads" for i, v in enumerate(fisher[s.name])]
    units = [(float(v), s.name, i) for s in subs if s.kind == "ffn" for i, v in enumerate(fisher[s.name])]
    heads.sort(key=lambda t: -t[0])
    units.sort(key=lambda t: -t[0])
    head_sum = torch.tensor([0.0] + [h[0] for h in heads], dtype=torch.float64).cumsum(0)
    unit_sum = torch.tensor([0.0] + [u[0] for u in units], dtype=torch.float64).cumsum(0)
    best, choice = -1.0, (0, 0)
    for n in range(len(heads) + 1):
        left = budget - n * costs["heads"]
        if left < 0:
            break
        f = min(len(units), int(left // costs["ffn"]))
        score = float(head_sum[n] + unit_sum[f])
        if score > best:
            best, choice = score, (n, f)
    masks = {s.name: torch.zeros(s.units, dtype=torch.bool) for s in subs}
    for _, name, i in heads[: choice[0]] + units[: choice[1]]:
        masks[name][i] = True
    return masks


def rearrange(mask: torch.Tensor, grads: torch.Tensor, max_swaps: int = 64) -> torch.Tensor:
    """Greedy swaps inside one sub-layer that lower ``z^T F z`` with ``F = G^T G`` (same count kept)."""
    fisher = (grads.double().T @ grads.double()) / max(grads.shape[0], 1)
    kept = mask.clone()
    if kept.all() or not kept.any():
        return kept
    diag = fisher.diagonal()
    for _ in range(max_swaps):
        z = (~kept).double()
        fz = fisher @ z
        # prune i (kept now), keep j (pruned now): change of z^T F z
        add = 2 * fz + diag  # [i]
        remove = -2 * fz + diag  # [j]
        delta = add[:, None] + remove[None, :] - 2 * fisher
        delta[~kept, :] = float("inf")
        delta[:, kept] = float("inf")
        flat = int(delta.argmin())
        i, j = divmod(flat, delta.shape[1])
        if not float(delta[i, j]) < -1e-12:
            break
        kept[i], kept[j] = False, True
    return kept


def _real_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = batch.get("attention_mask")
    return mask.bool() if mask is not None else torch.ones_like(batch["input_ids"], dtype=torch.bool)


def _batches_on(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    device = next(model.parameters()).device
    return [{k: b[k].to(device) for k in _INPUTS if k in b} for b in batches]


class _CapturedError(Exception):
    """Raised by the capture hook: the layers after the sub-layer need not run."""


def _capture(model: nn.Module, sub: SubLayer, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The sub-layer's input, output (with bias) and output projection's input on one batch.

    The forward pass stops right after the sub-layer (tuning the last layers would otherwise run the
    whole model once per sub-layer: about twice the work on a 6-layer model).
    """
    module = dict(model.named_modules())[sub.name]
    out_linear = module.o if isinstance(module, ElasticAttention) else module.down
    seen: dict[str, torch.Tensor] = {}

    def keep_io(_m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        seen["x"] = inputs[0]
        seen["y"] = output[0] if isinstance(output, tuple) else output
        raise _CapturedError

    def keep_units(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
        seen["u"] = inputs[0]

    handles = [module.register_forward_hook(keep_io), out_linear.register_forward_pre_hook(keep_units)]
    try:
        model(**batch)
    except _CapturedError:
        pass
    finally:
        for h in handles:
            h.remove()
    if "y" not in seen:
        raise RuntimeError(f"sub-layer {sub.name} did not run in the forward pass (a dropped layer?)")
    return seen


@torch.no_grad()
def reconstruction_error(
    teacher: nn.Module, student: nn.Module, sub: SubLayer, batches: Sequence[dict[str, torch.Tensor]]
) -> float:
    """Mean squared distance of the student's pre-norm state ``x + f(x)`` from the teacher's."""
    total, count = 0.0, 0
    for batch in _batches_on(student, batches):
        t, s = _capture(teacher, sub, batch), _capture(student, sub, batch)
        diff = ((t["x"] + t["y"]) - (s["x"] + s["y"]))[_real_tokens(batch)]
        total += float(diff.pow(2).sum())
        count += diff.numel()
    return total / max(count, 1)


@torch.no_grad()
def tune_sublayer(
    teacher: nn.Module,
    student: nn.Module,
    sub: SubLayer,
    kept: torch.Tensor,
    batches: Sequence[dict[str, torch.Tensor]],
    ridge: float = 1e-4,
    clamp: float = 10.0,
    states: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Least-squares scales of ``sub``'s kept units in ``student`` (folded into its weights); returns them.

    ``states``: the teacher's pre-norm states of this sub-layer per batch (:func:`teacher_states`),
    computed once for all sub-layers instead of one teacher pass each.
    """
    s_module = dict(student.named_modules())[sub.name]
    weight = (s_module.o if isinstance(s_module, ElasticAttention) else s_module.down).weight
    idx = kept.nonzero().flatten().to(weight.device)
    k = len(idx)
    if k == 0:
        return torch.zeros(0)
    gram = torch.zeros(k, k, dtype=torch.float64)
    rhs = torch.zeros(k, dtype=torch.float64)
    w_kept = weight.reshape(weight.shape[0], sub.units, -1)[:, idx, :].double()  # [hidden, k, per-unit]
    for i, batch in enumerate(_batches_on(student, batches)):
        s = _capture(student, sub, batch)
        real = _real_tokens(batch)
        if states is not None:
            state = states[i]
        else:
            t = _capture(teacher, sub, batch)
            state = (t["x"] + t["y"])[real]
        units = s["u"][real].reshape(-1, sub.units, w_kept.shape[-1])[:, idx, :].double()  # [n, k, per-unit]
        # target for the kept contributions: teacher's x + y, minus the student's x and output bias
        residual = (state - (s["x"] + s["y"])[real]).double()
        if w_kept.shape[-1] == 1:  # FFN units: A^T A = (a^T a) * (W^T W), never the [n, k, hidden] tensor
            a, w = units[..., 0], w_kept[..., 0]
            target = residual + a @ w.T
            gram += ((a.T @ a) * (w.T @ w)).cpu()
            rhs += ((target @ w) * a).sum(0).cpu()
        else:  # heads: a few per layer, the contributions fit
            contrib = torch.einsum("nkj,dkj->nkd", units, w_kept)
            target = residual + contrib.sum(1)
            gram += torch.einsum("nkd,njd->kj", contrib, contrib).cpu()
            rhs += torch.einsum("nkd,nd->k", contrib, target).cpu()
    reg = ridge * float(gram.diagonal().mean().clamp_min(1e-12))
    scales = torch.linalg.solve(gram + reg * torch.eye(k, dtype=torch.float64), rhs).clamp(-clamp, clamp)
    w = weight.data.reshape(weight.shape[0], sub.units, -1)
    w[:, idx, :] *= scales.to(w.dtype).to(w.device)[None, :, None]
    return scales.float()


@torch.no_grad()
def teacher_states(
    teacher: nn.Module, subs: Sequence[SubLayer], batches: Sequence[dict[str, torch.Tensor]]
) -> dict[str, list[torch.Tensor]]:
    """Every sub-layer's pre-norm state ``x + f(x)`` on the real tokens of each batch, in one pass each."""
    out: dict[str, list[torch.Tensor]] = {s.name: [] for s in subs}
    modules = dict(teacher.named_modules())
    for batch in _batches_on(teacher, batches):
        real = _real_tokens(batch)

        def keep(name: str, real: torch.Tensor) -> Any:
            def hook(_m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                y = output[0] if isinstance(output, tuple) else output
                out[name].append((inputs[0] + y)[real])

            return hook

        handles = [modules[s.name].register_forward_hook(keep(s.name, real)) for s in subs]
        try:
            teacher(**batch)
        finally:
            for h in handles:
                h.remove()
    return out


@torch.no_grad()
def zero_pruned(model: nn.Module, masks: Masks) -> None:
    """Zero the output columns of pruned heads / units: the same function as slicing them away."""
    for sub in sublayers(model):
        weight = cast(torch.Tensor, sub.out.weight)
        w = weight.data.reshape(weight.shape[0], sub.units, -1)
        w[:, ~masks[sub.name].to(w.device), :] = 0.0


def masks_to_arch(model: nn.Module, masks: Masks) -> Architecture:
    """Per-layer explicit head and unit subsets (``head_ids`` / ``ffn_ids``)."""
    base = model.model.largest()  # type: ignore[union-attr,operator]
    layers = list(base.layers)
    for sub in sublayers(model):
        ids = tuple(int(i) for i in masks[sub.name].nonzero().flatten())
        la = layers[sub.layer]
        if sub.kind == "heads":
            la = LayerArch(**{**la.__dict__, "heads": len(ids), "head_ids": ids if ids else None})
        else:
            la = LayerArch(**{**la.__dict__, "ffn": len(ids), "ffn_ids": ids if ids else None})
        layers[sub.layer] = la
    return Architecture(hidden=base.hidden, layers=tuple(layers), meta=base.meta)


def post_training_prune(
    model: nn.Module,
    grads: dict[str, torch.Tensor],
    budget_share: float,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    constraint: str = "params",
    seq_len: int = 128,
    rearrange_masks: bool = True,
    tune: bool = True,
    measure: bool = False,
) -> tuple[nn.Module, Architecture, dict[str, Any]]:
    """A tuned copy of ``model`` and the architecture keeping ``budget_share`` of its heads + FFN cost.

    ``measure`` also records each tuned sub-layer's reconstruction error before and after (two more
    passes over the rows per sub-layer).
    """
    subs = sublayers(model)
    costs = unit_costs(model, constraint, seq_len)
    full = sum(s.units * costs[s.kind] for s in subs)
    fisher = {name: g.pow(2).sum(0) for name, g in grads.items()}
    masks = search_masks(subs, fisher, costs, budget_share * full)
    if rearrange_masks:
        masks = {s.name: rearrange(masks[s.name], grads[s.name]) for s in subs}
    student = copy.deepcopy(model).eval()
    zero_pruned(student, masks)
    errors = []
    if tune:
        states = teacher_states(model, subs, batches)
        for sub in subs:
            if masks[sub.name].all():
                continue
            before = reconstruction_error(model, student, sub, batches) if measure else None
            tune_sublayer(model, student, sub, masks[sub.name], batches, states=states[sub.name])
            if before is not None:
                errors.append((sub.name, before, reconstruction_error(model, student, sub, batches)))
    kept = {s.name: int(masks[s.name].sum()) for s in subs}
    info = {
        "kept": kept,
        "tuning": errors,
        "cost_share": sum(kept[s.name] * costs[s.kind] for s in subs) / full,
    }
    return student, masks_to_arch(student, masks), info


__all__ = [
    "masks_to_arch",
    "post_training_prune",
    "rearrange",
    "reconstruction_error",
    "search_masks",
    "teacher_states",
    "tune_sublayer",
    "unit_costs",
    "zero_pruned",
]
