"""From a validated config to a training run: the wiring behind ``elastic-lm train``.

Each part can be passed in ready-made (tests, notebooks, a custom model); what is not passed is
built from the config: the space preset, the tokenizer and data splits (``elastic_lm.data``), the
super-network converted from ``model.source`` (``elastic_lm.convert.from_hf``). Parts not wired
yet (``model.source: scratch``, an external teacher) raise a one-line UserError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError, UserError
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
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_folder(config.model.source)))


def model_from_config(config: Config, space: Any, num_labels: int | None = None) -> nn.Module:
    """The super-network: the source model converted in at full size, with the space's block types.

    Block types without weights in the source (e.g. MobileBERT blocks for a BERT source) are not
    supported by the converter yet; use a space whose blocks the source has (``blocks: [bert]``).
    """
    if config.model.source == "scratch":
        raise _not_wired("model", "model.source", "scratch")
    from elastic_lm.convert import from_hf

    n_layers = len(space.largest().layers)
    overrides: dict[str, Any] = {"block_candidates": [list(space.block_types(i)) for i in range(n_layers)]}
    if config.model.task == "sequence-classification":
        overrides["num_labels"] = num_labels or config.model.num_labels
    model = from_hf(model_folder(config.model.source), task=config.model.task, **overrides)
    return model.train()


def data_from_config(config: Config, tokenizer: Any) -> tuple[Sequence[Any], Sequence[Any], Any, int]:
    """Tokenised train / validation splits, their collator and the number of labels."""
    from elastic_lm.data.pipeline import prepare_data

    prepared = prepare_data(config.data, tokenizer)
    return prepared.splits["train"], prepared.splits["validation"], prepared.collator, prepared.num_labels


def _not_wired(what: str, field: str, value: object) -> UserError:
    return UserError(
        f"{field}={value!r}: building the {what} from the config is not available in this version "
        f"yet; call elastic_lm.train.build.train_from_config(config, {what.replace(' ', '_')}=...) "
        "from Python"
    )


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
    if model is None and config.model.source == "scratch":  # fail before the slow parts
        raise _not_wired("model", "model.source", "scratch")
    if teacher is None and config.train.teacher not in ("self", "none"):
        # TODO(lead): load the teacher asset / folder (converters), frozen.
        raise _not_wired("teacher", "train.teacher", config.train.teacher)
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
