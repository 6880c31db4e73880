"""Data-parallel plumbing for super-network training, without wrapping the model in DDP.

Why not ``DistributedDataParallel``: a sandwich step runs several sub-networks (several backward
passes) before one optimiser step, and a sub-network that drops a layer leaves that layer's
parameters without a gradient. DDP's reducer then fails ("Expected to have finished reduction in
the prior iteration") unless ``find_unused_parameters=True``, which walks the autograd graph after
every forward and still all-reduces once per backward. Here every rank runs the *same* sub-networks
in a step (strategies are a pure function of ``(seed, step)``), so the set of parameters holding a
gradient is identical on all ranks. We therefore all-reduce, once per optimiser step, exactly the
gradients that exist, coalesced into a few flat buffers (:func:`all_reduce_gradients`), and check
cheaply that the ranks agree on that set. Parameters are broadcast from rank 0 at start, as DDP
does.
See ``docs/training-loop.md`` for the measurement.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from elastic_lm.errors import ConfigError

_BUCKET_ELEMENTS = 25_000_000  # ~100 MB of fp32 per all-reduce, like DDP's default bucket cap


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only the main rank writes logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group described by torchrun's env vars, or run alone without them.

    ``device`` is ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``. The backend
    is NCCL on CUDA and gloo on CPU. An already initialised process group is reused.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r} is unknown; use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is visible; use device: cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def _buckets(tensors: list[Tensor]) -> Iterable[list[Tensor]]:
    """Consecutive groups of same-dtype/device tensors, each at most one bucket large."""
    group: list[Tensor] = []
    size = 0
    for t in tensors:
        if group and (
            t.dtype != group[0].dtype or t.device != group[0].device or size + t.numel() > _BUCKET_ELEMENTS
        ):
            yield group
            group, size = [], 0
        group.append(t)
        size += t.numel()
    if group:
        yield group


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average the existing gradients of ``params`` over all ranks (no-op when alone)."""
    if not ctx.enabled:
        return
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    check = torch.tensor([len(grads), -len(grads)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX)
    if int(check[0]) != len(grads) or int(-check[1]) != len(grads):
        raise RuntimeError(
            "ranks disagree on which parameters have gradients this step; every rank must run the "
            "same sub-networks (build the strategy with the same seed on every rank)"
        )
    for group in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= ctx.world_size
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_parameters(tensors: Iterable[Tensor], ctx: DistContext) -> None:
    """Make every rank start from rank 0's weights (as DDP does at construction)."""
    if not ctx.enabled:
        return
    for t in tensors:
        dist.broadcast(t.data, src=0)


def all_reduce_mean(values: Tensor, ctx: DistContext) -> Tensor:
    """Mean over ranks of a small float tensor (a copy; the input is untouched)."""
    out = values.detach().to(ctx.device, torch.float64).clone()
    if ctx.enabled:
        dist.all_reduce(out)
        out /= ctx.world_size
    return out


def all_reduce_sum(values: Tensor, ctx: DistContext) -> Tensor:
    """Sum over ranks of a small tensor (a float64 copy)."""
    out = values.detach().to(ctx.device, torch.float64).clone()
    if ctx.enabled:
        dist.all_reduce(out)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


__all__ = [
    "DistContext",
    "all_reduce_gradients",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_parameters",
    "init_distributed",
]
