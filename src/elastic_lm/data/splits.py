"""Deterministic train / validation / test splits (stratified when labels are classes).

Why here: search compares sub-networks on the validation split and reports on test; both must be
the same rows on every run and every worker with the same seed, and class ratios must survive the
cut (SMS spam is 13 % spam; an unstratified 10 % test split could drift far from that).
"""

from __future__ import annotations

from datasets import ClassLabel, Dataset, DatasetDict

from elastic_lm.errors import DataError

SPLITS = ("train", "validation", "test")


def subsample(ds: Dataset, max_examples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``max_examples`` rows (all rows when None or larger)."""
    if max_examples is None or max_examples >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(max_examples)).flatten_indices()


def _cut(ds: Dataset, size: float, seed: int, stratify: bool) -> tuple[Dataset, Dataset]:
    column = "label" if stratify else None
    try:
        parts = ds.train_test_split(test_size=size, seed=seed, stratify_by_column=column)
    except ValueError as err:
        raise DataError(
            f"cannot split {len(ds)} rows with ratio {size:g} ({err}); "
            "change data.validation_ratio / data.test_ratio or give more data"
        ) from err
    return parts["train"], parts["test"]


def split_dataset(
    data: Dataset | DatasetDict,
    validation_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 0,
) -> DatasetDict:
    """``train`` / ``validation`` / ``test`` splits, the same for the same seed.

    A DatasetDict that already has some of the splits keeps them; missing ones are cut from
    ``train``. Class-labelled data is stratified by ``label``. A ratio of 0 gives an empty split.
    """
    if isinstance(data, DatasetDict):
        if "train" not in data:
            raise DataError(f"saved dataset has splits {list(data)} but no 'train': rename one to train")
        out = {k: data[k] for k in SPLITS if k in data}
    else:
        out = {"train": data}
    train = out["train"]
    stratify = isinstance(train.features.get("label"), ClassLabel)
    total = len(train)
    wanted = {
        name: ratio
        for name, ratio in (("test", test_ratio), ("validation", validation_ratio))
        if name not in out
    }
    for name, ratio in wanted.items():
        if ratio <= 0:
            out[name] = train.select([])
            continue
        # ratios are of the whole data, not of what is left after earlier cuts
        size = max(1, round(ratio * total))
        train, out[name] = _cut(train, size, seed, stratify)
    out["train"] = train
    if len(train) == 0:
        raise DataError("the train split is empty: lower data.validation_ratio / data.test_ratio")
    return DatasetDict({k: out[k] for k in SPLITS})
