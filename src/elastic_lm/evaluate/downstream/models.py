"""Which models are evaluated (exported members, references) and what they are (encoder or decoder)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.evaluate.downstream.results import (
    ModelEntry,
    ModelKind,
)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


def model_kind(folder: str | Path) -> ModelKind:
    """``decoder`` for causal-LM folders (GPT-2, Llama, elastic-lm causal), else ``encoder``."""
    config = _read_config(Path(folder))
    if config.get("model_type") == "elastic-lm":
        return "decoder" if config.get("task") == "causal-lm" else "encoder"
    archs = config.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return "decoder" if causal else "encoder"


def folder_params(folder: str | Path) -> int:
    """Parameters stored in the folder's safetensors files (tied weights are stored once)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise DataError(f"{folder} has no .safetensors weights; re-export it ('elastic-lm export')")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def load_tokenizer(folder: str | Path, fallback: Callable[[], Any] | None = None) -> Any:
    """The folder's own tokenizer, else ``fallback()`` (the run's ``model.tokenizer`` / source)."""
    from transformers import AutoTokenizer

    if any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(str(folder))
    if fallback is None:
        raise DataError(
            f"{folder} has no tokenizer files; set model.tokenizer (an asset or a folder) so "
            "evaluation can tokenize the tasks"
        )
    return fallback()


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        raise DataError(
            f"{folder} has no config.json; it is not a model folder ('elastic-lm export' writes one)"
        )
    return json.loads(file.read_text(encoding="utf-8"))


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def exported_models(
    run_dir: str | Path, models: str = "all", max_models: int | None = None
) -> list[ModelEntry]:
    """The models ``export/index.json`` lists (``pareto``: only current Pareto members), in its order."""
    run_dir = Path(run_dir)
    index = run_dir / "export" / "index.json"
    if not index.is_file():
        raise DataError(f"{index} is missing; export models first: 'elastic-lm export {run_dir} --pareto'")
    try:
        records = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{index} is not valid JSON ({error}); re-run 'elastic-lm export {run_dir} --pareto'"
        ) from None
    if not isinstance(records, list):
        raise DataError(f"{index} must hold a list of {{'name', 'path'}} records; re-run 'elastic-lm export'")
    entries = []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "name" not in record or "path" not in record:
            raise DataError(
                f"{index} entry {i} lacks 'name' or 'path'; re-run 'elastic-lm export {run_dir} --pareto'"
            )
        folder = run_dir / str(record["path"])
        if not folder.is_dir():
            raise DataError(
                f"{index} entry {record['name']!r}: folder {folder} does not exist; "
                "re-run 'elastic-lm export'"
            )
        entries.append(ModelEntry(str(record["name"]), folder, "export"))
    if models == "pareto":
        from elastic_lm.export.pareto import pareto_trials

        front = {t.number for t in pareto_trials(run_dir)[0]}
        entries = [e for e in entries if _trial_number(e) in front]
    elif models != "all":
        raise DataError(f"evaluate.models={models!r} is unknown; use 'all' or 'pareto'")
    return entries[:max_models] if max_models is not None else entries


def _trial_number(entry: ModelEntry) -> int | None:
    """The search trial an export came from (``export.json`` provenance, else a ``trial-N`` name)."""
    card = entry.path / "export.json"
    if card.is_file():
        trial = json.loads(card.read_text(encoding="utf-8")).get("provenance", {}).get("trial")
        if trial is not None:
            return int(trial)
    match = re.fullmatch(r"trial-(\d+)", entry.name)
    return int(match.group(1)) if match else None


def reference_models(references: Sequence[str]) -> list[ModelEntry]:
    """Reference models (asset names or folders), named by the asset or folder name."""
    from elastic_lm.assets.models import model_folder

    entries = []
    for ref in references:
        try:
            folder = model_folder(ref)
        except ConfigError:
            raise ConfigError(
                f"evaluate.references entry {ref!r} is neither a known asset nor a folder with "
                "config.json; give an asset name (e.g. minilm-l6) or a model folder"
            ) from None
        entries.append(ModelEntry(Path(ref).name, folder, "reference"))
    return entries


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


__all__ = ["exported_models", "folder_params", "load_tokenizer", "model_kind", "reference_models"]
