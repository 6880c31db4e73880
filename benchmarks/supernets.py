"""Shared by the benchmarks that train a super-network once and reuse it from disk on reruns."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from elastic_lm.export.supernet import load_supernet, save_supernet
from elastic_lm.io import atomic_write_json
from elastic_lm.train.build import tokenizer_from_config, train_from_config


def cached_supernet(
    config: Any, folder: Path, info_file: Path, info: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, space, summary) of ``config``'s super-network, trained on the first call.

    The trained model goes to ``folder`` (``save_supernet``), ``info`` plus what the run measured to
    ``info_file``. A half-finished run folder is removed first (it would refuse a fresh start), and
    the global RNG is seeded: parts built before the loop seeds itself (e.g. the relational loss's
    projections) draw from it, so a super-network must not depend on what ran before it.
    """
    if not (folder / "space.json").is_file() or not info_file.is_file():
        shutil.rmtree(config.run_dir, ignore_errors=True)
        torch.manual_seed(config.seed)
        began = time.perf_counter()
        result = train_from_config(config, progress=False)
        seconds = time.perf_counter() - began
        save_supernet(result.model, tokenizer_from_config(config), result.space, folder)
        atomic_write_json(
            info_file,
            {
                **info,
                "steps": config.train.steps,
                "first_loss": round(result.losses[0], 4) if result.losses else None,
                "last_loss": round(result.losses[-1], 4) if result.losses else None,
                "last_validation": result.val,
                "train_seconds": round(seconds, 1),
                "seconds_per_step": round(seconds / max(1, config.train.steps), 3),
            },
        )
    saved = load_supernet(folder)
    return saved.model.eval(), saved.space, json.loads(info_file.read_text())
