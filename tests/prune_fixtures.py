"""A tiny random BERT folder and a synthetic labelled CSV with a learnable rule (positive words win)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "dull"]
FILLER = ["the", "movie", "film", "was", "is", "a", "it", "plot", "acting", "story"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
EXTRA = ["zebra", "quantum", "banana", "violin"]  # in the vocabulary, never in the data
VOCAB = SPECIAL + WORDS + FILLER + EXTRA


def tiny_bert(folder: Path, *, layers: int = 2, classifier: bool = False, seed: int = 0) -> Path:
    """A random 2-layer BERT (hidden 32, 4 heads, FFN 64) with its WordPiece tokenizer."""
    import torch

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config) if classifier else BertModel(config)
    model.save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)
    return folder


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Texts of filler plus one sentiment word; the label is that word's polarity."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        word = rng.choice(WORDS[:4] if label else WORDS[4:])
        text = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        text.insert(rng.randrange(len(text) + 1), word)
        rows.append({"text": " ".join(text), "label": "pos" if label else "neg", "other": rng.choice(FILLER)})
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def prune_config(tmp: Path, **over: object) -> dict[str, object]:
    """A seconds-long prune config on the tiny model and 240 synthetic rows."""
    model = tiny_bert(tmp / "bert")
    data = write_csv(tmp / "reviews.csv", sentiment_rows(240))
    config: dict[str, object] = {
        "run_dir": str(tmp / "run"),
        "device": "cpu",
        "model": {"source": str(model), "task": "sequence-classification"},
        "data": {"source": str(data), "task": "classification", "max_length": 16,
                 "validation_ratio": 0.2, "test_ratio": 0.2},
        "space": {"preset": "prune-small", "options": {"ffn_step": 16}},
        "train": {"steps": 8, "batch_size": 16, "learning_rate": 1e-3, "eval_every": 8,
                  "checkpoint_every": 8},
        "search": {"strategy": "random", "trials": 6, "eval_batch_size": 64, "latency_seq_len": 16,
                   "latency_repeats": 2},
        "export": {"max_models": 3},
        "prune": {"adapt_small_data": False,  # its tests turn it on; here it would move the splits
                  "finetune_steps": 40, "finetune_learning_rate": 1e-2, "importance_batches": 2,
                  "baseline_fractions": [0.5],
                  "baseline_steps": 3},
    }  # fmt: skip
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            config[section] = {**config[section], name: value}  # type: ignore[dict-item]
        else:
            config[section] = value
    return config
