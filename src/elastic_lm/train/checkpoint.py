"""Training checkpoints that are safe to load and never half-written.

A checkpoint is a folder ``step-00000042`` under ``run_dir/train/checkpoints`` holding

- ``model.safetensors``: the super-network weights (``safetensors.torch.save_model``, which copes
  with tied embeddings);
- ``trainer.pt``: optimiser, scheduler, loss-projection and grad-scaler state plus RNG states, all
  plain tensors and containers, loaded with ``torch.load(..., weights_only=True)``: nothing is
  unpickled;
- ``strategy.json``: ``strategy.state_dict()`` (progressive shrinking keeps its pool there);
- ``NAME.json`` for every extra state (``dynamic.json``: ELM dynamic modules' history and space);
- ``config.json``: the model's config when it has one (``layer_sizes`` after dynamic changes), so
  a resumed run rebuilds the adjusted shapes before loading the weights;
- ``state.json``: the step, the data position and the settings, readable by people.

It is written to a hidden temporary folder and renamed into place, so a crash leaves either the old
set of checkpoints or the new one; then all but the newest ``keep`` are deleted.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from elastic_lm.errors import CheckpointError
from elastic_lm.io import clean_leftovers

PREFIX = "step-"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{int(step):08d}"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first (temporary folders are ignored)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted((p for p in found if (p / "state.json").exists()), key=lambda p: p.name)


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (``weights_only``-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read back; ``trainer`` holds the optimiser etc. states."""

    path: Path
    step: int
    state: dict[str, Any]
    trainer: dict[str, Any]
    strategy: dict[str, Any]

    def extra(self, name: str) -> dict[str, Any] | None:
        """The extra state saved as ``NAME.json`` (None when this checkpoint has none)."""
        file = self.path / f"{name}.json"
        return json.loads(file.read_text()) if file.is_file() else None


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    *,
    model: torch.nn.Module,
    trainer: dict[str, Any],
    strategy: dict[str, Any],
    state: dict[str, Any],
    keep: int = 3,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically and prune to the newest ``keep``; returns its path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    clean_leftovers(root)  # what a killed save left (its process is gone)
    tmp = root / f".{checkpoint_name(step)}.elm{os.getpid()}.save.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_checkpoint(tmp, model, trainer, strategy, state, step, extra)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: keep no half checkpoint
        raise
    if final.exists():  # re-saving the same step (e.g. a resumed run's final save)
        old = root / f".{final.name}.elm-old"  # put back by clean_leftovers if we die here
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    for stale in list_checkpoints(root)[: -max(int(keep), 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _write_checkpoint(
    tmp: Path,
    model: torch.nn.Module,
    trainer: dict[str, Any],
    strategy: dict[str, Any],
    state: dict[str, Any],
    step: int,
    extra: dict[str, dict[str, Any]] | None,
) -> None:
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(trainer, tmp / "trainer.pt")
    (tmp / "strategy.json").write_text(json.dumps(strategy, indent=1, sort_keys=True))
    for name, value in (extra or {}).items():
        if name in ("strategy", "state", "config"):
            raise ValueError(f"extra state name {name!r} is reserved; pick another")
        (tmp / f"{name}.json").write_text(json.dumps(value, indent=1, sort_keys=True))
    config = getattr(model, "config", None)
    if hasattr(config, "to_json_file"):  # HF-style config: layer_sizes etc. for a reshaped resume
        config.to_json_file(str(tmp / "config.json"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": int(step)}, indent=1, default=str))


def load_checkpoint(
    path: str | os.PathLike[str], model: torch.nn.Module, device: torch.device | str = "cpu"
) -> Checkpoint:
    """Load the weights into ``model`` (strict) and return the other states, safely.

    Every file that is truncated, corrupt or foreign (a pickle holding more than tensors) is a
    :class:`CheckpointError` naming it, with no library warning on stderr: the fix is the same
    for all of them, resume from an earlier checkpoint.
    """
    folder = Path(path)
    if not (folder / "state.json").exists():
        raise CheckpointError(f"checkpoint {folder} is incomplete (no state.json); pick another")
    try:
        missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
    except SafetensorError as err:
        raise _damaged(folder / "model.safetensors", err) from None
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {folder}: weights do not fit the model ({str(exc).splitlines()[0]}); "
            "resume with the model config the run was started with"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {folder}: missing {sorted(missing)[:3]} / unexpected "
            f"{sorted(unexpected)[:3]} weights; resume with the model the run was started with"
        )
    file = folder / "trainer.pt"
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol before refusing it
            warnings.simplefilter("ignore")
            trainer = torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused it: nothing in it was run
        why = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:80]
        raise CheckpointError(
            f"checkpoint {file} is not one elastic-lm wrote: torch refused to unpickle it ({why}) "
            f"and ran nothing in it; {_EARLIER}"
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:  # a truncated or corrupt zip
        raise _damaged(file, err) from None
    state = _read_json(folder / "state.json")
    strategy = _read_json(folder / "strategy.json")
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"checkpoint {folder / 'state.json'} has no integer 'step'; {_EARLIER}")
    return Checkpoint(folder, int(state["step"]), state, trainer, strategy)


_EARLIER = "remove that checkpoint folder to resume from an earlier one"


def _damaged(file: Path, err: BaseException) -> CheckpointError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
    return CheckpointError(f"checkpoint {file} is truncated or corrupt ({first}); {_EARLIER}")


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {file} is missing; {_EARLIER}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _damaged(file, err) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise CheckpointError(f"checkpoint {file} holds a JSON {kind}, not an object; {_EARLIER}")
    return data


__all__ = [
    "Checkpoint",
    "checkpoint_name",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
