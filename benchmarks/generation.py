"""Benchmark: milliseconds per generated token, elastic causal LM (KV cache) vs stock ``LlamaForCausalLM``.

Both models have SmolLM2-135M's shape (or its first ``--layers`` layers) with random weights: decode time
depends on shapes only, so no checkpoint is needed. The elastic model is the extracted full network
(``from_hf(stock).extract()``, what a sub-network export runs before it becomes a stock folder); the stock
model is the same weights in ``LlamaForCausalLM``. Two views, each timed round-robin on one thread:

- ``decode``: ``measure_decode_ms`` (prefill of the prompt, then one cached single-token pass per token;
  ``elastic_without_cache`` reruns the whole prefix per token, as the elastic model did before it had a
  cache);
- ``generate``: ``generate(max_new_tokens=N, do_sample=False)`` time over N (what a user sees, with
  the generation loop's own overhead), plus whether both wrote the same tokens.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation.py --clock thread   # 30 layers
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation.py --quick          # 6 layers, seconds

Prints one JSON object (the command to reproduce it included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from elastic_lm.convert import from_hf
from elastic_lm.metrics.latency import fixed_threads, measure_decode_ms, summarise

SMOLLM2 = {  # SmolLM2-135M's config.json shape
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
}


class NoCache(torch.nn.Module):
    """The elastic model as it was before it had a KV cache: every step reruns the whole prefix."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        return self.model(input_ids=input_ids, use_cache=False)


def generate_ms_per_token(
    models: dict[str, torch.nn.Module], prompt: torch.Tensor, new: int, repeats: int, clock: Any
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median over ``repeats`` rounds (round-robin) of generate() time / new tokens, and the tokens."""
    samples: dict[str, list[float]] = {k: [] for k in models}
    tokens: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round is warm-up
            for name, model in models.items():
                start = clock()
                out = model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)
                samples[name].append((clock() - start) * 1000.0 / new)
                tokens[name] = out[:, prompt.shape[1] :]
    return {k: statistics.median(v[1:]) for k, v in samples.items()}, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 layers, fewer repeats")
    parser.add_argument("--layers", type=int, default=None, help="first N of SmolLM2's 30 layers")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="wall", choices=("wall", "thread"), help="thread: CPU time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    layers = args.layers or (6 if args.quick else 30)
    repeats = args.repeats or (3 if args.quick else 5)

    torch.manual_seed(args.seed)
    stock = LlamaForCausalLM(LlamaConfig(**{**SMOLLM2, "num_hidden_layers": layers})).eval()
    supernet = from_hf(stock, task="causal-lm").eval()
    elastic = supernet.extract(supernet.architecture).eval()
    models = {"elastic": elastic, "stock": stock}
    timed = {**models, "elastic_without_cache": NoCache(elastic)}

    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    prefill: dict[str, list[float]] = {k: [] for k in timed}
    steps: dict[str, list[float]] = {k: [] for k in timed}
    cached: dict[str, bool] = {}
    with fixed_threads(args.threads):
        for r in range(repeats + 1):  # round-robin, one prefill + decode run each; round 0 warms up
            for name, model in timed.items():
                d = measure_decode_ms(
                    model,
                    batch_size=1,
                    prompt_len=args.prompt_len,
                    new_tokens=args.new_tokens,
                    threads=args.threads,
                    warmup=0,
                    repeats=1,
                    clock=clock,
                )
                cached[name] = d.kv_cache
                if r:
                    prefill[name] += d.prefill.samples_ms
                    steps[name] += d.decode.samples_ms
        decode = {}
        for name in timed:
            per_token = summarise(steps[name])
            decode[name] = {
                "decode_ms_per_token": per_token.median_ms,
                "decode_iqr_ms": per_token.iqr_ms,
                "tokens_per_s": 1000.0 / per_token.median_ms,
                "prefill_ms": statistics.median(prefill[name]),
                "kv_cache": cached[name],
            }
        g = torch.Generator().manual_seed(args.seed)
        prompt = torch.randint(1, SMOLLM2["vocab_size"], (1, args.prompt_len), generator=g)
        gen_ms, tokens = generate_ms_per_token(models, prompt, args.new_tokens, repeats, clock)
    result = {
        "command": "python " + shlex.join(["benchmarks/generation.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": args.threads,
        "clock": args.clock,
        "shape": f"SmolLM2-135M, first {layers} of 30 layers, random weights",
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "decode": decode,
        "decode_ratio_elastic_over_stock": decode["elastic"]["decode_ms_per_token"]
        / decode["stock"]["decode_ms_per_token"],
        "generate_ms_per_token": gen_ms,
        "generate_ratio_elastic_over_stock": gen_ms["elastic"] / gen_ms["stock"],
        "generate_same_tokens": bool(torch.equal(tokens["elastic"], tokens["stock"])),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
