"""Decode latency of a causal LM: the prompt once (prefill), then one token at a time through its
KV cache, timed on the exported model with the rules of :mod:`elastic_lm.metrics.timing`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from elastic_lm.metrics.timing import (
    Clock,
    LatencyMeasurement,
    _sync,
    check_device,
    check_positive,
    example_inputs,
    fixed_threads,
    refuse_supernet,
    summarise,
)


@dataclass(frozen=True)
class DecodeMeasurement:
    """Prefill of the prompt and the per-token cost of generating after it.

    ``kv_cache`` says whether decoding reused cached keys/values (``past_key_values``). When the model
    has no KV cache, ``decode`` is the time of one forward pass over the whole prefix for each new
    token (what generation costs without a cache) and ``note`` says so.
    """

    prefill: LatencyMeasurement
    decode: LatencyMeasurement
    kv_cache: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefill": self.prefill.to_dict(),
            "decode_per_token": self.decode.to_dict(),
            "kv_cache": self.kv_cache,
            "note": self.note,
        }


def _has_cache(out: Any) -> bool:
    return getattr(out, "past_key_values", None) is not None


def measure_decode_ms(
    model: nn.Module,
    *,
    batch_size: int,
    prompt_len: int,
    new_tokens: int = 16,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 2,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> DecodeMeasurement:
    """Prefill latency of a prompt and per-token decode latency of a causal LM.

    With a KV cache (stock Hugging Face Llama / GPT-2: ``use_cache=True``) each decode step feeds one
    token and the cache; without one, each step reruns the whole prefix, and ``note`` says so. Each
    repeat starts a fresh prefill because caches grow in place.
    """
    refuse_supernet(model)
    check_positive("new_tokens", new_tokens)
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, minimum=0)
    dev = check_device(device)
    model = model.to(dev).eval()
    total = prompt_len + new_tokens
    ids = example_inputs(model, batch_size, total, dev)
    prompt, rest = ids[:, :prompt_len], ids[:, prompt_len:]
    prefill_samples: list[float] = []
    decode_samples: list[float] = []

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        _sync(dev)
        start = clock()
        out = fn()
        _sync(dev)
        return out, (clock() - start) * 1000.0

    with fixed_threads(threads), torch.inference_mode():
        kv_cache = _has_cache(model(input_ids=prompt[:, :1], use_cache=True))
        for run in range(warmup + repeats):
            out, ms = timed(lambda: model(input_ids=prompt, use_cache=True))
            steps: list[float] = []
            past = getattr(out, "past_key_values", None) if kv_cache else None
            for t in range(new_tokens):
                if kv_cache:
                    token = rest[:, t : t + 1]
                    step = partial(model, input_ids=token, past_key_values=past, use_cache=True)
                    out, step_ms = timed(step)
                    past = out.past_key_values
                else:
                    prefix = ids[:, : prompt_len + t + 1]
                    out, step_ms = timed(partial(model, input_ids=prefix))
                steps.append(step_ms)
            if run >= warmup:
                prefill_samples.append(ms)
                decode_samples.extend(steps)
    settings = dict(
        batch_size=batch_size,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        device=str(dev),
        threads=threads if threads is not None else torch.get_num_threads(),
        warmup=warmup,
        repeats=repeats,
        backend="torch",
    )
    note = (
        "decode reuses the KV cache (past_key_values): one token per step"
        if kv_cache
        else "model has no KV cache: each decode step reruns the whole prefix "
        "(an upper bound on cached decoding)"
    )
    return DecodeMeasurement(
        prefill=summarise(prefill_samples, settings),
        decode=summarise(decode_samples, settings),
        kv_cache=kv_cache,
        note=note,
    )


__all__ = ["DecodeMeasurement", "measure_decode_ms"]
