"""``elastic-lm prune`` on the real MiniLM-L6 and each built-in labelled set (integration, tiny budget).

The issue promises movie-review sentiment, SMS spam (imbalanced) and BBC topics (five classes, whole
articles); this runs every stage on each with a few steps, so the real tokenizer, label sets and
lengths go through the pipeline, and checks what a user loads afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import elastic_lm.model  # noqa: F401  (elastic exports load through the Auto classes)
from elastic_lm.assets import LABELLED_READERS, get_asset
from elastic_lm.config import load_config
from elastic_lm.prune import run_prune

ROOT = Path(__file__).resolve().parents[1]
MINILM_BODY = 10_795_392  # non-embedding params: six layers (hidden 384, FFN 1536) and the pooler
TINY = [
    "data.max_examples=120", "data.max_length=24", "prune.finetune_steps=3",
    "prune.importance_batches=1", "train.steps=2", "train.batch_size=8", "train.eval_every=2",
    "train.checkpoint_every=2", "search.trials=3", "search.latency_repeats=1", "export.max_models=2",
]  # fmt: skip


@pytest.mark.parametrize("source", ["movie-sentiment", "sms-spam", "bbc-topic"])
def test_prune_runs_on_each_built_in_labelled_set(source: str, tmp_path: Path) -> None:
    for asset in ("minilm-l6", source):
        if not get_asset(asset).installed:
            pytest.skip(f"{asset} asset not installed")
    overrides = [*TINY, f"data.source={source}", f"run_dir={tmp_path / 'run'}"]
    config = load_config(ROOT / "configs" / "prune-sentiment.yaml", overrides, budget="quick")
    result = run_prune(config)

    columns, classes = LABELLED_READERS[source]()
    text = columns["text"][0]
    summary = json.loads((result.run_dir / "search" / "summary.json").read_text())
    assert set(summary["pareto"]) <= set(summary["exported"])  # the covering set adds, never drops
    assert result.exported
    assert {int(item["name"].split("-")[1]) for item in result.exported} <= set(summary["exported"])
    assert 0.0 <= result.unpruned["test_accuracy"] <= 1.0
    for item in result.exported:
        folder = result.run_dir / item["path"]
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert [model.config.id2label[i] for i in range(len(classes))] == classes
        with torch.inference_mode():
            logits = model(**tokenizer(text, truncation=True, max_length=24, return_tensors="pt")).logits
        assert logits.shape == (1, len(classes))
        card = json.loads((folder / "export.json").read_text())
        assert card["metrics"]["params_nonembedding"] <= MINILM_BODY + 385 * len(classes)  # + classifier
        assert 0.0 <= card["metrics"]["test_accuracy"] <= 1.0
