"""Why the training loop all-reduces gradients itself instead of wrapping the model in DDP.

Two gloo processes train an elastic MLP with a sandwich step (largest, one random, smallest; the
smallest drops layers) in three ways and print what happens and the time per step:

- ``ddp``: ``DistributedDataParallel`` as is (``no_sync`` for all but the last backward);
- ``ddp-unused``: the same with ``find_unused_parameters=True``;
- ``manual``: no wrapper; one coalesced all-reduce of the existing gradients per step
  (``elastic_lm.train.distributed.all_reduce_gradients``), as ``train_supernet`` does.

Run: ``PYTHONPATH=src python benchmarks/ddp_unused_parameters.py [steps]``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from elastic_lm.train.distributed import DistContext, all_reduce_gradients

WIDTH, LAYERS, BATCH = 256, 6, 32


class ElasticMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS))
        self.head = nn.Linear(WIDTH, 1)
        self.width, self.depth = WIDTH, LAYERS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.width
        x = x[:, :w]
        for layer in self.layers[: self.depth]:
            x = x + torch.relu(F.linear(x, layer.weight[:w, :w], layer.bias[:w]))
        return F.linear(x, self.head.weight[:, :w], self.head.bias)


def sandwich(step: int) -> list[tuple[int, int]]:
    g = torch.Generator().manual_seed(step)
    mid = (int(torch.randint(64, WIDTH + 1, (1,), generator=g)), LAYERS)
    return [(WIDTH, LAYERS), mid, (64, 2)]  # the smallest drops 4 layers


def worker(rank: int, mode: str, steps: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    core = ElasticMLP()
    model: nn.Module = core
    if mode != "manual":
        model = DistributedDataParallel(core, find_unused_parameters=mode == "ddp-unused")
    opt = torch.optim.AdamW(core.parameters(), lr=1e-3)
    ctx = DistContext(rank=rank, world_size=2)
    began, status = None, "ok"
    try:
        for step in range(steps):
            if step == 1:
                began = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            tasks = sandwich(step)
            for i, (w, d) in enumerate(tasks):
                core.width, core.depth = w, d
                x = torch.randn(BATCH, WIDTH)
                last = i == len(tasks) - 1
                sync = model.no_sync() if (mode != "manual" and not last) else contextlib.nullcontext()
                with sync:
                    model(x).pow(2).mean().backward()
            if mode == "manual":
                all_reduce_gradients(core.parameters(), ctx)
            opt.step()
    except RuntimeError as exc:
        status = "error: " + str(exc).splitlines()[0][:110]
    if rank == 0:
        ms = (time.perf_counter() - began) * 1e3 / (steps - 1) if began and status == "ok" else 0
        out[mode] = (status, ms)
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    out = mp.Manager().dict()
    for mode in ("ddp", "ddp-unused", "manual"):
        mp.spawn(worker, args=(mode, steps, _port(), out), nprocs=2, join=True)
        status, ms = out[mode]
        print(f"{mode:11s} {status:>6s}" + (f"  {ms:7.1f} ms/step" if ms else ""))


if __name__ == "__main__":
    main()
