"""The configuration schema: one pydantic model per pipeline stage, composed into :class:`Config`.

Every section forbids unknown keys, so a typo is an error that names the key and the allowed ones rather
than a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from elastic_lm.data.config import DataConfig

Task = Literal["masked-lm", "causal-lm", "sequence-classification"]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    """Where the super-network comes from."""

    source: str = Field(
        "minilm-l6",
        description="an asset name (see 'elastic-lm assets'), a local Hugging Face folder, or 'scratch'",
    )
    task: Task = "masked-lm"
    num_labels: PositiveInt = 2


class SpaceSection(Section):
    """Which search space the super-network covers."""

    preset: str = "elm"
    options: dict[str, Any] = Field(default_factory=dict, description="preset shape overrides")


class LossSpec(Section):
    name: str
    weight: float = 1.0
    options: dict[str, Any] = Field(default_factory=dict)


class TrainSection(Section):
    """Super-network training."""

    steps: PositiveInt = 200
    batch_size: PositiveInt = 16
    grad_accumulation: PositiveInt = 1
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.06, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    strategy: str = "sandwich"
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    losses: list[LossSpec] = Field(default_factory=lambda: [LossSpec(name="mlm")])
    teacher: str = Field("self", description="'self' (the full super-network), 'none', or an asset/path")
    checkpoint_every: PositiveInt = 100
    eval_every: PositiveInt = 100
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    keep_checkpoints: PositiveInt = 3
    eval_batches: PositiveInt = 8


class ObjectiveSpec(Section):
    """A named objective (``elastic_lm.pipeline.objectives.METRICS``); direction defaults per name."""

    name: str
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="None: the metric's own (accuracy/f1 maximize, everything else minimize)"
    )
    bounds: tuple[float, float] | None = Field(
        None, description="(low, high) raw values for the hypervolume; default: known or observed range"
    )


class ConstraintSpec(Section):
    name: str
    max: float | None = None
    min: float | None = None


class SearchSection(Section):
    """Multi-objective search over the trained super-network."""

    strategy: str = "mo-rea"
    trials: PositiveInt = 100
    objectives: list[ObjectiveSpec] = Field(
        default_factory=lambda: [ObjectiveSpec(name="val_loss"), ObjectiveSpec(name="params")]
    )
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    storage: str | None = Field(None, description="Optuna storage URL or journal file; default SQLite")
    eval_batches: PositiveInt = 8
    eval_batch_size: PositiveInt = 16
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    latency_batch_size: PositiveInt = 1
    latency_seq_len: PositiveInt = 128
    latency_threads: PositiveInt | None = 1
    latency_repeats: PositiveInt = 10


class ExportSection(Section):
    """Which sub-networks become standalone models, and in which formats."""

    pareto: bool = True
    max_models: PositiveInt = 8
    onnx: bool = False


class VocabularySection(Section):
    """Vocabulary pruning of exported models: keep the embedding rows the task's data uses."""

    enabled: bool = False
    reserve: int = Field(
        0, ge=0, description="also keep this many of the most frequent other tokens (0: only used ones)"
    )
    min_count: PositiveInt = Field(1, description="a token must occur this often in train+validation")


class PruneSection(Section):
    """``elastic-lm prune``: fine-tune, reorder, train the super-network, search, export, baselines.

    Evaluation batch size and latency settings are the ``search`` section's (one place for them).
    """

    finetune_steps: int = Field(200, ge=0, description="fine-tuning of the full model; 0 skips it")
    finetune_learning_rate: float = Field(5e-5, gt=0)
    importance: Literal["gradient", "magnitude"] = "gradient"
    importance_batches: PositiveInt = 8
    size_objective: Literal["params", "params_nonembedding", "latency_ms"] = "params_nonembedding"
    quality_objective: Literal["accuracy", "f1", "loss"] = "accuracy"
    baselines: bool = False
    baseline_fractions: list[float] = Field(
        default_factory=lambda: [0.33, 0.5, 0.67], description="kept fractions of layers / heads / widths"
    )
    baseline_steps: int | None = Field(None, ge=0, description="steps per baseline model; None: train.steps")
    vocabulary: VocabularySection = Field(default_factory=VocabularySection)


class Config(Section):
    """A whole job: every command reads the sections it needs from this one object."""

    run_dir: Path = Path("runs/default")
    budget: str | None = Field(None, description="the named budget of the recipe that was applied")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelSection = Field(default_factory=ModelSection)
    space: SpaceSection = Field(default_factory=SpaceSection)
    data: DataConfig = Field(default_factory=lambda: DataConfig(source=["austen", "bbc-news"]))
    train: TrainSection = Field(default_factory=TrainSection)
    search: SearchSection = Field(default_factory=SearchSection)
    export: ExportSection = Field(default_factory=ExportSection)
    prune: PruneSection = Field(default_factory=PruneSection)
