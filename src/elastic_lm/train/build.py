"""From a validated config to a training run: the wiring behind ``elastic-lm train``.

Each part can be passed in ready-made (tests, notebooks, a custom model); what is not passed is
built from the config: the space preset, the tokenizer and data splits (``elastic_lm.data``), the
super-network of the space seeded from ``model.source`` (``elastic_lm.convert.from_hf``) or built
from scratch, and the frozen teacher of the ``teacher`` section (prepared and cached by
:mod:`elastic_lm.teacher`).

It also wires what needs several parts at once: ELM dynamic modules (``train.dynamic``: a
``before_step`` hook, their state in every checkpoint, the model re-shaped before a resume),
progressive shrinking's ``size_fn`` / ``score_fn`` and block-wise distillation's teacher.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from elastic_lm.assets.models import model_folder
from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.train.checkpoint import latest_checkpoint, rng_state, set_rng_state
from elastic_lm.train.loop import (
    TrainResult,
    TrainSettings,
    derive_seed,
    reseed_collator,
    seed_everything,
    train_supernet,
)
from elastic_lm.train.losses import CombinedLoss
from elastic_lm.train.scoring import subnet_score_fn
from elastic_lm.train.strategies import ProgressiveShrinkingStrategy, Strategy, make_strategy


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
    dynamic: Any = None  # DynamicModules when train.dynamic is enabled

    def final_space(self) -> Any:
        """The space after training: adjusted by dynamic modules, else the configured one."""
        adjusted = getattr(self.dynamic, "space", None)
        return adjusted if adjusted is not None else self.space

    def train(self, strategy: Strategy | None = None) -> TrainResult:
        """Run the loop on these parts (``strategy`` replaces the configured one, e.g. a fixed arch)."""
        return train_supernet(
            self.model,
            strategy or self.strategy,
            self.losses,
            self.train_data,
            val_data=self.val_data,
            teacher=self.teacher,
            settings=self.settings,
            run_dir=self.run_dir,
        )


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
    # The learned projections are initialised here, before the loop seeds anything: seed them from the
    # job's seed so two runs of one config build identical losses (and resume reproduces them).
    torch.manual_seed(derive_seed(config.seed, "loss-projections"))
    return CombinedLoss(
        spec,
        n_student_layers=n_layers + 1,
        student_width=student_width,
        teacher_width=teacher_width or student_width,
    )


def fixed_batches(
    data: Sequence[Any] | None,
    collate: Callable[[list[Any]], dict[str, Any]] | None,
    n_batches: int,
    batch_size: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The first ``n_batches`` batches of ``data``, collated with every RNG seeded (same masks in
    every process and run); the global RNG states are restored, so training is not perturbed."""
    if data is None or len(data) == 0:
        return []
    collate = collate or default_collate
    saved = rng_state()
    try:
        out = []
        for b in range(n_batches):
            rows = range(b * batch_size, min(len(data), (b + 1) * batch_size))
            if len(rows) == 0:
                break
            batch_seed = derive_seed(seed, "fixed", b)
            seed_everything(batch_seed)
            reseed_collator(collate, batch_seed)
            out.append(collate([data[i] for i in rows]))
        return out
    finally:
        set_rng_state(saved)


def size_fn_from_config(model: nn.Module, kind: str = "params", seq_len: int = 128) -> Callable[[Any], float]:
    """Analytic size of a sub-network of ``model`` (read at call time: dynamic modules resize)."""
    from elastic_lm.metrics.size import count_flops, count_params

    if kind not in ("params", "flops"):
        raise ConfigError(f"train.strategy_options.size={kind!r} is unknown; use params or flops")
    if not hasattr(model, "config"):
        raise ConfigError("train.strategy_options.size needs an elastic model (with .config)")
    if kind == "flops":
        return lambda arch: float(count_flops(model.config, arch, seq_len))
    return lambda arch: float(count_params(model.config, arch))


def strategy_from_config(
    config: Config,
    space: Any,
    *,
    model: nn.Module | None = None,
    val_data: Sequence[Any] | None = None,
    collate: Callable[[list[Any]], dict[str, Any]] | None = None,
    teacher: nn.Module | None = None,
) -> Strategy:
    """``train.strategy`` with its options; the job seed unless the options set one.

    ``binned`` and ``progressive-shrinking`` get a ``size_fn`` (option ``size: params|flops``,
    analytic, of ``model``'s config; ``size_seq_len`` for FLOPs); progressive shrinking with
    ``shrink_at`` gets a ``score_fn``: the sub-network's loss on ``score_batches`` (4) fixed
    validation batches.
    """
    options = {"seed": config.seed, **config.train.strategy_options}
    name = config.train.strategy
    sizing = sorted({"size", "size_seq_len", "score_batches"} & set(options))
    if sizing and name not in ("binned", "progressive-shrinking"):
        raise ConfigError(
            f"train.strategy_options {sizing} apply to binned and progressive-shrinking only, "
            f"not {name!r}; remove them"
        )
    size_kind = options.pop("size", "params")
    seq_len = int(options.pop("size_seq_len", config.data.max_length))
    n_score = int(options.pop("score_batches", 4))
    if name in ("binned", "progressive-shrinking") and model is not None:
        options.setdefault("size_fn", size_fn_from_config(model, size_kind, seq_len))
    if name == "progressive-shrinking" and options.get("shrink_at") and model is not None:
        batches = fixed_batches(val_data, collate, n_score, config.train.batch_size, config.seed)
        label_losses = {"mlm", "clm", "classification", "regression"}
        scorer = None if label_losses & {s.name for s in config.train.losses} else teacher
        options.setdefault("score_fn", subnet_score_fn(model, batches, scorer))
    return make_strategy(name, space, **options)


def dynamic_from_config(
    config: Config, settings: TrainSettings, val_data: Sequence[Any] | None
) -> tuple[Any, list[dict[str, Any]]] | None:
    """``train.dynamic`` as ``DynamicModules`` (logging to ``RUN_DIR/train/dynamic.jsonl``) and
    its fixed probe batches from the validation split; None when not enabled."""
    from elastic_lm.train.dynamic import DynamicModules, DynamicSettings

    options = dict(config.train.dynamic)
    if not options.pop("enabled", bool(options)):
        return None
    n_probe = int(options.pop("probe_batches", 4))  # enough tokens that wide FFNs can show saturation
    probe_size = int(options.pop("probe_batch_size", settings.batch_size))
    try:
        dyn_settings = DynamicSettings.from_dict({"seed": config.seed, **options})
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"train.dynamic: {err}") from None
    dynamic = DynamicModules(dyn_settings, log_path=Path(config.run_dir) / "train" / "dynamic.jsonl")
    probe = fixed_batches(val_data, settings.collate_fn, n_probe, probe_size, config.seed)
    if not probe:
        raise ConfigError(
            "train.dynamic probes the validation split, which is empty; set data.validation_ratio > 0"
        )
    return dynamic, probe


def dynamic_hook(dynamic: Any, probe: list[dict[str, Any]]) -> Callable[..., bool]:
    """``TrainSettings.before_step``: adjust model, optimiser and the strategy's space when due."""
    on_device: dict[str, list[dict[str, Any]]] = {}

    def before_step(step: int, model: nn.Module, strategy: Any, optimizer: torch.optim.Optimizer) -> bool:
        if not dynamic.due(step):
            return False
        device = next(model.parameters()).device
        batches = on_device.setdefault(
            str(device),
            [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in probe],
        )
        adj = dynamic.maybe_adjust(
            step, model, strategy.space, batches, optimizer=optimizer, agree=_rank0_plan
        )
        if adj is None:
            return False
        if isinstance(strategy, ProgressiveShrinkingStrategy):
            strategy.reset_pool(adj.space)  # the old pool may hold removed heads
        else:
            strategy.space = adj.space
        return adj.shapes_changed

    return before_step


def _rank0_plan(changes: list[Any]) -> list[Any]:
    """Under ``torchrun``, every rank applies rank 0's plan (statistics may differ in the last
    bits between GPUs, and a different shape on one rank would break the gradient all-reduce)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return changes
    box = [changes]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _resumed_shapes(config: Config, dynamic: Any, model: nn.Module | None) -> tuple[Any, nn.Module | None]:
    """On ``--resume`` after dynamic changes: the adjusted space and the model rebuilt from the
    checkpoint's config (its ``layer_sizes``), so the saved weights fit before they are loaded."""
    ckpt = latest_checkpoint(Path(config.run_dir) / "train" / "checkpoints")
    if ckpt is None or not (ckpt / "dynamic.json").is_file():
        return None, model
    dynamic.load_state_dict(json.loads((ckpt / "dynamic.json").read_text()))
    if dynamic.space is None:  # nothing was changed before that checkpoint
        return None, model
    from elastic_lm.model import ElasticConfig, build_model

    shapes = ElasticConfig.from_pretrained(str(ckpt))
    rebuilt = type(model)(shapes) if model is not None else build_model(shapes)
    return dynamic.space, rebuilt.train()


def space_from_config(config: Config) -> Any:
    from elastic_lm.space import preset

    return preset(config.space.preset, **config.space.options)


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
        scratch = build_model(elastic)
        if config.model.dropout is not None:
            from elastic_lm.train.representation import set_dropout

            set_dropout(scratch, config.model.dropout)
        return scratch.train()
    from elastic_lm.convert import from_hf

    model = from_hf(
        model_folder(config.model.source), task=config.model.task, space=space, seed=config.seed, **extra
    )
    if config.model.dropout is not None:
        from elastic_lm.train.representation import set_dropout

        set_dropout(model, config.model.dropout)
    # decoders: most important units/heads/channels first, before training
    if config.model.decoder_importance:
        from elastic_lm.train.calibrate import reorder_from_config

        reorder_from_config(model, config)
    return model.train()


def reorder_from_config(
    config: Config, model: nn.Module, train_data: Sequence[Any], collate: Callable[..., Any] | None
) -> dict[str, Any] | None:
    """Sort heads and FFN units by ``model.importance`` measured on the training text, so each
    smaller sub-network keeps the most important units (DynaBERT, OFA, Minitron); None when off."""
    name = config.model.importance
    if name == "none":
        return None
    if config.model.source == "scratch":
        raise ConfigError(
            f"model.importance={name!r} reorders inherited weights, but model.source is scratch; "
            "set model.importance: none"
        )
    from elastic_lm.importance import importance_scores, reorder_by_importance

    n = config.model.importance_batches
    batches = fixed_batches(train_data, collate, n, config.train.batch_size, config.seed)
    return reorder_by_importance(model, importance_scores(name, model, batches))


def data_from_config(config: Config, tokenizer: Any) -> tuple[Sequence[Any], Sequence[Any], Any, int]:
    """Tokenised train / validation splits, their collator and the number of labels."""
    from elastic_lm.data.prepare import prepare_data

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
    if teacher is None and any(s.name == "blockwise" for s in config.train.losses):
        raise ConfigError(
            "train.losses has blockwise, which distils from a teacher, but teacher.source is none; "
            "set teacher.source (e.g. minilm-l6)"
        )
    space = space if space is not None else space_from_config(config)
    settings = settings_from_config(config, resume=resume, progress=progress)
    num_labels = None
    if train_data is None:
        train_data, val_split, collate, num_labels = data_from_config(config, tokenizer_from_config(config))
        val_data = val_data if val_data is not None else val_split
        settings.collate_fn = settings.collate_fn or collate
    dynamic = dynamic_from_config(config, settings, val_data)
    if dynamic is not None and resume:
        adjusted, model = _resumed_shapes(config, dynamic[0], model)
        space = adjusted if adjusted is not None else space
    if model is None:
        model = model_from_config(config, space, num_labels)
        if not resume:
            reorder_from_config(config, model, train_data, settings.collate_fn)
    if dynamic is not None:
        settings.before_step = dynamic_hook(*dynamic)
        settings.extra_state = {**(settings.extra_state or {}), "dynamic": dynamic[0]}
    largest = space.largest()
    teacher_width = getattr(getattr(teacher, "config", None), "hidden_size", None)
    losses = losses_from_config(
        config, n_layers=len(largest.layers), student_width=largest.hidden, teacher_width=teacher_width
    )
    strategy = strategy_from_config(
        config, space, model=model, val_data=val_data, collate=settings.collate_fn, teacher=teacher
    )
    return TrainingParts(
        model=model,
        space=space,
        strategy=strategy,
        losses=losses,
        train_data=train_data,
        val_data=val_data,
        teacher=teacher,
        settings=settings,
        run_dir=Path(config.run_dir),
        dynamic=None if dynamic is None else dynamic[0],
    )


def train_from_config(config: Config, **parts: Any) -> TrainResult:
    """Build the parts (see :func:`build_training`) and train; three lines from Python.

    The result carries the trained ``model`` (a new object when a resume re-shaped it) and the
    ``space`` after training (adjusted by dynamic modules): save that one for the search.
    """
    p = build_training(config, **parts)
    result = p.train()
    result.model, result.space = p.model, p.final_space()
    return result


__all__ = [
    "TrainingParts",
    "build_training",
    "data_from_config",
    "dynamic_from_config",
    "dynamic_hook",
    "fixed_batches",
    "losses_from_config",
    "model_folder",
    "model_from_config",
    "reorder_from_config",
    "settings_from_config",
    "size_fn_from_config",
    "space_from_config",
    "strategy_from_config",
    "subnet_score_fn",
    "tokenizer_from_config",
    "train_from_config",
]
