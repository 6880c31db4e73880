"""The trained super-network as one folder: the hand-over from training to search, export, profile.

``RUN_DIR/train/supernet/`` holds a ``save_pretrained`` folder of an ``ElasticFor*`` model, the
tokenizer's files and ``space.json`` (``SearchSpace.to_dict()``), so a later stage needs nothing
but the folder: no config, no re-conversion, no guessing which space was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elastic_lm.errors import CheckpointError
from elastic_lm.io import atomic_directory

SPACE_FILE = "space.json"


def supernet_folder(run_dir: str | Path) -> Path:
    """Where training leaves the super-network in a run directory."""
    return Path(run_dir) / "train" / "supernet"


def save_supernet(
    model: Any, tokenizer: Any, space: Any, folder: str | Path, provenance: dict[str, Any] | None = None
) -> Path:
    """Write model, tokenizer and search space to ``folder`` atomically (all or nothing).

    The model is saved with its full (reset) architecture selected, so weights are never sliced.
    ``provenance`` (where the weights came from, their licence) goes to ``provenance.json``, which
    ``elastic-lm export`` copies into model cards.
    """
    if hasattr(model, "reset"):
        model.reset()
    with atomic_directory(folder) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        (staging / SPACE_FILE).write_text(json.dumps(space.to_dict(), indent=2, sort_keys=True) + "\n")
        if provenance is not None:
            (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return Path(folder)


def load_supernet(folder: str | Path) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, space)`` from a folder written by :func:`save_supernet`; model in eval mode."""
    from transformers import AutoConfig, AutoTokenizer

    from elastic_lm.model import TASK_MODELS
    from elastic_lm.space import SearchSpace

    path = Path(folder)
    missing = [n for n in ("config.json", SPACE_FILE) if not (path / n).is_file()]
    if missing:
        raise CheckpointError(
            f"{path} is not a saved super-network ({', '.join(missing)} missing); run "
            "'elastic-lm train CONFIG' first (it writes RUN_DIR/train/supernet)"
        )
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", None) != "elastic-lm":
        raise CheckpointError(
            f"{path}/config.json has model_type={getattr(config, 'model_type', None)!r}; "
            "expected an elastic-lm super-network (model_type 'elastic-lm')"
        )
    model = TASK_MODELS[config.task].from_pretrained(path).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        tokenizer = None  # a super-network saved without a tokenizer (e.g. from a test)
    space = SearchSpace.from_dict(json.loads((path / SPACE_FILE).read_text()))
    return model, tokenizer, space
