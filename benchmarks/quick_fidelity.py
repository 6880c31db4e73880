"""Fidelity of a finished run's Pareto members: mean cosine of each member's sentence embedding to the
teacher's (all-MiniLM-L6-v2) on held-out text.

Sentence embedding = mean-pooled, L2-normalised last hidden state (how all-MiniLM-L6-v2 is used).
Text: movie-dialog utterances, which the recipes do not train on. Each member is run as a
sub-network of the saved super-network (exports compute the same function; tests check that). For
each depth k on the front, the teacher's first k layers (untrained, the hand-made cut) are measured
too.

    python benchmarks/quick_fidelity.py runs/elm-mlm-quick [--sentences 400]

Prints JSON: teacher params, and per front member its depth, non-embedding params, search objective
values, whether it was exported, and cos_to_teacher; plus first_k rows.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from elastic_lm.assets.corpora import movie_dialog_texts
from elastic_lm.assets.registry import ASSETS
from elastic_lm.export.pareto import pareto_trials
from elastic_lm.export.supernet import load_supernet
from elastic_lm.metrics.size import count_params
from elastic_lm.train.representation import mean_pooled, sentence_embeddings


def embed(
    model: torch.nn.Module, tokenizer: object, texts: list[str], hf: bool, batch_size: int = 32
) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            if hf:
                out.append(mean_pooled(model(**enc).last_hidden_state, enc["attention_mask"]))
            else:
                out.append(sentence_embeddings(model, dict(enc)))
    return torch.cat(out)


def hf_nonembedding(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n and "pooler" not in n)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--sentences", type=int, default=400)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    teacher_dir = ASSETS["minilm-l6"].require()
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    texts = [t for t in movie_dialog_texts() if len(t.split()) >= 4]
    texts = random.Random(0).sample(texts, args.sentences)
    teacher = AutoModel.from_pretrained(str(teacher_dir)).eval()
    reference = embed(teacher, tokenizer, texts, hf=True)
    supernet = load_supernet(args.run_dir / "train" / "supernet")
    model = supernet.model.eval()
    index_file = args.run_dir / "export" / "index.json"
    exported = {e["name"] for e in json.loads(index_file.read_text())} if index_file.is_file() else set()
    trials, _, _ = pareto_trials(args.run_dir)
    rows = []
    for t in sorted(trials, key=lambda t: count_params(model.config, t.architecture, False)):
        arch = t.architecture
        with model.using(arch):
            cos = float((embed(model, tokenizer, texts, hf=False) * reference).sum(-1).mean())
        params = count_params(model.config, arch, False)
        kept = [i for i, layer in enumerate(arch.layers) if not layer.is_identity]
        rows.append({
            "trial": t.number, "depth": arch.depth, "layers": kept, "params_nonembedding": params,
            "objectives": {k: v for k, v in t.metrics.items() if isinstance(v, int | float)},
            "exported": f"trial-{t.number}" in exported, "cos_to_teacher": round(cos, 4),
        })  # fmt: skip
    first_k = []
    for k in sorted({r["depth"] for r in rows}):
        cut = AutoModel.from_pretrained(str(teacher_dir), num_hidden_layers=k).eval()
        cos = float((embed(cut, tokenizer, texts, hf=True) * reference).sum(-1).mean())
        first_k.append(
            {"depth": k, "params_nonembedding": hf_nonembedding(cut), "cos_to_teacher": round(cos, 4)}
        )
    print(json.dumps({"sentences": len(texts), "teacher_params_nonembedding": hf_nonembedding(teacher),
                      "front": rows, "teacher_first_k": first_k}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
