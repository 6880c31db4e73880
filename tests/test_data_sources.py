"""User data through the one loader entry point: text folders, CSV/TSV/JSONL, saved datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict
from pydantic import ValidationError

from elastic_lm.data import DataConfig, label_names, load_labelled, load_text_corpus
from elastic_lm.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_cache")


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_text_folder_recursive_paragraphs_and_lines(tmp_path: Path) -> None:
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("First para\nwrapped here.\n\nSecond para.\n")
    (root / "sub" / "b.txt").write_text("line one\nline two\n\n")  # trailing blank: still paragraphs
    (root / "sub" / "c.txt").write_text("solo one\nsolo two\nsolo three\n")
    (root / "ignored.md").write_text("not text")
    ds = load_text_corpus(str(root))
    assert isinstance(ds, Dataset)
    assert ds["text"] == [
        "First para wrapped here.",
        "Second para.",
        "line one line two",
        "solo one",
        "solo two",
        "solo three",
    ]


def test_several_paths_are_concatenated(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.txt").write_text("beta\n")
    ds = load_text_corpus([tmp_path / "a.txt", str(tmp_path / "b.txt")])
    assert ds["text"] == ["alpha", "beta"]


def test_csv_corpus_reads_named_column(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv", "id,body", ["1,hello world", '2,"quoted, text"', "3,"])
    ds = load_text_corpus(str(csv), text_column="body")
    assert ds.column_names == ["text"]
    assert ds["text"] == ["hello world", "quoted, text"]  # the blank row is dropped


def test_labelled_csv_string_labels_map_sorted_and_keep_names(tmp_path: Path) -> None:
    rows = ["great film,pos", "awful film,neg", "fine film,pos", "meh,neutral"]
    csv = _write_csv(tmp_path / "l.csv", "review,sentiment", rows)
    ds = load_labelled(str(csv), text_column="review", label_column="sentiment")
    assert ds.column_names == ["text", "label"]
    assert isinstance(ds.features["label"], ClassLabel)
    assert label_names(ds) == ["neg", "neutral", "pos"]
    assert ds["label"] == [2, 0, 2, 1]


def test_labelled_tsv_with_text_pair_and_int_labels(tmp_path: Path) -> None:
    rows = ["a cat\ta dog\t1", "the mat\tthe film\t0", "it is\tit was\t1"]
    tsv = _write_csv(tmp_path / "p.tsv", "s1\ts2\tsame", rows)
    ds = load_labelled(str(tsv), text_column="s1", text_pair_column="s2", label_column="same")
    assert ds.column_names == ["text", "text_pair", "label"]
    assert ds["text_pair"] == ["a dog", "the film", "it was"]
    assert label_names(ds) == ["0", "1"]
    assert ds["label"] == [1, 0, 1]


def test_jsonl_regression_labels_are_float(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rows = [{"t": "good", "y": 0.9}, {"t": "bad", "y": -0.4}, {"t": "ok", "y": 0.1}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_labelled(str(path), text_column="t", label_column="y", task="regression")
    assert ds.features["label"].dtype == "float32"
    assert ds["label"] == pytest.approx([0.9, -0.4, 0.1])
    assert label_names(ds) is None


def test_class_folders_become_labels(tmp_path: Path) -> None:
    for topic, texts in {"sport": ["goal scored", "match won"], "tech": ["new chip"]}.items():
        (tmp_path / topic).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / topic / f"{i}.txt").write_text(t + "\n\nmore.")
    ds = load_labelled(str(tmp_path))
    assert label_names(ds) == ["sport", "tech"]
    assert ds["label"] == [0, 0, 1]
    assert ds["text"][0] == "goal scored more."


def test_save_to_disk_dataset_and_dict(tmp_path: Path) -> None:
    Dataset.from_dict({"body": ["x y", "z"], "y": ["b", "a"]}).save_to_disk(tmp_path / "one")
    ds = load_labelled(str(tmp_path / "one"), text_column="body", label_column="y")
    assert ds["text"] == ["x y", "z"]
    assert ds["label"] == [1, 0]
    splits = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b"], "label": ["yes", "no"]}),
        test=Dataset.from_dict({"text": ["c", "d"], "label": ["yes", "no"]}),
    )
    splits.save_to_disk(tmp_path / "dict")
    loaded = load_labelled(str(tmp_path / "dict"))
    assert isinstance(loaded, DatasetDict)
    assert list(loaded) == ["train", "test"]
    assert loaded["train"]["label"] == loaded["test"]["label"] == [1, 0]  # one shared mapping
    texts = load_text_corpus(str(tmp_path / "dict"))
    assert isinstance(texts, DatasetDict)
    assert texts["test"]["text"] == ["c", "d"]


# --- errors: one line, naming the field and the fix ---------------------------------------------


def _one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_path_names_field_and_assets(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_text_corpus(str(tmp_path / "nope.txt"))
    message = _one_line(err)
    assert "data.source" in message
    assert "nope.txt" in message
    assert "austen" in message  # lists the asset names as the alternative


def test_csv_without_column_lists_its_columns(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv", "review,stars", ["good,5"])
    with pytest.raises(DataError) as err:
        load_labelled(str(csv), text_column="review", label_column="label")
    message = _one_line(err)
    assert "no column 'label' (data.label_column)" in message
    assert "review, stars" in message


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    with pytest.raises(DataError, match="holds no text"):
        load_text_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"has no \.txt files"):
        load_text_corpus(str(tmp_path / "folder"))


def test_unknown_asset_name_is_data_error() -> None:
    with pytest.raises(DataError, match="neither an existing file or folder nor a known asset"):
        load_text_corpus("wikipedia-2030")


def test_single_class_labels(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv", "text,label", ["a,spam", "b,spam"])
    with pytest.raises(DataError) as err:
        load_labelled(str(csv))
    assert "has one class ('spam')" in _one_line(err)


def test_text_pair_column_on_data_without_it(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv", "text,label", ["a,x", "b,y"])
    with pytest.raises(DataError, match=r"no column 'hypothesis' \(data\.text_pair_column\)"):
        load_labelled(str(csv), text_pair_column="hypothesis")
    (tmp_path / "cls" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data\.text_pair_column is 'hypothesis'"):
        load_labelled(str(tmp_path / "cls"), text_pair_column="hypothesis")


def test_fractional_labels_need_regression(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "d.csv", "text,label", ["a,0.5", "b,1.0"])
    with pytest.raises(DataError, match=r"set data\.task to regression"):
        load_labelled(str(csv))
    words = _write_csv(tmp_path / "w.csv", "text,label", ["a,high", "b,low"])
    with pytest.raises(DataError, match=r"set data\.task to classification"):
        load_labelled(str(words), task="regression")


def test_data_config_forbids_unknown_fields_and_bad_ratios() -> None:
    cfg = DataConfig(source="austen")
    assert (cfg.task, cfg.max_length, cfg.validation_ratio, cfg.test_ratio) == (
        "mlm",
        128,
        0.1,
        0.1,
    )
    with pytest.raises(ValidationError, match="extra"):
        DataConfig(source="austen", txt_column="x")
    with pytest.raises(ValidationError, match="leaves no training data"):
        DataConfig(source="austen", validation_ratio=0.5, test_ratio=0.5)
    with pytest.raises(ValidationError):
        DataConfig(source="austen", task="seq2seq")


@pytest.mark.assets
def test_a_list_mixes_asset_names_and_paths(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("my own first paragraph.\n\nmy own second paragraph.\n")
    austen = load_text_corpus("austen")
    mixed = load_text_corpus(["austen", str(mine)])
    assert len(mixed) == len(austen) + 2
    assert mixed["text"][-2:] == ["my own first paragraph.", "my own second paragraph."]
