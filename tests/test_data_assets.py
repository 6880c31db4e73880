"""The built-in corpora and labelled sets load with their real properties; splits are seeded."""

from __future__ import annotations

from collections import Counter

import pytest
from datasets import Dataset

from elastic_lm.assets import get_asset
from elastic_lm.data import label_names, load_labelled, load_text_corpus, split_dataset
from elastic_lm.errors import DataError

pytestmark = [pytest.mark.assets, pytest.mark.usefixtures("isolated_cache")]

# (asset, min rows, max rows, min characters, max characters)
CORPORA = [
    ("austen", 9_000, 12_000, 3_900_000, 4_100_000),
    ("bbc-news", 12_000, 14_000, 4_900_000, 5_100_000),
    ("movie-dialogs", 64_000, 64_350, 4_400_000, 4_700_000),
]


@pytest.mark.parametrize(("name", "lo", "hi", "chars_lo", "chars_hi"), CORPORA)
def test_corpus_loads(name: str, lo: int, hi: int, chars_lo: int, chars_hi: int) -> None:
    if not get_asset(name).installed:
        pytest.skip(f"{name} not installed: {get_asset(name).install_command}")
    ds = load_text_corpus(name)
    assert isinstance(ds, Dataset)
    assert ds.column_names == ["text"]
    assert lo <= len(ds) <= hi
    texts = ds["text"]
    assert all(t and t == t.strip() for t in texts)
    assert chars_lo <= sum(map(len, texts)) <= chars_hi


def test_movie_sentiment_is_binary_and_balanced() -> None:
    ds = load_labelled("movie-sentiment")
    assert len(ds) == 10_072
    assert label_names(ds) == ["negative", "positive"]
    counts = Counter(ds["label"])
    assert 0.48 < counts[1] / len(ds) < 0.52
    assert all(ds["text"])


def test_sms_spam_counts() -> None:
    ds = load_labelled("sms-spam")
    assert len(ds) == 4_837
    assert label_names(ds) == ["ham", "spam"]
    assert Counter(ds["label"])[1] == 638


def test_bbc_topic_five_classes() -> None:
    ds = load_labelled("bbc-topic")
    assert len(ds) == 2_225
    assert label_names(ds) == ["business", "entertainment", "politics", "sports", "tech"]
    assert Counter(ds["label"]) == {0: 510, 1: 386, 2: 417, 3: 511, 4: 401}
    assert min(len(t) for t in ds["text"]) > 100


def test_labelled_asset_texts_serve_as_corpus() -> None:
    assert len(load_text_corpus("sms-spam")) == 4_837


def test_model_asset_is_not_data() -> None:
    with pytest.raises(DataError, match=r"is a model \(encoder\), not text"):
        load_text_corpus("minilm-l6")
    with pytest.raises(DataError, match="without labels"):
        load_labelled("austen")


def test_splits_deterministic_by_seed_and_stratified() -> None:
    ds = load_labelled("sms-spam")
    a = split_dataset(ds, validation_ratio=0.1, test_ratio=0.2, seed=3)
    b = split_dataset(ds, validation_ratio=0.1, test_ratio=0.2, seed=3)
    c = split_dataset(ds, validation_ratio=0.1, test_ratio=0.2, seed=4)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [3386, 484, 967]
    assert a["test"]["text"] == b["test"]["text"]
    assert a["validation"]["text"] == b["validation"]["text"]
    assert a["test"]["text"] != c["test"]["text"]
    overall = 638 / 4_837
    for split in a.values():
        ratio = sum(split["label"]) / len(split)
        assert abs(ratio - overall) < 0.005
    rows = set(a["train"]["text"]) | set(a["validation"]["text"]) | set(a["test"]["text"])
    assert len(rows) == len(set(ds["text"]))  # nothing lost, nothing duplicated across splits
