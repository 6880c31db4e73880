"""From a validated config to a training run: the wiring behind ``elastic-lm train``.

Each part can be passed in ready-made (tests, notebooks, a custom model); what is not passed is
built from the config: the space preset, the tokenizer and data splits (``elastic_lm.data``), the
super-network of the space seeded from ``model.source`` (``elastic_lm.convert.from_hf``) or built
from scratch, and the frozen teacher of the ``teacher`` section (prepared and cached by
:mod:`elastic_lm.teacher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.train.loop import TrainResult, TrainSettings, train_supernet
from elastic_lm.train.losses import CombinedLoss
from elastic_lm.train.strategies import Strategy, make_strategy


@dataclass
class TrainingParts:
    """Everything ``train_supernet`` needs, built from one config."""

    model: nn.Module
    space: Any
    strategy: Strategy
    losses: CombinedLoss
    train_data: Sequence[Any]
    val_data: Sequence[Any] | None
    teacher: nn.Module | None
    settings: TrainSettings
    run_dir: Path


def settings_from_config(config: Config, *, resume: bool = False, progress: bool = True) -> TrainSettings:
    """The loop's settings: the ``train`` section plus the job's seed and device."""
    return TrainSettings.from_config(
        config.train, seed=config.seed, device=config.device, resume=resume, progress=progress
    )


def losses_from_config(
    config: Config, *, n_layers: int, student_width: int, teacher_width: int | None = None
) -> CombinedLoss:
    """``train.losses`` as a CombinedLoss; projections map student widths to the teacher's.

    ``n_layers`` counts layer positions; hidden states hold the embedding output too, hence +1.
    """
    spec = [{"name": s.name, "weight": s.weight, **s.options} for s in config.train.losses]
    return CombinedLoss(
        spec,
        n_student_layers=n_layers + 1,
        student_width=student_width,
        teacher_width=teacher_width or student_width,
    )


def strategy_from_config(config: Config, space: Any) -> Strategy:
    """``train.strategy`` with its options; the job seed unless the options set one."""
    options = {"seed": config.seed, **config.train.strategy_options}
    return make_strategy(config.train.strategy, space, **options)


def space_from_config(config: Config) -> Any:
    from elastic_lm.space import preset

    return preset(config.space.preset, **config.space.options)


def model_folder(source: str) -> Path:
    """The Hugging Face folder ``model.source`` names: an asset (SmolLM2 converted once) or a path."""
    from elastic_lm.assets.registry import ASSETS

    if source == "smollm2-135m":
        from elastic_lm.assets.smollm2 import smollm2_path

        return smollm2_path()
    if source in ASSETS:
        return ASSETS[source].require()
    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"model.source={source!r} is neither a known asset ({', '.join(ASSETS)}) nor a folder "
            "with config.json; give an asset name or a Hugging Face model folder"
        )
    return folder


def tokenizer_from_config(config: Config) -> Any:
    """``model.tokenizer`` when set, else the source model's own tokenizer."""
    from transformers import AutoTokenizer

    name = config.model.tokenizer or config.model.source
    if name == "scratch":
        raise ConfigError(
            "model.source=scratch needs model.tokenizer (an asset such as minilm-l6, or a folder)"
        )
    return AutoTokenizer.from_pretrained(str(model_folder(name)))


def model_from_config(config: Config, space: Any, num_labels: int | None = None) -> nn.Module:
    """The super-network of ``space``: seeded from ``model.source`` where it has the weights.

    Block types the source lacks (MobileBERT next to MiniLM's BERT blocks) start from the model's own
    seeded initialisation; ``model.source: scratch`` initialises everything, with the vocabulary of
    ``model.tokenizer``.
    """
    extra: dict[str, Any] = {}
    if config.model.task == "sequence-classification":
        extra["num_labels"] = num_labels or config.model.num_labels
    if config.model.source == "scratch":
        from elastic_lm.model import ElasticConfig, build_model

        vocab = len(tokenizer_from_config(config))
        elastic = ElasticConfig.from_space(space, vocab_size=vocab, task=config.model.task, **extra)
        torch.manual_seed(config.seed)
        return build_model(elastic).train()
    from elastic_lm.convert import from_hf

    model = from_hf(
        model_folder(config.model.source), task=config.model.task, space=space, seed=config.seed, **extra
    )
    return model.train()


def data_from_config(config: Config, tokenizer: Any) -> tuple[Sequence[Any], Sequence[Any], Any, int]:
    """Tokenised train / validation splits, their collator and the number of labels."""
    from elastic_lm.data.pipeline import prepare_data

    prepared = prepare_data(config.data, tokenizer)
    return prepared.splits["train"], prepared.splits["validation"], prepared.collator, prepared.num_labels


def build_training(
    config: Config,
    *,
    model: nn.Module | None = None,
    space: Any = None,
    train_data: Sequence[Any] | None = None,
    val_data: Sequence[Any] | None = None,
    teacher: nn.Module | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainingParts:
    """Assemble the parts; the caller's parts win over the config."""
    if teacher is None and config.teacher.source != "none":
        from elastic_lm.teacher import load_teacher, teacher_folder

        teacher = load_teacher(teacher_folder(config, progress=progress), config.model.task)
    space = space if space is not None else space_from_config(config)
    settings = settings_from_config(config, resume=resume, progress=progress)
    num_labels = None
    if train_data is None:
        train_data, val_split, collate, num_labels = data_from_config(config, tokenizer_from_config(config))
        val_data = val_data if val_data is not None else val_split
        settings.collate_fn = settings.collate_fn or collate
    if model is None:
        model = model_from_config(config, space, num_labels)
    largest = space.largest()
    teacher_width = getattr(getattr(teacher, "config", None), "hidden_size", None)
    losses = losses_from_config(
        config, n_layers=len(largest.layers), student_width=largest.hidden, teacher_width=teacher_width
    )
    return TrainingParts(
        model=model,
        space=space,
        strategy=strategy_from_config(config, space),
        losses=losses,
        train_data=train_data,
        val_data=val_data,
        teacher=teacher,
        settings=settings,
        run_dir=Path(config.run_dir),
    )


def train_from_config(config: Config, **parts: Any) -> TrainResult:
    """Build the parts (see :func:`build_training`) and train; three lines from Python."""
    p = build_training(config, **parts)
    return train_supernet(
        p.model,
        p.strategy,
        p.losses,
        p.train_data,
        val_data=p.val_data,
        teacher=p.teacher,
        settings=p.settings,
        run_dir=p.run_dir,
    )


__all__ = [
    "TrainingParts",
    "build_training",
    "data_from_config",
    "losses_from_config",
    "model_folder",
    "model_from_config",
    "settings_from_config",
    "space_from_config",
    "strategy_from_config",
    "tokenizer_from_config",
    "train_from_config",
]
