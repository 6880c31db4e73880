"""Vocabulary pruning: keep the embedding rows the task uses, remap ids, ship a matching tokenizer.

A small model's embedding table is often most of its parameters (MiniLM-L6: 11.7 M of 22.7 M). Rows
for tokens the task never produces are dead weight. We keep the special tokens, every token that
occurs ``min_count`` times in the training + validation data, and a ``reserve`` of the vocabulary's
first ordinary entries (a BERT WordPiece vocabulary lists words by frequency after its character
block), then rewrite the tokenizer's vocabulary with the kept tokens in their old order.

Why the outputs stay equal: WordPiece takes the longest vocabulary prefix at each step. For a word
whose pieces were all kept, no longer prefix can appear in a subset vocabulary and every piece is
still there, so the segmentation (and, after remapping, the embeddings) is unchanged. A word needing
a dropped piece becomes ``[UNK]``, as unknown words always did.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from elastic_lm.errors import ConfigError
from elastic_lm.io import atomic_write_json, atomic_write_text


def token_counts(rows: Iterable[dict[str, Any]]) -> Counter[int]:
    """How often each token id occurs in tokenized rows (``input_ids``)."""
    counts: Counter[int] = Counter()
    for row in rows:
        counts.update(int(i) for i in row["input_ids"])
    return counts


def kept_token_ids(
    tokenizer: PreTrainedTokenizerBase, counts: Counter[int], *, reserve: int = 0, min_count: int = 1
) -> list[int]:
    """Sorted ids to keep: special tokens, tokens seen ``min_count`` times, and the reserve."""
    keep = set(tokenizer.all_special_ids)
    keep.update(i for i, n in counts.items() if n >= min_count)
    if reserve:
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        ordinary = [
            i for t, i in vocab if not (t.startswith("[") and t.endswith("]")) and len(t.lstrip("#")) > 1
        ]
        extra = [i for i in ordinary if i not in keep][:reserve]
        keep.update(extra)
    return sorted(keep)


def prune_embeddings(model: nn.Module, kept: Sequence[int]) -> None:
    """Keep rows ``kept`` of the input embedding table, in that order (new id = position)."""
    emb = model.get_input_embeddings()  # type: ignore[operator]
    index = torch.tensor(list(kept), dtype=torch.long)
    emb.weight = nn.Parameter(emb.weight.data.index_select(0, index).clone())
    emb.num_embeddings = len(kept)
    remap = {old: new for new, old in enumerate(kept)}
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = remap.get(emb.padding_idx)
    config = model.config  # type: ignore[attr-defined]
    config.vocab_size = len(kept)
    if getattr(config, "pad_token_id", None) is not None:
        config.pad_token_id = remap.get(config.pad_token_id, 0)


def prune_tokenizer_files(folder: Path, kept: Sequence[int], tokenizer: PreTrainedTokenizerBase) -> None:
    """Rewrite ``tokenizer.json`` / ``vocab.txt`` / ``tokenizer_config.json`` with the kept tokens."""
    remap = {old: new for new, old in enumerate(kept)}
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = [by_id[i] for i in kept]
    file = folder / "tokenizer.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    if data.get("model", {}).get("type") != "WordPiece":
        raise ConfigError(
            f"prune.vocabulary.enabled needs a WordPiece (BERT) tokenizer; {folder} has "
            f"{data.get('model', {}).get('type')!r}: set prune.vocabulary.enabled to false"
        )
    data["model"]["vocab"] = {t: i for i, t in enumerate(tokens)}
    for added in data.get("added_tokens", []):
        added["id"] = remap[added["id"]]
    post = data.get("post_processor") or {}
    for spec in (post.get("special_tokens") or {}).values():
        spec["ids"] = [remap[i] for i in spec["ids"]]
    if data.get("padding"):
        data["padding"]["pad_id"] = remap.get(data["padding"]["pad_id"], 0)
    atomic_write_json(file, data)
    atomic_write_text(folder / "vocab.txt", "".join(t + "\n" for t in tokens))
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        if "added_tokens_decoder" in cfg:
            cfg["added_tokens_decoder"] = {
                str(remap[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()
            }
        atomic_write_json(config_file, cfg)


def prune_vocabulary_folder(
    folder: Path, data: Any, *, reserve: int = 0, min_count: int = 1
) -> tuple[int, int]:
    """Prune an exported model folder in place (model + tokenizer); returns (params before, after)."""
    from elastic_lm.export.load import load_exported

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    counts = token_counts(data.train) + token_counts(data.validation)
    kept = kept_token_ids(tokenizer, counts, reserve=reserve, min_count=min_count)
    model = load_exported(folder)
    before = sum(p.numel() for p in model.parameters())
    prune_embeddings(model, kept)
    after = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    prune_tokenizer_files(folder, kept, tokenizer)
    return before, after


__all__ = [
    "kept_token_ids",
    "prune_embeddings",
    "prune_tokenizer_files",
    "prune_vocabulary_folder",
    "token_counts",
]
