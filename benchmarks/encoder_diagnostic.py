"""Diagnostic (issue 14): how close sub-networks of the encoder super-network are to the teacher,
right after inheritance and importance reordering (no training), and after ``--steps`` steps.

For a few hand-picked sub-networks at about 25/50/75% of the teacher's non-embedding parameters
(evenly spaced layers at full width, all layers at a uniform narrower width, and a mix) it prints
the mean cosine of their sentence embeddings to the teacher's (mean pooling over real tokens, as
all-MiniLM-L6-v2 is used) and retrieval MRR on held-out movie-dialog pairs, so one sees whether
the loss of quality comes from the cut itself or from training.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder_diagnostic.py --steps 100 \
        --set train.learning_rate=3e-5
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder_diagnostic.py --reconstruct 24

Prints JSON: per stage (``inherited``, ``trained``) one row per sub-network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.config import load_config
from elastic_lm.evaluate.retrieval import movie_dialog_pairs, retrieval_metrics
from elastic_lm.metrics.size import count_params
from elastic_lm.space.codec import evenly_spaced
from elastic_lm.train.build import build_training, tokenizer_from_config
from elastic_lm.train.representation import mean_pooled, sentence_embeddings

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "elm-mlm.yaml"


def subnetworks(largest: Architecture) -> dict[str, Architecture]:
    """Named sub-networks: depth cuts (evenly spaced / first-k), uniform width cuts, mixes."""
    n = len(largest.layers)
    full = largest.layers[-1]
    heads, ffn = full.heads, full.ffn

    def arch(keep: list[int], h: int, f: int) -> Architecture:
        layers = [
            LayerArch(block=full.block, heads=h, ffn=f) if i in keep else LayerArch(block="identity")
            for i in range(n)
        ]
        return Architecture(hidden=largest.hidden, layers=tuple(layers))

    out = {"largest": largest}
    for k in (2, 3, 4, 5):
        out[f"even-{k}-layers"] = arch(evenly_spaced(n, k), heads, ffn)
        out[f"first-{k}-layers"] = arch(list(range(k)), heads, ffn)
    for frac in (0.25, 0.5, 0.75):
        out[f"width-{frac}"] = arch(list(range(n)), max(1, round(heads * frac)), round(ffn * frac))
    out["even-4-width-0.75"] = arch(evenly_spaced(n, 4), round(heads * 0.75), round(ffn * 0.75))
    out["even-5-width-0.5"] = arch(evenly_spaced(n, 5), heads // 2, ffn // 2)
    return out


def measure(
    model: Any, teacher: Any, tokenizer: Any, archs: dict[str, Architecture], texts: Any, max_length: int
) -> list[dict[str, Any]]:
    """Cosine to the teacher and retrieval MRR of each sub-network."""

    def embed(forward: Any, batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts.texts), batch_size):
            enc = tokenizer(
                texts.texts[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            out.append(forward(dict(enc)))
        return torch.cat(out)

    n = len(texts)
    model.eval()
    teacher.eval()
    with torch.inference_mode():
        reference = embed(lambda enc: sentence_embeddings(teacher, enc))
        t_mrr = retrieval_metrics(reference[:n], reference[n:])["mrr"]
        rows = [{"name": "teacher", "share": 1.0, "cos_to_teacher": 1.0, "mrr": t_mrr, "mrr_kept": 1.0}]
        full = count_params(model.config, archs["largest"], False)
        for name, arch in archs.items():
            with model.using(arch):
                vec = embed(lambda enc: sentence_embeddings(model, enc))
            mrr = retrieval_metrics(vec[:n], vec[n:])["mrr"]
            rows.append({
                "name": name, "share": round(count_params(model.config, arch, False) / full, 3),
                "cos_to_teacher": round(float((vec * reference).sum(-1).mean()), 4),
                "mrr": round(mrr, 4), "mrr_kept": round(mrr / t_mrr, 3),
            })  # fmt: skip
    model.train()
    return rows


def reconstructed(
    parts: Any, tokenizer: Any, archs: dict[str, Architecture], pairs: Any, max_length: int, n: int
) -> list[dict[str, Any]]:
    """Each sub-network measured after layer-wise least-squares reconstruction (on a copy)."""
    import copy

    from elastic_lm.heal.reconstruct import reconstruct_layers, teacher_prenorm_states
    from elastic_lm.train.build import fixed_batches

    batches = fixed_batches(parts.train_data, parts.settings.collate_fn, n, parts.settings.batch_size, 0)
    states = teacher_prenorm_states(parts.teacher, batches)
    rows = []
    for name, arch in archs.items():
        model = copy.deepcopy(parts.model)
        t0 = time.perf_counter()
        reconstruct_layers(model, arch, parts.teacher, batches, states=states)
        seconds = round(time.perf_counter() - t0, 1)
        pair = {"largest": archs["largest"], name: arch}
        row = measure(model, parts.teacher, tokenizer, pair, pairs, max_length)[-1]
        rows.append({**row, "seconds": seconds})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--steps", type=int, default=0, help="train this many steps, then measure again")
    parser.add_argument("--pairs", type=int, default=500, help="held-out movie-dialog pairs")
    parser.add_argument(
        "--reconstruct",
        type=int,
        default=0,
        metavar="BATCHES",
        help="also measure each sub-network re-fitted by least squares on this many training batches",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"run_dir={tmp}/run", *args.overrides]
        if args.steps:
            overrides.append(f"train.steps={args.steps}")
        config = load_config(RECIPE, overrides, budget=args.budget)
        parts = build_training(config, progress=False)
        assert parts.teacher is not None
        tokenizer = tokenizer_from_config(config)
        pairs = movie_dialog_pairs(args.pairs, config.seed)
        archs = subnetworks(parts.space.largest())
        max_length = config.data.max_length
        result: dict[str, Any] = {"config": overrides, "budget": args.budget, "pairs": len(pairs)}
        result["inherited"] = measure(parts.model, parts.teacher, tokenizer, archs, pairs, max_length)
        print(json.dumps(result["inherited"]), file=sys.stderr)
        if args.reconstruct:
            n = args.reconstruct
            result["reconstructed"] = reconstructed(parts, tokenizer, archs, pairs, max_length, n)
        if args.steps:
            t0 = time.perf_counter()
            parts.train()
            result["train_seconds"] = round(time.perf_counter() - t0, 1)
            result["trained"] = measure(parts.model, parts.teacher, tokenizer, archs, pairs, max_length)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    return result


__all__ = ["main", "mean_pooled", "subnetworks"]

if __name__ == "__main__":
    main()
