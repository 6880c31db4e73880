"""Fidelity of exported encoders: mean cosine of each member's sentence embedding to the teacher's.

Sentence embedding = mean-pooled, L2-normalised last hidden state (as all-MiniLM-L6-v2 is used).
Text: movie-dialog utterances, which no recipe trains on. For each member the teacher's first k
layers (k = the member's depth, untrained) are measured too: the hand-made cut of the same depth.

    python benchmarks/quick_fidelity.py runs/elm-mlm-quick [--sentences 400]

Prints JSON: one row per exported member (folder, depth, non-embedding params, cos_to_teacher,
first_k_cos_to_teacher, first_k_params_nonembedding).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from elastic_lm.assets.corpora import movie_dialog_texts
from elastic_lm.assets.registry import ASSETS


def embed(model: torch.nn.Module, tokenizer: object, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


def nonembedding_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n and "pooler" not in n)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--sentences", type=int, default=400)
    args = ap.parse_args(argv)
    teacher_dir = ASSETS["minilm-l6"].require()
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    texts = [t for t in movie_dialog_texts() if len(t.split()) >= 4]
    texts = random.Random(0).sample(texts, args.sentences)
    teacher = AutoModel.from_pretrained(str(teacher_dir)).eval()
    reference = embed(teacher, tokenizer, texts)
    rows = []
    folders = sorted(p.parent for p in (args.run_dir / "export").rglob("config.json"))
    for folder in folders:
        try:
            member = AutoModel.from_pretrained(str(folder)).eval()
        except (OSError, ValueError) as err:  # not a stock encoder folder (card assets, supernet)
            print(f"skip {folder}: {err}", file=sys.stderr)
            continue
        if getattr(member.config, "model_type", "") != "bert":
            continue
        depth = member.config.num_hidden_layers
        cut = AutoModel.from_pretrained(str(teacher_dir), num_hidden_layers=depth).eval()
        rows.append(
            {
                "folder": str(folder),
                "depth": depth,
                "params_nonembedding": nonembedding_params(member),
                "cos_to_teacher": float((embed(member, tokenizer, texts) * reference).sum(-1).mean()),
                "first_k_cos_to_teacher": float((embed(cut, tokenizer, texts) * reference).sum(-1).mean()),
                "first_k_params_nonembedding": nonembedding_params(cut),
            }
        )
    print(json.dumps({"sentences": len(texts), "teacher_params_nonembedding": nonembedding_params(teacher),
                      "members": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
