"""The data section of an elastic-lm config: what to read and how to cut it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskKind = Literal["mlm", "clm", "classification", "regression"]


class DataConfig(BaseModel):
    """Where the data comes from and how it becomes batches.

    ``source`` is a built-in asset name (``elastic-lm assets`` lists them) or a path: a ``.txt``
    file, a folder of ``.txt`` files (or one sub-folder of them per class), a CSV / TSV / JSONL
    file, or a folder written by ``datasets.Dataset.save_to_disk``. A list combines several paths.
    """

    model_config = ConfigDict(extra="forbid")

    source: str | list[str] = Field(description="asset name, or path(s) to your data")
    task: TaskKind = Field("mlm", description="mlm, clm, classification or regression")
    text_column: str = Field("text", description="column holding the text (tabular data)")
    text_pair_column: str | None = Field(None, description="second text of a sentence pair")
    label_column: str = Field("label", description="column holding the label")
    max_length: int = Field(128, gt=1, description="tokens per example (block size for clm)")
    validation_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    test_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, description="seed of the split, the subsample and the masking")
    max_examples: int | None = Field(None, gt=0, description="use a seeded subsample of this size")
    mlm_probability: float = Field(
        0.15, ge=0.0, lt=1.0, description="0: plain text (representation distillation reads no masks)"
    )

    @model_validator(mode="after")
    def _ratios_leave_training_data(self) -> DataConfig:
        if self.validation_ratio + self.test_ratio >= 1.0:
            raise ValueError(
                f"validation_ratio + test_ratio = {self.validation_ratio + self.test_ratio:g} "
                "leaves no training data; make their sum below 1"
            )
        return self

    @property
    def labelled(self) -> bool:
        """True for tasks that read a label column."""
        return self.task in ("classification", "regression")
