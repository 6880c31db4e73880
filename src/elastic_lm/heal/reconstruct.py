"""Layer-wise least-squares reconstruction of a sub-network (retraining-free healing).

After a cut, each kept sub-layer still computes what it computed inside the full model, but its
input has drifted (fewer heads / units upstream, dropped layers). Kwon et al. (NeurIPS 2022,
"mask tuning", :func:`elastic_lm.prune.posttrain.tune_sublayer`) fix this by solving, sub-layer by
sub-layer, a least-squares problem so that the pruned model's pre-norm state ``x + f(x)``
reproduces the unpruned model's on a few hundred sentences. Pruning solves for one scale per
kept unit of a masked full-size model; here the sub-network is *sliced* and may skip layers, so
the whole output projection (attention ``o`` and FFN ``down``, weight and bias) is re-fitted,
ridge-regularised towards its current value (a closed form, seconds on a CPU):

    min_W  sum_tokens || [u, 1] W - (target - x) ||^2 + lam * || W - W_0 ||^2

``u`` is the projection's input (kept heads' contexts or FFN activations), ``x`` the residual
input, ``target`` the teacher's pre-norm state at the same place. Where the sub-network skips
layers ``i+1 .. j-1``, the FFN of kept layer ``i`` is fitted to the teacher's state before the
norm of layer ``j-1`` and takes that norm's weights, so the next kept layer receives what it
received in the teacher. Layers are fitted in order, each on the already-fitted ones' outputs.
Post-norm (BERT-style) blocks only; other blocks are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from elastic_lm.architecture import Architecture

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _blocks(model: nn.Module) -> list[nn.Module | None]:
    """The module each layer position runs under the current selection (None: dropped)."""
    plan = cast(Any, model).backbone._plan
    return [None if step is None else step[0] for step in plan]


def _post_norm(block: nn.Module | None) -> bool:
    return block is not None and all(hasattr(block, a) for a in ("attention", "ffn", "norm1", "norm2"))


def _inputs(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {k: batch[k].to(device) for k in _INPUTS if k in batch}


def _real(batch: dict[str, Any]) -> torch.Tensor:
    mask = batch.get("attention_mask")
    ids = batch["input_ids"]
    return mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)


@torch.no_grad()
def teacher_prenorm_states(
    teacher: nn.Module, batches: Sequence[dict[str, Any]]
) -> list[dict[str, list[torch.Tensor]]]:
    """Per layer position: ``{"norm1": [...], "norm2": [...]}`` pre-norm states on real tokens."""
    blocks = _blocks(teacher)
    out: list[dict[str, list[torch.Tensor]]] = [{"norm1": [], "norm2": []} for _ in blocks]
    handles = []
    _current: dict[str, torch.Tensor] = {}
    for i, block in enumerate(blocks):
        if not _post_norm(block):
            continue
        for name in ("norm1", "norm2"):

            def hook(_m: nn.Module, inputs: tuple[Any, ...], i: int = i, name: str = name) -> None:
                out[i][name].append(inputs[0][_current["real"]].float().cpu())

            handles.append(getattr(block, name).register_forward_pre_hook(hook))
    try:
        for batch in batches:
            _current["real"] = _real(batch).to(next(teacher.parameters()).device)
            cast(Any, teacher).backbone(**_inputs(teacher, batch))
    finally:
        for h in handles:
            h.remove()
    return out


def _linear_parts(linear: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the full weight that the current selection uses."""
    weight = cast(torch.Tensor, linear.weight)

    def idx(sel: Any, full: int) -> torch.Tensor:
        if sel is None:
            return torch.arange(full)
        if isinstance(sel, int):
            return torch.arange(sel)
        return sel.cpu().long()

    return idx(getattr(linear, "out_sel", None), weight.shape[0]), idx(
        getattr(linear, "in_sel", None), weight.shape[1]
    )


def _run_layer(student: nn.Module, i: int, hidden: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    mask = batch.get("attention_mask")
    backbone = cast(Any, student).backbone
    return cast(
        torch.Tensor, backbone.forward_layer(i, hidden, None if mask is None else mask.to(hidden.device))
    )


@torch.no_grad()
def _fit_sublayer(
    student: nn.Module,
    i: int,
    part: str,
    hiddens: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    batches: Sequence[dict[str, Any]],
    ridge: float,
) -> tuple[float, float]:
    """Re-fit layer ``i``'s attention (``part="norm1"``) or FFN (``"norm2"``) output projection,
    the layer's inputs being ``hiddens`` (one per batch)."""
    block = cast(Any, _blocks(student)[i])
    sub = block.attention if part == "norm1" else block.ffn
    linear = cast(nn.Linear, sub.o if part == "norm1" else sub.down)
    norm = getattr(block, part)
    rows, cols = _linear_parts(linear)
    w0 = linear.weight[rows][:, cols].double()  # [out, in]
    b0 = (
        linear.bias[rows].double() if linear.bias is not None else torch.zeros(len(rows), dtype=torch.float64)
    )
    theta0 = torch.cat([w0.T, b0[None]], 0)  # [in + 1, out]
    k = theta0.shape[0]
    gram = torch.zeros(k, k, dtype=torch.float64)
    cross = torch.zeros(k, theta0.shape[1], dtype=torch.float64)
    seen: dict[str, torch.Tensor] = {}
    handles = [
        linear.register_forward_pre_hook(lambda _m, a: seen.__setitem__("u", a[0])),
        norm.register_forward_pre_hook(lambda _m, a: seen.__setitem__("p", a[0])),
    ]
    before, count = 0.0, 0
    units, residuals = [], []
    try:
        for batch, hidden, target in zip(batches, hiddens, targets, strict=True):
            real = _real(batch).to(hidden.device)
            _run_layer(student, i, hidden, batch)
            ua = seen["u"][real].double().cpu()
            ua = torch.cat([ua, torch.ones(ua.shape[0], 1, dtype=torch.float64)], 1)
            p = seen["p"][real].double().cpu()
            goal = target.double()[:, : p.shape[1]]
            t = goal - (p - ua @ theta0)  # the teacher's state minus the residual input
            gram += ua.T @ ua
            cross += ua.T @ t
            before += float((p - goal).pow(2).sum())
            count += p.numel()
            units.append(ua)
            residuals.append(t)
    finally:
        for h in handles:
            h.remove()
    lam = ridge * float(gram.diagonal().mean().clamp_min(1e-12))
    theta = torch.linalg.solve(gram + lam * torch.eye(k, dtype=torch.float64), cross + lam * theta0)
    after = sum(float((ua @ theta - t).pow(2).sum()) for ua, t in zip(units, residuals, strict=True))
    dtype, device = linear.weight.dtype, linear.weight.device
    linear.weight.data[rows[:, None].to(device), cols[None, :].to(device)] = theta[:-1].T.to(dtype).to(device)
    if linear.bias is not None:
        linear.bias.data[rows.to(device)] = theta[-1].to(dtype).to(device)
    return before / max(count, 1), after / max(count, 1)


@torch.no_grad()
def reconstruct_layers(
    student: nn.Module,
    arch: Architecture,
    teacher: nn.Module,
    batches: Sequence[dict[str, Any]],
    *,
    ridge: float = 1e-2,
    states: list[dict[str, list[torch.Tensor]]] | None = None,
) -> dict[str, Any]:
    """Fit ``student``'s sub-network ``arch`` to ``teacher`` in place (weights of ``student`` change:
    pass a copy of a super-network). Returns per sub-layer mean squared error before / after.

    ``teacher`` must have the student's layer positions (an inherited super-network's source);
    ``states`` (:func:`teacher_prenorm_states`) may be shared by several students.
    """
    was_training = student.training
    student.eval()
    states = states if states is not None else teacher_prenorm_states(teacher, batches)
    t_blocks = _blocks(teacher)
    errors: list[dict[str, Any]] = []
    with cast(Any, student).using(arch):
        backbone = cast(Any, student).backbone
        hiddens = [
            backbone(**_inputs(student, b), output_hidden_states=True).hidden_states[0] for b in batches
        ]
        blocks = _blocks(student)
        kept = [i for i, b in enumerate(blocks) if b is not None]
        for n, i in enumerate(kept):
            block = cast(Any, blocks[i])
            nxt = kept[n + 1] if n + 1 < len(kept) else len(blocks)
            last = nxt - 1  # the teacher layer whose output this layer must now produce
            if _post_norm(block) and _post_norm(t_blocks[i]) and _post_norm(t_blocks[last]):
                if last != i:  # skipped layers: take over the norm that produced the teacher's state
                    src, dst = cast(Any, t_blocks[last]).norm2, block.norm2
                    h = dst.weight.shape[0]
                    dst.weight.data.copy_(src.weight.data[:h])
                    dst.bias.data.copy_(src.bias.data[:h])
                for part, pos in (("norm1", i), ("norm2", last)):
                    before, after = _fit_sublayer(
                        student, i, part, hiddens, states[pos][part], batches, ridge
                    )
                    errors.append(
                        {"layer": i, "part": part, "target_layer": pos, "before": before, "after": after}
                    )
            hiddens = [_run_layer(student, i, h, b) for h, b in zip(hiddens, batches, strict=True)]
    student.train(was_training)
    return {"sublayers": errors}


__all__ = ["reconstruct_layers", "teacher_prenorm_states"]
