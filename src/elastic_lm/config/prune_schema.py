"""The ``prune`` section: structural pruning of a fine-tuned model (NAS and retraining-free modes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from elastic_lm.config.section import Section


class VocabularySection(Section):
    """Vocabulary pruning of exported models: keep the embedding rows the task's data uses."""

    enabled: bool = False
    reserve: int = Field(
        0, ge=0, description="also keep this many of the most frequent other tokens (0: only used ones)"
    )
    min_count: PositiveInt = Field(1, description="a token must occur this often in train+validation")


class PostTrainingSection(Section):
    """``prune.mode: post-training`` (Kwon et al. 2022): Fisher masks, rearrangement, least-squares tuning."""

    examples: PositiveInt = Field(512, description="labelled training rows for Fisher scores and mask tuning")
    targets: list[float] = Field(
        default_factory=lambda: [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
        description="kept shares of the heads' and FFN units' cost (params or FLOPs): one model each",
    )
    constraint: Literal["params", "flops"] = "params"
    rearrange: bool = Field(True, description="swap kept / pruned units inside a layer (Fisher block)")
    tune: bool = Field(True, description="least-squares mask tuning, layer by layer")


class PruneSection(Section):
    """``elastic-lm prune``: fine-tune, reorder, train the super-network, search, export, baselines.

    Evaluation batch size and latency settings are the ``search`` section's (one place for them).
    """

    mode: Literal["nas", "post-training"] = Field(
        "nas", description="nas: super-network + search; post-training: retraining-free masks (Kwon et al.)"
    )
    finetune_steps: int = Field(200, ge=0, description="fine-tuning of the full model; 0 skips it")
    finetune_learning_rate: float = Field(5e-5, gt=0)
    importance: Literal["gradient", "fisher", "activation", "magnitude"] = Field(
        "gradient",
        description="score that orders heads and FFN units after fine-tuning (elastic_lm.importance.SCORES)",
    )
    importance_batches: PositiveInt = 8
    size_objective: Literal["params", "params_nonembedding", "latency_ms"] = "params_nonembedding"
    quality_objective: Literal["accuracy", "f1", "loss"] = "accuracy"
    adapt_small_data: bool = Field(
        True, description="tiny sets: at least 100 validation rows, at most 20 epochs (with a warning)"
    )
    front_bins: int = Field(8, ge=0, description="search first evaluates one member per size bin")
    front_max_gap: float = Field(
        0.15, gt=0, le=1, description="export fills gaps of the front wider than this share of the size range"
    )
    warm_start: bool = Field(
        False,
        description="NAS mode: the search first evaluates, per post_training.targets share, the member "
        "keeping most Fisher importance (the retraining-free mode's answer in the search space)",
    )
    keep_tied: bool = Field(
        True,
        description="export also members whose validation accuracy interval overlaps the best of about "
        "their size (within export.max_models)",
    )
    baselines: bool = False
    baseline_fractions: list[float] = Field(
        default_factory=lambda: [0.33, 0.5, 0.67], description="kept fractions of layers / heads / widths"
    )
    baseline_steps: int | None = Field(None, ge=0, description="steps per baseline model; None: train.steps")
    refine_steps: int = Field(0, ge=0, description="NAS mode: steps each export trains alone; 0: off")
    refine_max_epochs: float | None = Field(
        None,
        gt=0,
        description="refine only when the super-network's training saw each training row at most this "
        "many times (train.steps x batch / rows); more often, it has fit the set already. None: always",
    )
    refine_max_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="refine only members with at most this share of the full model's non-embedding "
        "parameters (the largest are trained every step already)",
    )
    vocabulary: VocabularySection = Field(default_factory=VocabularySection)
    post_training: PostTrainingSection = Field(default_factory=PostTrainingSection)


__all__ = ["PostTrainingSection", "PruneSection", "VocabularySection"]
