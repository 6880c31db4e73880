"""Export-time healing of encoder members: distil each chosen member alone, then re-fit it.

Every member of a trained super-network shares its weights with all the others, so each is a
compromise between them. At the cpu budget a hand-designed baseline distilled alone for the same
number of steps kept more of the teacher's sentence embedding than the searched members of about
its size (docs/benchmarks.md). ``export.distil_steps`` gives each exported member that chance: a
copy of the trained super-network trains the member's architecture alone with the run's own losses
and teacher (:class:`~elastic_lm.train.strategies.FixedSpace`), starting from the shared weights;
``export.reconstruct`` then re-fits its output projections by least squares (:mod:`.reconstruct`).
The super-network itself is never changed.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError

Tune = Callable[[Any, Any], Any]


def distil_member(
    config: Config, model: Any, arch: Any, steps: int, *, teacher: Any, train_data: Any, collate: Any
) -> Any:
    """A copy of ``model`` whose sub-network ``arch`` was distilled alone for ``steps`` steps with
    ``config.train``'s losses, batch size, learning rate and schedule (no dynamic modules, no
    validation, one checkpoint in a scratch folder)."""
    from elastic_lm.train.build import build_training
    from elastic_lm.train.strategies import FixedSpace, StandardStrategy

    fitted = copy.deepcopy(model)
    train = config.train.model_copy(
        update={"steps": steps, "checkpoint_every": steps, "eval_every": steps, "dynamic": {}}
    )
    with tempfile.TemporaryDirectory(prefix="elastic-lm-distil-") as scratch:
        local = config.model_copy(update={"run_dir": Path(scratch) / "run", "train": train})
        parts = build_training(
            local, model=fitted, teacher=teacher, train_data=train_data, val_data=[], progress=False
        )
        parts.settings.collate_fn = collate
        parts.train(StandardStrategy(FixedSpace(arch), seed=config.seed, target="teacher"))
    return fitted.eval()


def member_tuner(config: Config) -> Tune | None:
    """``tune(model, arch)`` for the export, from ``export.distil_steps`` and ``export.reconstruct``
    (None when both are off). The teacher and the training batches are loaded once for all members."""
    section = config.export
    if not section.distil_steps and not section.reconstruct:
        return None
    from elastic_lm.heal.reconstruct import reconstruct_layers, teacher_prenorm_states
    from elastic_lm.teacher import load_teacher, teacher_folder
    from elastic_lm.train.build import data_from_config, fixed_batches, tokenizer_from_config

    folder = teacher_folder(config, progress=False)
    if folder is None:
        wanted = {"distil_steps": section.distil_steps, "reconstruct": section.reconstruct}
        fields = " and ".join(f"export.{name}" for name, on in wanted.items() if on)
        raise ConfigError(f"{fields} need a teacher; set teacher.source (e.g. minilm-l6)")
    teacher = load_teacher(folder, config.model.task)
    train, _, collate, _ = data_from_config(config, tokenizer_from_config(config))
    batches, states = None, None
    if section.reconstruct:
        size = config.train.batch_size
        batches = fixed_batches(train, collate, section.reconstruct_batches, size, config.seed)
        states = teacher_prenorm_states(teacher, batches)

    def tune(model: Any, arch: Any) -> Any:
        if section.distil_steps:
            fitted = distil_member(
                config, model, arch, section.distil_steps, teacher=teacher, train_data=train, collate=collate
            )
        else:
            fitted = copy.deepcopy(model)
        if batches is not None:
            reconstruct_layers(fitted, arch, teacher, batches, states=states)
        return fitted

    return tune


__all__ = ["Tune", "distil_member", "member_tuner"]
