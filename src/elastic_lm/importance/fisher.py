"""Per-example mask gradients of every attention head and FFN unit (Kwon et al., NeurIPS 2022).

A mask variable ``m = 1`` multiplies each head's context vector (the input columns of the output
projection) and each FFN unit's activation (the down projection's input). The gradient of one
example's loss with respect to its own copy of the mask is that example's row of the empirical
Fisher information: the diagonal (sum of squares) ranks heads and units, and the block of one
sub-layer (``G^T G``) drives the mask rearrangement. A head whose output projection is zero has a
zero gradient, hence a zero score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class SubLayer:
    """One attention or FFN sub-layer: where it is and what one of its units costs."""

    name: str
    layer: int
    kind: str  # "heads" or "ffn"
    module: nn.Module
    units: int

    @property
    def out(self) -> nn.Module:
        """The linear whose input columns are the units (``o`` or ``down``)."""
        m = self.module
        return m.o if isinstance(m, ElasticAttention) else m.down  # type: ignore[return-value]


def sublayers(model: nn.Module) -> list[SubLayer]:
    """Every attention and FFN sub-layer of an elastic model, in forward order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, ElasticAttention):
            out.append(SubLayer(name, _layer_of(name), "heads", m, int(m.max_heads)))
        elif isinstance(m, ElasticFFN):
            out.append(SubLayer(name, _layer_of(name), "ffn", m, int(m.inner)))
    return out


def _layer_of(name: str) -> int:
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1])


def _scale_hook(sub: SubLayer, mask: torch.Tensor) -> Callable[..., tuple[torch.Tensor]]:
    def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        x = inputs[0]
        shape = x.shape
        scaled = x.reshape(*shape[:-1], sub.units, -1) * mask[:, None, :, None].to(x.dtype)
        return (scaled.reshape(shape),)

    return hook


def example_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """The sum of per-example losses (so d/d m_b is example b's own gradient)."""
    if task == "regression":
        return F.mse_loss(logits.reshape(-1).float(), labels.float().reshape(-1), reduction="sum")
    return F.cross_entropy(logits.float(), labels.long(), reduction="sum")


def mask_gradients(
    model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], task: str = "classification"
) -> dict[str, torch.Tensor]:
    """``{sub-layer name: [examples, units]}`` gradients of each example's loss w.r.t. its masks."""
    model.reset()  # type: ignore[operator]
    was_training = model.training
    model.eval()
    subs = sublayers(model)
    grads: dict[str, list[torch.Tensor]] = {s.name: [] for s in subs}
    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for batch in batches:
            n = batch["input_ids"].shape[0]
            masks = {s.name: torch.ones(n, s.units, device=device, requires_grad=True) for s in subs}
            handles = [s.out.register_forward_pre_hook(_scale_hook(s, masks[s.name])) for s in subs]
            try:
                inputs = {k: batch[k].to(device) for k in _INPUTS if k in batch}
                loss = example_loss(model(**inputs).logits, batch["labels"].to(device), task)
                found = torch.autograd.grad(loss, [masks[s.name] for s in subs], allow_unused=True)
            finally:
                for h in handles:
                    h.remove()
            for s, g in zip(subs, found, strict=True):
                grads[s.name].append(torch.zeros(n, s.units) if g is None else g.detach().float().cpu())
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    return {name: torch.cat(g) for name, g in grads.items()}


def fisher_diagonal(grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The empirical Fisher's diagonal: the sum over examples of each squared mask gradient."""
    return {name: g.pow(2).sum(0) for name, g in grads.items()}


__all__ = ["SubLayer", "example_loss", "fisher_diagonal", "mask_gradients", "sublayers"]
