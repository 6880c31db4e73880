"""Offline assets: pre-trained models and texts shipped by registry packages, no hub needed."""

from __future__ import annotations

from elastic_lm.assets.corpora import (
    CORPUS_READERS,
    LABELLED_READERS,
    austen_novels,
    movie_dialog_pairs,
    split_document,
)
from elastic_lm.assets.registry import (
    ASSETS,
    Asset,
    cache_dir,
    get_asset,
    list_assets,
    minilm_path,
    package_dir,
)
from elastic_lm.assets.smollm2 import smollm2_path

__all__ = [
    "ASSETS",
    "CORPUS_READERS",
    "LABELLED_READERS",
    "Asset",
    "austen_novels",
    "cache_dir",
    "get_asset",
    "list_assets",
    "minilm_path",
    "movie_dialog_pairs",
    "package_dir",
    "smollm2_path",
    "split_document",
]
