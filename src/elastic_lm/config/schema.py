"""The configuration schema: one pydantic model per pipeline stage, composed into :class:`Config`.

Every section forbids unknown keys, so a typo is an error that names the key and the allowed ones rather
than a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from elastic_lm.config.prune_schema import PruneSection
from elastic_lm.config.section import Section
from elastic_lm.data.config import DataConfig

Task = Literal["masked-lm", "causal-lm", "sequence-classification"]
Pipeline = Literal["nas", "prune", "decoder"]
Share = Annotated[float, Field(gt=0, le=1)]  # a share of the largest member's size (0.5, not 50)


class ModelSection(Section):
    """Where the super-network comes from."""

    source: str = Field(
        "minilm-l6",
        description="an asset name (see 'elastic-lm assets'), a local Hugging Face folder, or 'scratch'",
    )
    task: Task = "masked-lm"
    num_labels: PositiveInt = 2
    tokenizer: str | None = Field(None, description="asset or folder; default: the source's own")
    importance: Literal["none", "activation", "magnitude", "gradient"] = Field(
        "none", description="reorder heads and FFN units by this score before training (most important first)"
    )
    importance_batches: PositiveInt = Field(4, description="training batches the importance is measured on")
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="dropout of the super-network while it trains; None: the source's. 0 for "
        "representation distillation, so the largest member stays exactly the teacher",
    )
    decoder_importance: list[Literal["ffn", "heads", "hidden"]] = Field(
        default_factory=list,
        description="decoders: reorder the seeded super-network by these decoder scores (measured on "
        "the training text) before anything trains or is searched; empty: keep the source's order",
    )


class SpaceSection(Section):
    """Which search space the super-network covers."""

    preset: str = "elm"
    options: dict[str, Any] = Field(default_factory=dict, description="preset shape overrides")


class TeacherSection(Section):
    """The external teacher for distillation, and its one-time preparation (cached)."""

    source: str = Field(
        "none", description="'none', an asset name (minilm-l6, smollm2-135m) or a Hugging Face folder"
    )
    retrain_steps: int = Field(
        0,
        ge=0,
        description="steps of masked-LM re-training of the whole teacher first (MiniLM-L6 has no MLM "
        "head); 0 uses it as it is",
    )
    batch_size: PositiveInt = 32
    learning_rate: float = Field(1e-4, gt=0)


class LossSpec(Section):
    name: str
    weight: float = 1.0
    options: dict[str, Any] = Field(default_factory=dict)


class TrainSection(Section):
    """Super-network training."""

    steps: NonNegativeInt = Field(
        200, description="0: no training; the super-network is the (reordered) source model as it is"
    )
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
    checkpoint_every: PositiveInt = 100
    eval_every: PositiveInt = 100
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    keep_checkpoints: PositiveInt = 3
    eval_batches: PositiveInt = 8
    masked_logits: bool = Field(
        True, description="MLM logits only at the masked positions when no loss reads others"
    )
    dynamic: dict[str, Any] = Field(
        default_factory=dict,
        description="ELM dynamic modules: {enabled: true, every, start, stop, increment, max_params, "
        "cka_threshold, ..., probe_batches, probe_batch_size} (see docs/dynamic-modules.md)",
    )


class ProfileSection(Section):
    """Latency on this machine: which sub-networks to time, how, and which predictors to fit."""

    enabled: bool | None = Field(
        None, description="None: only when an objective or constraint needs latency_pred_ms"
    )
    samples: PositiveInt = 48
    held_out: int = Field(16, ge=2)
    batch_size: PositiveInt = 1
    seq_len: PositiveInt = 128
    threads: PositiveInt | None = 1
    device: Literal["cpu", "cuda"] = "cpu"
    backend: Literal["torch", "onnxruntime"] = "torch"
    repeats: PositiveInt = 15
    warmup: int = Field(3, ge=0)
    clock: Literal["wall", "thread"] = "wall"


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
    front_bins: int = Field(
        8,
        ge=0,
        description="the search first evaluates one member per bin of non-embedding size, so the front "
        "reaches every size (at most half the trials; 0: none; the prune pipeline has prune.front_bins)",
    )
    uniform_shares: list[Share] = Field(
        default_factory=list,
        description="the search also first evaluates, per share of the largest member's size (e.g. "
        "[0.25, 0.5, 0.75]), the biggest member with every layer alike at or under it: the uniformly "
        "narrower shapes a user would make by hand, so the front starts from them",
    )
    latency_batch_size: PositiveInt = 1
    latency_seq_len: PositiveInt = 128
    latency_threads: PositiveInt | None = 1
    latency_repeats: PositiveInt = 10
    decode_prompt_len: PositiveInt = Field(32, description="prompt tokens for decode / prefill latency")
    decode_new_tokens: PositiveInt = Field(32, description="generated tokens for decode_ms_per_token")


class ExportSection(Section):
    """Which sub-networks become standalone models, and in which formats."""

    pareto: bool = True
    max_models: PositiveInt = 8
    onnx: bool = False
    budget_marks: list[Share] = Field(
        default_factory=list,
        description="shares of the largest member's size (e.g. [0.25, 0.5, 0.75]): the best member "
        "at or under each is always exported, whatever max_models",
    )
    reconstruct: bool = Field(
        False, description="re-fit each exported member's output projections to the teacher (least squares)"
    )
    reconstruct_batches: PositiveInt = Field(16, description="training batches the re-fit reads")
    distil_steps: int = Field(
        0,
        ge=0,
        description="encoders: steps each exported member is distilled alone from the trained super-network "
        "with train.losses before the re-fit (0: none; docs/training.md)",
    )


class EvalTask(DataConfig):
    """One downstream classification task: a ``data`` entry (asset or your file) plus a display name.

    ``max_length`` / ``max_examples`` left empty take the evaluate section's values, so every task
    runs under the same budget unless a task says otherwise.
    """

    name: str | None = Field(None, description="column name in the table; default: the source's name")
    task: Literal["classification"] = "classification"
    max_length: int | None = Field(None, gt=1, description="default: evaluate.max_length")  # type: ignore[assignment]

    @property
    def display_name(self) -> str:
        """``name``, else the asset name or the file's stem."""
        if self.name:
            return self.name
        source = self.source if isinstance(self.source, str) else self.source[0]
        return Path(source).stem or source

    def data_config(self, max_length: int, max_examples: int | None) -> DataConfig:
        """The plain ``DataConfig`` to prepare, with the section's budget filled in."""
        fields = self.model_dump(exclude={"name"})
        fields["max_length"] = self.max_length or max_length
        fields["max_examples"] = self.max_examples or max_examples
        return DataConfig(**fields)


def _default_eval_tasks() -> list[EvalTask]:
    return [EvalTask(source="movie-sentiment"), EvalTask(source="sms-spam")]


def _default_probe_tasks() -> list[EvalTask]:
    return [EvalTask(source=name) for name in ("movie-sentiment", "sms-spam", "bbc-topic")]


class EmbeddingEvalSection(Section):
    """Encoders as sentence-embedding models: retrieval, fidelity to the teacher, linear probes.

    See docs/evaluate.md; results go to ``evaluate/embedding.json`` and the report's table.
    """

    enabled: bool | None = Field(None, description="None: on for encoder runs (model.task masked-lm)")
    retrieval_pairs: int = Field(2000, ge=10, description="held-out movie-dialog pairs (seeded)")
    probe_tasks: list[EvalTask] = Field(default_factory=_default_probe_tasks)
    probe_max_examples: PositiveInt | None = Field(2000, description="seeded subsample of each probe task")
    probe_c: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regression")
    max_length: int = Field(128, gt=1, description="tokens per text (capped by the source's own limit)")
    batch_size: PositiveInt = 64
    teacher: str | None = Field(
        None, description="asset or folder; default teacher.source, else model.source"
    )
    pooling: Literal["auto", "mean", "cls", "max", "mean_sqrt_len"] = Field(
        "auto", description="auto: as the source's sentence-transformers config says (else mean)"
    )
    normalize: bool | None = Field(None, description="None: as the source says (else true)")
    max_models: PositiveInt | None = Field(None, description="None: every exported model")


class EvaluateSection(Section):
    """Downstream evaluation of the exported models (the papers' GLUE-style tables).

    Encoders are fine-tuned on every task with the same fixed, seeded budget; decoders get held-out
    perplexity on ``data`` (as causal LM) and greedy samples of ``prompts``. The defaults fit a
    2-core CPU (``quick``); raise ``steps`` and ``max_examples`` for numbers worth quoting.
    """

    enabled: bool = True
    tasks: list[EvalTask] = Field(default_factory=_default_eval_tasks, min_length=1)
    steps: PositiveInt = Field(60, description="fine-tuning steps per model and task")
    batch_size: PositiveInt = 16
    learning_rate: float = Field(1e-4, gt=0)
    max_length: int = Field(64, gt=1, description="tokens per example (and per perplexity block)")
    max_examples: PositiveInt | None = Field(1024, description="seeded subsample of each task / corpus")
    prompts: list[str] = Field(
        default_factory=lambda: ["The house was", "She said that"],
        description="decoders: greedy continuations shown in the table",
    )
    max_new_tokens: PositiveInt = 20
    models: Literal["all", "pareto"] = Field(
        "all", description="every model in export/index.json, or only current Pareto members"
    )
    max_models: NonNegativeInt = Field(
        4,
        description="exported models to fine-tune (encoders) or score by perplexity (decoders), in "
        "index order; 0: none (the embedding evaluation still scores every exported encoder)",
    )
    references: list[str] = Field(
        default_factory=list,
        description="extra models to evaluate alongside (asset names or folders), e.g. the source",
    )
    embedding: EmbeddingEvalSection = Field(default_factory=EmbeddingEvalSection)


class HealSection(Section):
    """Healing by distillation (decoder recipe): chosen members trained from the full model, re-evaluated.

    The budget is ``tokens`` and / or ``minutes`` (whichever ends first), the same for every member,
    baseline and the teacher itself (so adapting to the corpus is not counted as compression).
    """

    enabled: bool = True
    targets: list[float] = Field(
        default_factory=list,
        description="fractions of the teacher's non-embedding parameters (e.g. [0.75, 0.6]): heal the "
        "Pareto member with the best quality objective at or under each; empty: every exported member",
    )
    tokens: PositiveInt | None = Field(20000, description="training tokens per model (None: no limit)")
    minutes: float | None = Field(None, gt=0, description="wall-clock minutes per model (None: no limit)")
    batch_size: PositiveInt = 4
    max_length: PositiveInt | None = Field(None, description="tokens per sequence; default data.max_length")
    learning_rate: float = Field(1e-4, gt=0)
    top_k: PositiveInt | None = Field(64, description="topk-kd keeps the teacher's k largest logits")
    losses: list[LossSpec] = Field(
        default_factory=lambda: [LossSpec(name="topk-kd"), LossSpec(name="clm", weight=0.5)],
        description="logit-kd / topk-kd / clm / relational / hidden-state ... (train.losses names)",
    )
    baselines: bool = Field(False, description="also heal layer dropping (ShortGPT) and uniform width")
    layer_score: Literal["block", "removal_perplexity"] = "block"
    teacher: bool = Field(True, description="also train the full model with the same budget (ppl ratios)")
    teacher_correction: bool = Field(
        False,
        description="heal the teacher first, then distil every member and baseline from the healed "
        "teacher instead of the source model (Minitron's teacher correction); needs heal.teacher",
    )
    eval_batches: PositiveInt = Field(16, description="test-split batches for perplexity")
    importance_batches: PositiveInt = Field(4, description="batches for the baselines' block scores")
    timing_repeats: PositiveInt = Field(
        5, description="rounds of the final decode timing (every healed model once per round, median)"
    )

    @model_validator(mode="after")
    def _correction_needs_the_teacher(self) -> HealSection:
        """Checked with the config, not at the heal stage an hour later."""
        if self.teacher_correction and not self.teacher:
            raise ValueError("teacher_correction needs heal.teacher: true (its target is the healed model)")
        return self


class Config(Section):
    """A whole job: every command reads the sections it needs from this one object."""

    run_dir: Path = Path("runs/default")
    budget: str | None = Field(None, description="the named budget of the recipe that was applied")
    pipeline: Pipeline = Field(
        "nas",
        description="what 'elastic-lm run' does: 'nas' (teacher, train, profile, search, export, evaluate, "
        "report), 'prune' (the stages of 'elastic-lm prune', then the report) or 'decoder' (nas with a heal "
        "stage after export, and no downstream evaluate); omitted: 'prune' when "
        "model.task is sequence-classification and the config has a prune section, else 'nas'",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelSection = Field(default_factory=ModelSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    space: SpaceSection = Field(default_factory=SpaceSection)
    data: DataConfig = Field(default_factory=lambda: DataConfig(source=["austen", "bbc-news"]))
    train: TrainSection = Field(default_factory=TrainSection)
    profile: ProfileSection = Field(default_factory=ProfileSection)
    search: SearchSection = Field(default_factory=SearchSection)
    export: ExportSection = Field(default_factory=ExportSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    prune: PruneSection = Field(default_factory=PruneSection)
    heal: HealSection = Field(default_factory=HealSection)

    @model_validator(mode="before")
    @classmethod
    def _infer_pipeline(cls, data: Any) -> Any:
        """Fill in an omitted ``pipeline`` (so the saved ``config.yaml`` states what was run)."""
        if not isinstance(data, dict) or data.get("pipeline") is not None:
            return data
        model = data.get("model")
        task = model.get("task") if isinstance(model, dict) else getattr(model, "task", None)
        pruning = task == "sequence-classification" and data.get("prune") is not None
        return {**data, "pipeline": "prune" if pruning else "nas"}
