"""Tokenization cache, MLM masking statistics, CLM blocks, classification batches, DataLoaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from elastic_lm.data import (
    DataConfig,
    build_dataloaders,
    classification_collator,
    group_blocks,
    mlm_collator,
    prepare_data,
    tokenize,
)
from elastic_lm.data.tokenization import CACHE_SUBDIR
from elastic_lm.errors import DataError

WORDS = [
    "the", "cat", "sat", "on", "a", "mat", "and", "it", "was", "very", "good", ".",
    "i", "liked", "the", "film", "not", "the", "dog",
]  # fmt: skip


def _sentences(n: int, length: int = 12) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(length + i % 5)) for i in range(n)]


# --- tokenization cache --------------------------------------------------------------------


def test_tokenization_is_cached_on_disk(isolated_cache: Path, tiny_tokenizer, monkeypatch) -> None:
    ds = Dataset.from_dict({"text": _sentences(20), "label": [i % 2 for i in range(20)]})
    first = tokenize(ds, tiny_tokenizer, 16)
    files = sorted((isolated_cache / CACHE_SUBDIR).glob("*.arrow"))
    assert len(files) == 1
    assert first.column_names == [
        "label",
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "special_tokens_mask",
    ]
    assert max(len(ids) for ids in first["input_ids"]) == 16

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tokenizer called although the cache should answer")

    with monkeypatch.context() as patch:
        patch.setattr(type(tiny_tokenizer), "__call__", refuse)
        same_content = Dataset.from_dict(ds.to_dict())
        again = tokenize(same_content, tiny_tokenizer, 16)
    assert again["input_ids"] == first["input_ids"]
    assert sorted((isolated_cache / CACHE_SUBDIR).glob("*.arrow")) == files
    tokenize(ds, tiny_tokenizer, 8)  # another max length is another cache entry
    assert len(list((isolated_cache / CACHE_SUBDIR).glob("*.arrow"))) == 2


def test_changed_content_misses_the_cache(isolated_cache: Path, tiny_tokenizer) -> None:
    tokenize(Dataset.from_dict({"text": ["the cat"]}), tiny_tokenizer, 8)
    out = tokenize(Dataset.from_dict({"text": ["the dog"]}), tiny_tokenizer, 8)
    assert out["input_ids"] == [tiny_tokenizer("the dog")["input_ids"]]
    assert len(list((isolated_cache / CACHE_SUBDIR).glob("*.arrow"))) == 2


# --- masked LM -----------------------------------------------------------------------------


@pytest.mark.assets
def test_mlm_masking_statistics(isolated_cache: Path, minilm_tokenizer) -> None:
    tok = minilm_tokenizer
    ds = tokenize(Dataset.from_dict({"text": _sentences(400)}), tok, 24)
    features = [ds[i] for i in range(len(ds))]
    batch = mlm_collator(tok, 0.15, seed=0)(features)
    original = tok.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")["input_ids"]
    special = torch.isin(original, torch.tensor(tok.all_special_ids))
    maskable = ~special
    masked = batch["labels"] != -100
    assert int(maskable.sum()) > 5_000
    assert not (masked & special).any()  # [CLS], [SEP] and padding are never chosen
    assert torch.equal(batch["input_ids"][special], original[special])
    assert torch.equal(batch["labels"][masked], original[masked])
    rate = masked.sum().item() / maskable.sum().item()
    assert 0.13 < rate < 0.17
    chosen = batch["input_ids"][masked]
    as_mask = (chosen == tok.mask_token_id).float().mean().item()
    unchanged = (chosen == original[masked]).float().mean().item()
    assert 0.76 < as_mask < 0.84
    assert 0.07 < unchanged < 0.13
    assert 0.07 < 1 - as_mask - unchanged < 0.13  # random replacements


def test_mlm_collator_is_seeded(tiny_tokenizer) -> None:
    features = [tiny_tokenizer(s, return_special_tokens_mask=True) for s in _sentences(8)]
    a = mlm_collator(tiny_tokenizer, seed=7)([dict(f) for f in features])
    b = mlm_collator(tiny_tokenizer, seed=7)([dict(f) for f in features])
    c = mlm_collator(tiny_tokenizer, seed=8)([dict(f) for f in features])
    assert torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_mlm_needs_a_mask_token(tiny_tokenizer) -> None:
    tiny_tokenizer.mask_token = None
    with pytest.raises(DataError, match="has no mask token"):
        mlm_collator(tiny_tokenizer)


# --- causal LM blocks and classification -----------------------------------------------------


def test_clm_blocks_concatenate_and_chunk() -> None:
    ds = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]], "attention_mask": [[1]] * 3})
    blocks = group_blocks(ds, block_size=4, eos_token_id=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 0 -> three full blocks, nothing left over
    assert blocks["input_ids"] == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert blocks["labels"] == blocks["input_ids"]
    assert blocks["attention_mask"] == [[1, 1, 1, 1]] * 3
    short = group_blocks(ds, block_size=5, eos_token_id=None)
    assert short["input_ids"] == [[1, 2, 3, 4, 5]]  # the 4-token tail is dropped


def test_classification_batches_pad_dynamically(tiny_tokenizer) -> None:
    features = [
        {**tiny_tokenizer(t, return_special_tokens_mask=True), "label": y}
        for t, y in [("the cat", 0), ("the cat sat on the mat", 1)]
    ]
    batch = classification_collator(tiny_tokenizer)(features)
    assert batch["input_ids"].shape == (2, 8)  # longest example: 6 words + [CLS] + [SEP]
    assert batch["labels"].tolist() == [0, 1]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert "special_tokens_mask" not in batch


# --- one call from config to loaders ---------------------------------------------------------


def _csv(tmp_path: Path, n: int = 60) -> Path:
    rows = [f"{s},{'pos' if i % 3 else 'neg'}" for i, s in enumerate(_sentences(n))]
    path = tmp_path / "reviews.csv"
    path.write_text("review,label\n" + "\n".join(rows) + "\n")
    return path


def test_build_dataloaders_classification(isolated_cache: Path, tmp_path, tiny_tokenizer) -> None:
    config = DataConfig(
        source=str(_csv(tmp_path)),
        task="classification",
        text_column="review",
        max_length=10,
        validation_ratio=0.2,
        test_ratio=0.2,
        seed=1,
    )
    prepared = prepare_data(config, tiny_tokenizer)
    assert prepared.label_names == ["neg", "pos"]
    assert prepared.num_labels == 2
    assert [len(prepared.splits[s]) for s in ("train", "validation", "test")] == [36, 12, 12]
    loaders = build_dataloaders(config, tiny_tokenizer, batch_size=8)
    batch = next(iter(loaders.train))
    assert batch["input_ids"].shape[0] == 8
    assert batch["input_ids"].shape[1] <= 10
    assert set(batch["labels"].tolist()) <= {0, 1}
    again = next(iter(build_dataloaders(config, tiny_tokenizer, batch_size=8).train))
    assert torch.equal(batch["input_ids"], again["input_ids"])  # same seed, same order
    assert sum(len(b["labels"]) for b in loaders.test) == 12


def test_build_dataloaders_mlm_and_clm(isolated_cache: Path, tmp_path, tiny_tokenizer) -> None:
    (tmp_path / "corpus.txt").write_text("\n".join(_sentences(50)))
    mlm = DataConfig(source=str(tmp_path / "corpus.txt"), max_length=12, max_examples=40)
    prepared = prepare_data(mlm, tiny_tokenizer)
    assert sum(len(s) for s in prepared.splits.values()) == 40
    batch = next(iter(prepared.dataloaders(batch_size=4).train))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert (batch["labels"] != -100).any()
    clm = DataConfig(source=str(tmp_path / "corpus.txt"), task="clm", max_length=16)
    loaders = build_dataloaders(clm, tiny_tokenizer, batch_size=4)
    batch = next(iter(loaders.train))
    assert batch["input_ids"].shape == (4, 16)
    assert torch.equal(batch["input_ids"], batch["labels"])
