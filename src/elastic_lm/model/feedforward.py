"""Feed-forward sub-layers (GELU or gated SwiGLU) and the depthwise-separable convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from elastic_lm.errors import ArchitectureError
from elastic_lm.model.primitives import ElasticLinear, make_selection


class ElasticFFN(nn.Module):
    """``down(act(up(x)))``, or ``down(act(gate(x)) * up(x))`` when gated (Llama's SwiGLU)."""

    def __init__(self, hidden: int, inner: int, act: str, gated: bool, bias: bool = True) -> None:
        super().__init__()
        self.hidden, self.inner = hidden, inner
        self.up = ElasticLinear(hidden, inner, bias)
        self.gate = ElasticLinear(hidden, inner, bias) if gated else None
        self.down = ElasticLinear(inner, hidden, bias)
        self.act = ACT2FN[act]

    def select(self, width: int, units: int = 0, unit_ids: Sequence[int] | None = None) -> None:
        if unit_ids is not None:
            ids = sorted(int(i) for i in unit_ids)
            if any(i < 0 or i >= self.inner for i in ids) or len(set(ids)) != len(ids):
                raise ArchitectureError(
                    f"ffn_ids must be distinct units in 0..{self.inner - 1}; fix the list"
                )
            sel = make_selection(ids, self.inner)
        else:
            n = units  # 0 keeps no unit: the sub-layer adds only its output bias
            if n > self.inner:
                raise ArchitectureError(f"ffn={n} exceeds this layer's {self.inner}; choose <= {self.inner}")
            sel = make_selection(n, self.inner)
        hid = make_selection(width, self.hidden)
        self.up.select(sel, hid)
        if self.gate is not None:
            self.gate.select(sel, hid)
        self.down.select(hid, sel)

    def reset(self) -> None:
        for lin in (self.up, self.gate, self.down):
            if lin is not None:
                lin.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            return self.down(self.act(self.gate(x)) * self.up(x))
        return self.down(self.act(self.up(x)))


class ElasticDepthwiseConv(nn.Module):
    """Depthwise 1-D convolution over time; a smaller kernel uses the centre taps (OFA-style)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ArchitectureError(f"kernel={kernel} must be odd so that it has a centre")
        self.channels, self.kernel = channels, kernel
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.k: int = kernel
        self.c: int = channels

    def select(self, width: int, kernel: int = 0) -> None:
        k = kernel or self.kernel
        if k > self.kernel or k % 2 != 1:
            raise ArchitectureError(f"kernel={k} must be odd and <= {self.kernel}; choose 3, 5 or 7")
        self.k, self.c = k, width

    def reset(self) -> None:
        self.k, self.c = self.kernel, self.channels

    def sliced(self) -> dict[str, torch.Tensor]:
        start = (self.kernel - self.k) // 2
        return {
            "weight": self.weight[: self.c, :, start : start + self.k],
            "bias": self.bias[: self.c],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C), 'same' padding."""
        c = x.shape[-1]
        if self.k == self.kernel and c == self.channels:
            w, b = self.weight, self.bias
        else:
            start = (self.kernel - self.k) // 2
            w, b = self.weight[:c, :, start : start + self.k], self.bias[:c]
        y = F.conv1d(x.transpose(1, 2), w, b, padding=self.k // 2, groups=c)
        return y.transpose(1, 2)


class ElasticSepConv(nn.Module):
    """NAS-BERT's separable convolution: depthwise conv, activation, pointwise linear."""

    def __init__(self, hidden: int, kernel: int, act: str, bias: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.depthwise = ElasticDepthwiseConv(hidden, kernel)
        self.pointwise = ElasticLinear(hidden, hidden, bias)
        self.act = ACT2FN[act]

    def select(self, width: int, kernel: int = 0) -> None:
        self.depthwise.select(width, kernel)
        hid = make_selection(width, self.hidden)
        self.pointwise.select(hid, hid)

    def reset(self) -> None:
        self.depthwise.reset()
        self.pointwise.reset()

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        if token_mask is not None:  # padding must not leak into real tokens through the kernel
            x = x * token_mask.unsqueeze(-1).to(x.dtype)
        return self.pointwise(self.act(self.depthwise(x)))
