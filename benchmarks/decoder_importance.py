"""Benchmark: does decoder importance keep the right parts of SmolLM2-135M? Perplexity before any healing.

SmolLM2-135M (the packaged GGUF, de-quantised once) is scored with ``decoder_importance`` on calibration
text (Austen's novels but one), then cut in one dimension at a time and scored on held-out text (the
remaining novel, *Persuasion*), all with inherited weights and no training:

- layers: keep 20 (and 18) of 30 by block importance, by removal perplexity, or the first ones;
- FFN: 1024 of 1536 units per layer, after reordering by importance or in the original order;
- heads: 6 of 9 heads on 2 of 3 KV groups, reordered (whole groups) or not;
- hidden: 480 of 576 channels, reordered through the norms or not.

It also checks that reordering changed no logit of the full model, and that a cut, reordered member
exported as stock ``LlamaForCausalLM`` writes the same greedy tokens as the sub-network.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/decoder_importance.py            # minutes on 2 cores
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/decoder_importance.py --quick    # fewer blocks

Prints one JSON object (the command to reproduce it included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import replace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, LlamaForCausalLM

from elastic_lm.architecture import Architecture
from elastic_lm.assets.corpora import austen_novels, split_lines
from elastic_lm.assets.smollm2 import smollm2_path
from elastic_lm.convert import from_hf
from elastic_lm.export.stock import to_stock
from elastic_lm.importance.decoder import decoder_importance, keep_layers, layer_scores, reorder_decoder

HELD_OUT = "persuasion"


def blocks(tokenizer: Any, texts: list[str], n: int, length: int) -> list[dict[str, torch.Tensor]]:
    """``n`` blocks of ``length`` tokens from the joined paragraphs, in batches of 8."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text + "\n\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= n * length:
            break
    rows = torch.tensor(ids[: n * length]).view(n, length)
    return [{"input_ids": rows[i : i + 8]} for i in range(0, n, 8)]


@torch.inference_mode()
def perplexity(model: Any, batches: list[dict[str, torch.Tensor]], arch: Architecture | None = None) -> float:
    total, count = 0.0, 0
    with model.using(arch or model.backbone.largest()):
        for batch in batches:
            ids = batch["input_ids"]
            logits = model(input_ids=ids).logits[:, :-1].float()
            total += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
            )
            count += ids[:, 1:].numel()
    return math.exp(total / count)


def uniform(arch: Architecture, **sizes: int) -> Architecture:
    layers = tuple(la if la.is_identity else replace(la, **sizes) for la in arch.layers)
    return Architecture(hidden=sizes.get("hidden", arch.hidden), layers=layers)


def first_layers(arch: Architecture, keep: int) -> Architecture:
    scores = torch.arange(len(arch.layers), 0, -1).float()
    return keep_layers(arch, scores, keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 calibration and 16 held-out blocks")
    parser.add_argument("--calibration", type=int, default=None, help="blocks of text to score on")
    parser.add_argument("--held-out", type=int, default=None, help="blocks of held-out text")
    parser.add_argument("--length", type=int, default=128, help="tokens per block")
    args = parser.parse_args(argv)
    n_cal = args.calibration or (16 if args.quick else 64)
    n_eval = args.held_out or (16 if args.quick else 64)
    torch.manual_seed(0)
    start = time.perf_counter()

    folder = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    novels = austen_novels()
    cal_text = [p for name, lines in novels.items() if name != HELD_OUT for p in split_lines(lines)]
    eval_text = split_lines(novels[HELD_OUT])
    calibration = blocks(tokenizer, cal_text, n_cal, args.length)
    held_out = blocks(tokenizer, eval_text, n_eval, args.length)

    original = from_hf(LlamaForCausalLM.from_pretrained(folder).eval(), task="causal-lm").eval()
    model = from_hf(LlamaForCausalLM.from_pretrained(folder).eval(), task="causal-lm").eval()
    full = model.backbone.largest()
    scored = time.perf_counter()
    names = ("ffn", "heads", "hidden", "block", "removal_perplexity")
    scores = decoder_importance(model, calibration, names)
    score_s = time.perf_counter() - scored
    probe = held_out[0]["input_ids"][:2]
    with torch.inference_mode():
        before = model(input_ids=probe).logits
        reorder_decoder(model, scores)
        reorder_diff = float((model(input_ids=probe).logits - before).abs().max())

    result: dict[str, Any] = {
        "command": "python " + shlex.join(["benchmarks/decoder_importance.py", *(argv or sys.argv[1:])]),
        "model": "SmolLM2-135M (packaged GGUF, de-quantised)",
        "calibration": f"{n_cal} x {args.length} tokens of Austen (all novels but {HELD_OUT})",
        "held_out": f"{n_eval} x {args.length} tokens of {HELD_OUT}",
        "torch": torch.__version__,
        "scoring_s": round(score_s, 1),
        "calibration_perplexity": scores.perplexity,
        "full_perplexity": perplexity(model, held_out),
        "reorder_max_abs_logit_change": reorder_diff,
        "max_abs_logit": float(before.abs().max()),
    }
    cuts: dict[str, dict[str, float]] = {}
    for keep in (20, 18):
        cuts[f"layers_{keep}_of_30"] = {
            "block_importance": perplexity(
                model, held_out, keep_layers(full, layer_scores(scores, "block"), keep)
            ),
            "removal_perplexity": perplexity(
                model, held_out, keep_layers(full, layer_scores(scores, "removal_perplexity"), keep)
            ),
            "first_layers": perplexity(model, held_out, first_layers(full, keep)),
        }
    for label, arch in {
        "ffn_1024_of_1536": uniform(full, ffn=1024),
        "heads_6_of_9_kv_2_of_3": uniform(full, heads=6, kv_heads=2),
        "hidden_480_of_576": Architecture(hidden=480, layers=full.layers),
    }.items():
        cuts[label] = {
            "reordered": perplexity(model, held_out, arch),
            "original_order": perplexity(original, held_out, arch),
        }
    result["perplexity_after_cut"] = cuts

    member = keep_layers(uniform(full, ffn=1024, heads=6, kv_heads=2), layer_scores(scores, "block"), 24)
    stock = to_stock(model.extract(member))
    assert stock is not None
    prompt = tokenizer(["It was a truth universally acknowledged that"], return_tensors="pt")
    with torch.inference_mode(), model.using(member):
        ours = model.generate(**prompt, max_new_tokens=24, do_sample=False)
        theirs = stock.eval().generate(**prompt, max_new_tokens=24, do_sample=False)
        logit_diff = float((model(**prompt).logits - stock(**prompt).logits).abs().max())
    result["member"] = {
        "architecture": "24 layers by block importance, 6 heads on 2 KV groups, FFN 1024",
        "perplexity": perplexity(model, held_out, member),
        "generate_matches_stock": bool(torch.equal(ours, theirs)),
        "stock_max_abs_logit_diff": logit_diff,
        "sample": tokenizer.decode(ours[0], skip_special_tokens=True),
    }
    result["layer_scores"] = {
        "block": [round(float(v), 4) for v in scores.block],
        "removal_perplexity": [round(float(v), 2) for v in scores.removal_perplexity],
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
