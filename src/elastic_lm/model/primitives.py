"""Elastic primitives: full-size PyTorch layers that run a *slice* of their weights.

whittle-style: a layer keeps its full weight and a selection set by the block that owns it;
``forward``
uses the selected rows / columns. A prefix selection (the first k) is a view, so nothing is copied;
an
explicit index subset (pruning spaces) costs one ``index_select``. At full size the layer takes the
plain
path, so the super-network at its largest has no slicing overhead at all.

A selection is ``None`` (everything), an ``int`` k (the first k) or a 1-D ``LongTensor`` of indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Selection = int | torch.Tensor | None


def make_selection(indices: Sequence[int] | int | None, full: int) -> Selection:
    """Normalise a count or an index list to the cheapest selection that picks the same entries."""
    if indices is None:
        return None
    if isinstance(indices, int):
        return None if indices == full else indices
    idx = [int(i) for i in indices]
    if idx == list(range(full)):
        return None
    if idx == list(range(len(idx))):
        return len(idx)
    return torch.tensor(idx, dtype=torch.long)


def take(tensor: torch.Tensor, dim: int, sel: Selection) -> torch.Tensor:
    """Select along ``dim``: a view for a prefix, a copy for an index subset."""
    if sel is None:
        return tensor
    if isinstance(sel, int):
        return tensor.narrow(dim, 0, sel)
    return tensor.index_select(dim, sel.to(tensor.device))


def selection_size(sel: Selection, full: int) -> int:
    if sel is None:
        return full
    return sel if isinstance(sel, int) else int(sel.numel())


class ElasticLinear(nn.Linear):
    """``nn.Linear`` whose output rows and input columns can be narrowed to a selection."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.out_sel: Selection = None
        self.in_sel: Selection = None

    def reset_parameters(self) -> None:
        if self.weight.numel():  # a fully pruned layer has nothing to initialise
            super().reset_parameters()

    def select(self, out: Selection = None, inp: Selection = None) -> None:
        self.out_sel = out
        self.in_sel = inp

    def reset(self) -> None:
        self.out_sel = None
        self.in_sel = None

    def sliced(self) -> dict[str, torch.Tensor]:
        """The weights the current selection uses (what an extracted layer owns)."""
        out = {"weight": take(take(self.weight, 0, self.out_sel), 1, self.in_sel)}
        if self.bias is not None:
            out["bias"] = take(self.bias, 0, self.out_sel)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_sel is None and self.in_sel is None:
            return F.linear(x, self.weight, self.bias)
        w = take(take(self.weight, 0, self.out_sel), 1, self.in_sel)
        b = None if self.bias is None else take(self.bias, 0, self.out_sel)
        return F.linear(x, w, b)


class ElasticEmbedding(nn.Embedding):
    """Embedding table whose vectors are narrowed to the first ``width`` channels."""

    def __init__(self, num: int, dim: int, padding_idx: int | None = None) -> None:
        super().__init__(num, dim, padding_idx=padding_idx)
        self.width: int | None = None

    def select(self, width: int | None) -> None:
        self.width = None if width == self.embedding_dim else width

    def reset(self) -> None:
        self.width = None

    def sliced(self) -> dict[str, torch.Tensor]:
        return {"weight": self.active_weight}

    @property
    def active_weight(self) -> torch.Tensor:
        return self.weight if self.width is None else self.weight[:, : self.width]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.active_weight, self.padding_idx)


class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm over the first h channels, h read from the input (the residual width decides)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1]
        if h == self.normalized_shape[0]:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.layer_norm(x, (h,), self.weight[:h], self.bias[:h], self.eps)


class ElasticRMSNorm(nn.Module):
    """RMSNorm (Llama) over the first h channels, computed in float32 as Hugging Face does."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1]
        w = self.weight if h == self.weight.shape[0] else self.weight[:h]
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * x32.to(dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    if kind == "rmsnorm":
        return ElasticRMSNorm(dim, eps)
    return ElasticLayerNorm(dim, eps=eps)


def fit_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """The width-transition rule: keep the first ``width`` channels, or zero-pad up to ``width``.

    Parameter-free, so a sub-network and its extracted model agree by construction, and the first
    channels (the ones every width shares) always carry the same meaning.
    """
    h = x.shape[-1]
    if h == width:
        return x
    if h > width:
        return x[..., :width]
    return F.pad(x, (0, width - h))
