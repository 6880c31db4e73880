"""Tokenization through ``datasets.map`` with an on-disk cache keyed by what determines the output.

Why our own key: in-memory datasets get random fingerprints, so the ``datasets`` cache alone would
miss on every run. We key the Arrow cache file by a hash of the data's content, the tokenizer's full
definition and the options (max length, task), so a second run with the same inputs is a file read
and any change to any of them is a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from elastic_lm.assets import cache_dir

CACHE_SUBDIR = "tokenized"


def data_fingerprint(ds: Dataset) -> str:
    """Hash of the dataset's features and content (stable across runs and processes)."""
    h = hashlib.sha256(repr(ds.features).encode())
    for batch in ds.with_format("arrow").iter(batch_size=50_000):
        for column in sorted(batch.column_names):
            h.update(column.encode())
            h.update(json.dumps(batch.column(column).to_pylist()).encode())
    return h.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of everything that changes token ids: the fast tokenizer's JSON, else its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # per-call state that the tokenizer keeps between calls
        spec.pop("padding", None)
        definition = json.dumps(spec, sort_keys=True)
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{tokenizer.all_special_tokens}"
    return hashlib.sha256((definition + extra).encode()).hexdigest()[:24]


def cache_file(kind: str, *parts: object) -> Path:
    """Arrow cache path for one (kind, key parts) combination."""
    key = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]
    folder = cache_dir() / CACHE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{key}.arrow"


def _cached_map(ds: Dataset, path: Path | None, function: Any, **kwargs: Any) -> Dataset:
    """``ds.map`` whose result lives in ``path``; an existing file is read instead of recomputed.

    ``datasets`` only consults its cache for file-backed datasets, so we check ourselves. ``map``
    writes to a temporary file and moves it into place, so an existing file is always complete.
    """
    if path is None:
        return ds.map(function, **kwargs)
    if path.is_file():
        return Dataset.from_file(str(path))
    return ds.map(function, cache_file_name=str(path), **kwargs)


def tokenize(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    *,
    use_cache: bool = True,
) -> Dataset:
    """Token ids for ``text`` (and ``text_pair``), truncated to ``max_length`` (None: no limit).

    Keeps ``label``; adds ``special_tokens_mask`` so MLM masking never touches special tokens.
    Padding is left to the collator (dynamic padding per batch).
    """
    pair = "text_pair" in ds.column_names

    def encode(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(
            batch["text"],
            batch["text_pair"] if pair else None,
            truncation=max_length is not None,
            max_length=max_length,
            return_special_tokens_mask=True,
            verbose=False,
        )

    drop = [c for c in ("text", "text_pair") if c in ds.column_names]
    path = None
    if use_cache:
        path = cache_file("tok", data_fingerprint(ds), tokenizer_fingerprint(tokenizer), max_length, pair)
    return _cached_map(ds, path, encode, batched=True, remove_columns=drop, desc="tokenizing")


def group_blocks(
    ds: Dataset,
    block_size: int,
    eos_token_id: int | None,
    *,
    cache_key: str | None = None,
) -> Dataset:
    """Causal-LM blocks: documents joined (EOS between them) and cut into ``block_size`` tokens.

    The tail shorter than a block is dropped, as in the Hugging Face CLM recipe; ``labels`` equal
    ``input_ids`` (the model shifts them).
    """

    def chunk(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        stream: list[int] = []
        for ids in batch["input_ids"]:
            stream.extend(ids)
            if eos_token_id is not None and (not ids or ids[-1] != eos_token_id):
                stream.append(eos_token_id)
        n = len(stream) // block_size * block_size
        blocks = [stream[i : i + block_size] for i in range(0, n, block_size)]
        return {
            "input_ids": blocks,
            "attention_mask": [[1] * block_size for _ in blocks],
            "labels": [list(b) for b in blocks],
        }

    path = cache_file("blocks", cache_key, block_size, eos_token_id) if cache_key else None
    return _cached_map(ds, path, chunk, batched=True, remove_columns=ds.column_names, desc="grouping blocks")


def tokenize_splits(
    splits: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    task: str,
    *,
    use_cache: bool = True,
) -> DatasetDict:
    """Tokenize every split for ``task`` (clm: whole documents, then fixed-length blocks)."""
    out = {}
    for name, ds in splits.items():
        if task == "clm":
            ids = tokenize(ds, tokenizer, None, use_cache=use_cache).remove_columns(["special_tokens_mask"])
            key = data_fingerprint(ds) + tokenizer_fingerprint(tokenizer) if use_cache else None
            out[name] = group_blocks(ids, max_length, tokenizer.eos_token_id, cache_key=key)
        else:
            out[name] = tokenize(ds, tokenizer, max_length, use_cache=use_cache)
    return DatasetDict(out)
