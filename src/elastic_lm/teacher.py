"""Teachers for distillation: a frozen model, prepared once and cached by everything that shaped it.

MiniLM-L6 ships without a trained MLM head and with contrastively tuned token states, so before its
masked-LM outputs mean anything it is re-trained on masked LM (the whole model, a few hundred steps);
that result is cached under ``cache_dir()/teachers/`` keyed by the source, the data and the settings,
so every later run (and every recipe using the same data) reuses it. Decoders such as SmolLM2 teach
as they are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elastic_lm.assets import cache_dir
from elastic_lm.config import Config
from elastic_lm.io import atomic_directory, atomic_write_json

if TYPE_CHECKING:
    from elastic_lm.model.modeling import ElasticPreTrainedModel

_TEACHER_FORMAT = 1  # bump when the preparation changes, so stale caches are not reused


def teacher_folder(config: Config, *, progress: bool = True) -> Path | None:
    """The folder of the prepared teacher (re-trained and cached when asked), or None for no teacher."""
    source = config.teacher.source
    if source == "none":
        return None
    from elastic_lm.assets.models import model_folder

    base = model_folder(source)
    if config.teacher.retrain_steps == 0:
        return base
    target = cache_dir() / "teachers" / f"{Path(source).name}-mlm-{_preparation_key(config, base)}"
    if (target / "teacher.json").is_file():
        return target
    with atomic_directory(target) as staging:
        summary = _retrain_mlm(config, base, staging, progress=progress)
        atomic_write_json(staging / "teacher.json", summary)
    return target


def load_teacher(folder: str | Path, task: str) -> ElasticPreTrainedModel:
    """A frozen teacher in eval mode (elastic-lm folders and Hugging Face folders alike)."""
    from elastic_lm.convert import from_hf
    from elastic_lm.model import TASK_MODELS, ElasticConfig

    config_file = Path(folder) / "config.json"
    saved_type = json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
    if saved_type == ElasticConfig.model_type:
        model = TASK_MODELS[task].from_pretrained(str(folder))
    else:
        model = from_hf(str(folder), task=task)
    model.eval()
    model.requires_grad_(False)
    return model


def _preparation_key(config: Config, base: Path) -> str:
    recipe: dict[str, Any] = {
        "format": _TEACHER_FORMAT,
        "source": config.teacher.source,
        "base": str(base.resolve()),
        "teacher": config.teacher.model_dump(mode="json"),
        "data": config.data.model_dump(mode="json"),
        "seed": config.seed,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _retrain_mlm(config: Config, base: Path, out: Path, *, progress: bool) -> dict[str, Any]:
    """Masked-LM re-training of the whole teacher; saves it into ``out``; returns a summary."""
    from transformers import AutoTokenizer

    from elastic_lm.convert import from_hf
    from elastic_lm.data.prepare import prepare_data
    from elastic_lm.train.loop import TrainSettings
    from elastic_lm.train.single import train_one_model

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    data = prepare_data(config.data.model_copy(update={"task": "mlm"}), tokenizer)
    model = from_hf(str(base), task="masked-lm")
    largest = model.backbone.largest()
    settings = TrainSettings(
        steps=config.teacher.retrain_steps,
        batch_size=config.teacher.batch_size,
        learning_rate=config.teacher.learning_rate,
        warmup_fraction=0.1,
        seed=config.seed,
        device=config.device,
        checkpoint_every=config.teacher.retrain_steps,
        eval_every=config.teacher.retrain_steps,
        eval_archs={"largest": largest},
        keep_checkpoints=1,
        progress=progress,
        tensorboard=False,
        collate_fn=data.collator,
    )
    run = out / "retraining"
    result = train_one_model(
        model,
        [{"name": "mlm"}],
        data.splits["train"],
        val_data=data.splits["validation"],
        settings=settings,
        run_dir=run,
    )
    model.reset()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(run, ignore_errors=True)
    return {
        "source": config.teacher.source,
        "steps": config.teacher.retrain_steps,
        "validation": result.val,
        "final_train_loss": result.losses[-1] if result.losses else None,
    }
