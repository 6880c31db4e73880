"""One entry point from "what the user named" (asset or path) to a ``datasets.Dataset``.

Why one entry point: ``--data path/to/texts/`` and ``--data austen`` must behave the same. Every
loader returns canonical columns, ``text`` (plus ``text_pair``, ``label`` for labelled data), so
tokenization and training never see user column names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Value

from elastic_lm.assets import CORPUS_READERS, LABELLED_READERS, cache_dir, get_asset
from elastic_lm.assets.corpora import read_text_file, split_document
from elastic_lm.assets.registry import ASSETS
from elastic_lm.errors import DataError

Spec = str | Path | Sequence[str | Path]
Loaded = Dataset | DatasetDict

TABULAR = {
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
    ".jsonl": ("json", None),
    ".json": ("json", None),
}
_SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def _as_paths(spec: Spec) -> list[Path]:
    items = [spec] if isinstance(spec, str | Path) else list(spec)
    if not items:
        raise DataError("data.source is empty: name an asset or give a path to your data")
    paths = [Path(p).expanduser() for p in items]
    for p in paths:
        if not p.exists():
            known = ", ".join(ASSETS)
            raise DataError(
                f"data.source '{p}' is neither an existing file or folder nor a known asset "
                f"({known}): fix the path or the name"
            )
    return paths


def _is_saved(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _SAVED_MARKERS)


def _txt_files(path: Path) -> list[Path]:
    files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
    if not files:
        raise DataError(f"data.source folder '{path}' has no .txt files: add some or point elsewhere")
    return files


def _read_tabular(path: Path) -> Dataset:
    builder, sep = TABULAR[path.suffix.lower()]
    kwargs = {"delimiter": sep} if sep else {}
    try:
        ds = datasets.load_dataset(
            builder,
            data_files=str(path),
            split="train",
            cache_dir=str(cache_dir() / "hf-datasets"),
            **kwargs,
        )
    except Exception as err:  # the builders raise many types for a malformed file
        raise DataError(f"cannot read {path} as {path.suffix} ({err}); fix the file") from err
    assert isinstance(ds, Dataset)
    return ds


def _require_column(ds: Dataset, column: str, field: str, origin: object) -> None:
    if column not in ds.column_names:
        raise DataError(
            f"{origin} has no column '{column}' (data.{field}); its columns are: {', '.join(ds.column_names)}"
        )


def _drop_empty(ds: Dataset, origin: object) -> Dataset:
    ds = ds.filter(lambda t: isinstance(t, str) and bool(t.strip()), input_columns="text")
    if len(ds) == 0:
        raise DataError(f"data.source {origin} holds no text: it is empty or all rows are blank")
    return ds


def _select(ds: Dataset, columns: dict[str, str | None], origin: object) -> Dataset:
    """Keep the named columns under canonical names (``text``, ``text_pair``, ``label``)."""
    mapping: dict[str, str] = {}
    for canonical, (field, name) in columns.items():
        if name is None:
            continue
        _require_column(ds, name, field, origin)
        mapping[name] = canonical
    ds = ds.select_columns(list(mapping))
    renames = {k: v for k, v in mapping.items() if k != v}
    return ds.rename_columns(renames) if renames else ds


# ---------------------------------------------------------------------------------------------
# Unlabelled text


def load_text_corpus(spec: Spec, text_column: str = "text") -> Loaded:
    """Texts for language modelling, as a Dataset with one column ``text``.

    ``spec`` is a corpus or labelled asset name, or path(s): ``.txt`` files or folders (searched
    recursively; blank lines separate examples, else one per line), CSV / TSV / JSONL files (read
    ``text_column``), or a ``save_to_disk`` folder (a saved DatasetDict keeps its splits). A list
    mixes asset names and paths freely (e.g. ``[austen, bbc-news, my/texts/]``) and concatenates them.
    """
    items = [spec] if isinstance(spec, str | Path) else list(spec)
    if not items:
        raise DataError("data.source is empty: name an asset or give a path to your data")
    loaded = [_one_text_source(item, text_column) for item in items]
    if len(loaded) == 1:
        return loaded[0]
    if any(isinstance(part, DatasetDict) for part in loaded):
        raise DataError(
            "data.source lists a saved dataset with its own splits among other sources; "
            "use it alone, or save it as a single split"
        )
    return datasets.concatenate_datasets(loaded)


def _one_text_source(item: str | Path, text_column: str) -> Loaded:
    if isinstance(item, str) and item in ASSETS:
        return _asset_corpus(item)
    (path,) = _as_paths(item)
    if _is_saved(path):
        saved = datasets.load_from_disk(str(path))
        if isinstance(saved, DatasetDict):
            return _text_dict(saved, text_column, path)
        ds = _select(saved, {"text": ("text_column", text_column)}, path)
    elif path.is_file() and path.suffix.lower() in TABULAR:
        ds = _select(_read_tabular(path), {"text": ("text_column", text_column)}, path)
    else:
        texts = [t for f in _txt_files(path) for t in split_document(read_text_file(f))]
        ds = Dataset.from_dict({"text": texts}, features=_text_features())
    return _drop_empty(ds, path)


def _text_dict(saved: DatasetDict, text_column: str, path: Path) -> DatasetDict:
    """A saved DatasetDict keeps its own splits; each gets the canonical ``text`` column."""
    column = {"text": ("text_column", text_column)}
    return DatasetDict({k: _drop_empty(_select(v, column, path), path) for k, v in saved.items()})


def _text_features() -> datasets.Features:
    return datasets.Features({"text": Value("string")})


def _asset_corpus(name: str) -> Dataset:
    asset = get_asset(name)
    if name in CORPUS_READERS:
        texts = CORPUS_READERS[name]()
    elif name in LABELLED_READERS:
        texts = LABELLED_READERS[name]()[0]["text"]
    else:
        raise DataError(f"asset '{name}' is a model ({asset.kind}), not text: set data.source to a corpus")
    return _drop_empty(Dataset.from_dict({"text": texts}, features=_text_features()), name)


# ---------------------------------------------------------------------------------------------
# Labelled text


def load_labelled(
    spec: Spec,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    task: Literal["classification", "regression"] = "classification",
) -> Loaded:
    """Labelled texts as a Dataset with ``text`` (``text_pair``) and ``label`` columns.

    ``spec`` is a labelled asset name, CSV / TSV / JSONL file(s), a ``save_to_disk`` folder, or a
    folder with one sub-folder of ``.txt`` files per class (the sub-folder name is the label).
    Classification labels become a ``ClassLabel`` (string labels sorted, the mapping kept in
    ``features["label"].names``); regression labels become float32.
    """
    columns = {
        "text": ("text_column", text_column),
        "text_pair": ("text_pair_column", text_pair_column),
        "label": ("label_column", label_column),
    }
    if isinstance(spec, str) and spec in ASSETS:
        return _asset_labelled(spec, text_pair_column, task)
    parts: list[Dataset] = []
    for path in _as_paths(spec):
        if _is_saved(path):
            saved = datasets.load_from_disk(str(path))
            if isinstance(saved, DatasetDict):
                return _labelled_dict(saved, columns, task, path)
            parts.append(_select(saved, columns, path))
        elif path.is_file() and path.suffix.lower() in TABULAR:
            parts.append(_select(_read_tabular(path), columns, path))
        elif path.is_dir():
            parts.append(_class_folders(path, text_pair_column))
        else:
            raise DataError(
                f"data.source '{path}' is not CSV, TSV, JSONL or a folder: labelled data needs one"
            )
    ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return _finish_labelled(ds, task, spec)


def _class_folders(path: Path, text_pair_column: str | None) -> Dataset:
    if text_pair_column is not None:
        raise DataError(
            f"data.text_pair_column is '{text_pair_column}' but folder '{path}' has single texts "
            "only: remove text_pair_column or use a CSV with that column"
        )
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    texts, labels = [], []
    for d in classes:
        for f in sorted(d.rglob("*.txt")):
            texts.append(" ".join(read_text_file(f).split()))
            labels.append(d.name)
    if not texts:
        raise DataError(
            f"data.source folder '{path}' has no <class>/*.txt files: "
            "put each class's .txt files in a sub-folder named after the class"
        )
    return Dataset.from_dict({"text": texts, "label": labels})


def _asset_labelled(name: str, text_pair_column: str | None, task: str) -> Dataset:
    asset = get_asset(name)
    if name not in LABELLED_READERS:
        raise DataError(
            f"asset '{name}' is a {asset.kind} without labels: set data.source to one of "
            f"{', '.join(LABELLED_READERS)} or to your own labelled file"
        )
    if text_pair_column is not None:
        raise DataError(
            f"data.text_pair_column is '{text_pair_column}' but asset '{name}' has single texts: "
            "remove text_pair_column"
        )
    if task != "classification":
        raise DataError(f"asset '{name}' has class labels: set data.task to classification")
    columns, names = LABELLED_READERS[name]()
    features = datasets.Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return _drop_empty(Dataset.from_dict(columns, features=features), name)


def _finish_labelled(ds: Dataset, task: str, origin: object, uniques: list | None = None) -> Dataset:
    ds = _drop_empty(ds, origin)
    if task == "regression":
        return encode_regression(ds, origin)
    return encode_labels(ds, origin, uniques)


def _labelled_dict(saved: DatasetDict, columns: dict, task: str, path: Path) -> DatasetDict:
    """A saved DatasetDict keeps its splits; string labels get one mapping across all of them."""
    selected = {k: _select(v, columns, path) for k, v in saved.items()}
    uniques = None
    if task == "classification":
        values = {v for split in selected.values() for v in split["label"] if v is not None}
        uniques = sorted(values, key=lambda v: (isinstance(v, str), v))
    return DatasetDict({k: _finish_labelled(v, task, path, uniques) for k, v in selected.items()})


def encode_regression(ds: Dataset, origin: object = "data") -> Dataset:
    """Cast ``label`` to float32, refusing labels that are not numbers."""
    try:
        return ds.cast_column("label", Value("float32"))
    except (ValueError, TypeError) as err:
        example = ds[0]["label"]
        raise DataError(
            f"data.label_column of {origin} has non-numeric labels (e.g. {example!r}): "
            "set data.task to classification"
        ) from err


def encode_labels(ds: Dataset, origin: object = "data", uniques: list | None = None) -> Dataset:
    """Map labels to ids 0..K-1 (sorted values) as a ClassLabel, so the mapping travels with it.

    ``uniques`` fixes the label values (and their order) when several splits must share a mapping.
    """
    feature = ds.features["label"]
    if isinstance(feature, ClassLabel):
        names = feature.names
        present = set(ds["label"])
    else:
        values = ds["label"]
        if any(v is None for v in values):
            raise DataError(f"data.label_column of {origin} has empty labels: fill or drop them")
        floats = [v for v in values if isinstance(v, float)]
        if any(not v.is_integer() for v in floats):
            example = next(v for v in floats if not v.is_integer())
            raise DataError(
                f"data.label_column of {origin} has non-integer labels (e.g. {example}): "
                "set data.task to regression"
            )
        if uniques is None:
            uniques = sorted(set(values), key=lambda v: (isinstance(v, str), v))
        names = [str(int(v)) if isinstance(v, float) else str(v) for v in uniques]
        index = {v: i for i, v in enumerate(uniques)}
        ds = ds.map(lambda b: {"label": [index[v] for v in b]}, input_columns="label", batched=True)
        ds = ds.cast_column("label", ClassLabel(names=names))
        present = set(ds["label"])
    if len(present) < 2:
        only = names[next(iter(present))] if present else "none"
        raise DataError(
            f"data.label_column of {origin} has one class ('{only}'); classification needs at "
            "least two: check the label column or the data"
        )
    return ds


def label_names(ds: Dataset | DatasetDict) -> list[str] | None:
    """Class names by id, or None for regression / unlabelled data."""
    first = ds[next(iter(ds))] if isinstance(ds, DatasetDict) else ds
    feature = first.features.get("label")
    return list(feature.names) if isinstance(feature, ClassLabel) else None
