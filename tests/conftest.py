"""Shared fixtures: an isolated cache (still seeing the unpacked Austen corpus), tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from elastic_lm.assets import cache_dir, get_asset

# Resolved once, before any test points ELASTIC_LM_CACHE elsewhere.
_REAL_CACHE = cache_dir()

# Property tests draw the same examples on every run, so a red CI can be reproduced and a green one
# means the same thing twice; HYPOTHESIS_PROFILE=explore draws new ones (how to hunt for bugs).
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "dog", "sat", "on", "mat", "a", "good", "bad", "movie", "film", "was", "is",
    "very", "not", "and", "it", "i", "liked", "hated", ".", ",", "!",
]  # fmt: skip


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ELASTIC_LM_CACHE; the real unpacked Austen tree is linked in when present."""
    cache = tmp_path / "cache"
    cache.mkdir()
    austen = _REAL_CACHE / "janeaustenr"
    if austen.exists():
        (cache / "janeaustenr").symlink_to(austen.resolve())
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A 28-word WordPiece tokenizer: no asset needed for the mechanics tests."""
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(TINY_VOCAB)})
    assert len(tokenizer) == len(TINY_VOCAB)
    return tokenizer


@pytest.fixture(scope="session")
def minilm_tokenizer() -> PreTrainedTokenizerBase:
    """all-MiniLM-L6-v2's WordPiece tokenizer (30,522 tokens), from the installed asset."""
    if not get_asset("minilm-l6").installed:
        pytest.skip("minilm-l6 asset not installed")
    return AutoTokenizer.from_pretrained(get_asset("minilm-l6").require())


@pytest.fixture
def postgres_url() -> str:
    """A fresh database on the PostgreSQL server that ``.ci/run`` starts (ELASTIC_LM_TEST_POSTGRES).

    Skips, saying why, where there is no server: never a silent pass.
    """
    import os
    import uuid

    server = os.environ.get("ELASTIC_LM_TEST_POSTGRES")
    if not server:
        pytest.skip("no PostgreSQL server: run .ci/run, or set ELASTIC_LM_TEST_POSTGRES=postgresql://...")
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    name = f"elm_{uuid.uuid4().hex[:12]}"
    conn = psycopg.connect(server, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return server.rsplit("/", 1)[0] + "/" + name
