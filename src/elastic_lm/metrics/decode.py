"""Decode latency of a causal LM: the prompt once (prefill), then one token at a time through its
KV cache, timed on the exported model with the rules of :mod:`elastic_lm.metrics.timing`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from elastic_lm.errors import UserError
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
    out = measure_decode_round_robin(
        {"model": model},
        batch_size=batch_size,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        device=device,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        clock=clock,
    )
    return out["model"]


def measure_decode_round_robin(
    models: Mapping[str, nn.Module],
    *,
    batch_size: int,
    prompt_len: int,
    new_tokens: int = 16,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 2,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> dict[str, DecodeMeasurement]:
    """:func:`measure_decode_ms` of several models, interleaved: each round runs every model once (a
    prefill and ``new_tokens`` steps), so a change of the machine's load hits all of them alike and
    their ratios stay honest on a shared machine. The same prompt tokens feed every model."""
    check_positive("new_tokens", new_tokens)
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, minimum=0)
    if not models:
        raise UserError("measure_decode_round_robin: no models given")
    dev = check_device(device)
    for model in models.values():
        refuse_supernet(model)
        model.to(dev).eval()
    first = next(iter(models.values()))
    ids = example_inputs(first, batch_size, prompt_len + new_tokens, dev)
    prefill: dict[str, list[float]] = {name: [] for name in models}
    decode: dict[str, list[float]] = {name: [] for name in models}

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        _sync(dev)
        start = clock()
        out = fn()
        _sync(dev)
        return out, (clock() - start) * 1000.0

    with fixed_threads(threads), torch.inference_mode():
        cached = {name: _has_cache(m(input_ids=ids[:, :1], use_cache=True)) for name, m in models.items()}
        for run in range(warmup + repeats):
            for name, model in models.items():
                ms, steps = _one_run(model, ids, prompt_len, new_tokens, cached[name], timed)
                if run >= warmup:
                    prefill[name].append(ms)
                    decode[name].extend(steps)
    settings = dict(
        batch_size=batch_size,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        device=str(dev),
        threads=threads if threads is not None else torch.get_num_threads(),
        warmup=warmup,
        repeats=repeats,
        backend="torch",
        interleaved_with=len(models),
    )
    return {
        name: DecodeMeasurement(
            prefill=summarise(prefill[name], settings),
            decode=summarise(decode[name], settings),
            kv_cache=cached[name],
            note=_NOTES[cached[name]],
        )
        for name in models
    }


def _one_run(
    model: nn.Module,
    ids: torch.Tensor,
    prompt_len: int,
    new_tokens: int,
    kv_cache: bool,
    timed: Callable[[Callable[[], Any]], tuple[Any, float]],
) -> tuple[float, list[float]]:
    """One fresh prefill of the prompt, then ``new_tokens`` decode steps; their milliseconds."""
    prompt, rest = ids[:, :prompt_len], ids[:, prompt_len:]
    out, ms = timed(lambda: model(input_ids=prompt, use_cache=True))
    steps: list[float] = []
    past = getattr(out, "past_key_values", None) if kv_cache else None
    for t in range(new_tokens):
        if kv_cache:
            token = rest[:, t : t + 1]
            out, step_ms = timed(partial(model, input_ids=token, past_key_values=past, use_cache=True))
            past = out.past_key_values
        else:
            out, step_ms = timed(partial(model, input_ids=ids[:, : prompt_len + t + 1]))
        steps.append(step_ms)
    return ms, steps


_NOTES = {
    True: "decode reuses the KV cache (past_key_values): one token per step",
    False: "model has no KV cache: each decode step reruns the whole prefix "
    "(an upper bound on cached decoding)",
}


__all__ = ["DecodeMeasurement", "measure_decode_ms", "measure_decode_round_robin"]
