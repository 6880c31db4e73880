"""Latency of the elastic model against stock Hugging Face ``BertModel`` (same weights, same shape).

Run: ``PYTHONPATH=src python benchmarks/bench_model_vs_hf.py``. Prints median milliseconds of
inference and of a training step (forward + backward) for both; no assertions (timings vary).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from transformers import BertConfig, BertModel

from elastic_lm.convert import from_hf


def timed_ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main(batch: int = 8, seq: int = 128, reps: int = 12) -> None:
    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        attn_implementation="sdpa",
    )
    hf = BertModel(cfg, add_pooling_layer=False).eval()
    ours = from_hf(hf).eval()
    extracted = ours.extract(ours.architecture).eval()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    mask = torch.ones_like(ids)
    models = {"hf BertModel": hf, "elastic (supernet)": ours, "elastic (extracted)": extracted}

    def infer(m: torch.nn.Module) -> None:
        with torch.inference_mode():
            m(input_ids=ids, attention_mask=mask)

    def step(m: torch.nn.Module) -> None:
        m(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward()

    for label, fn, train in (("inference", infer, False), ("train step", step, True)):
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(reps):  # interleaved, so load from other processes hits all alike
            for k, m in models.items():
                m.train(train)
                times[k].append(timed_ms(lambda m=m, fn=fn: fn(m)))
        base = statistics.median(times["hf BertModel"])
        for k, t in times.items():
            med = statistics.median(t)
            print(f"{label:10s} {k:22s} {med:8.1f} ms  ({med / base:5.2f} x HF)", file=sys.stdout)


if __name__ == "__main__":
    main()
