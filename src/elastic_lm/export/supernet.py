"""Load a saved super-network folder with checks that name what is wrong, instead of a torch traceback.

The folder is what training saves: ``save_pretrained`` of an ``ElasticFor*`` model (``config.json`` +
``model.safetensors`` or a sharded index), optionally ``space.json`` (the search space it was trained for),
tokenizer files and ``provenance.json`` (where its weights came from, their licence). Weights are read with
safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from elastic_lm.errors import ArchitectureError, CheckpointError
from elastic_lm.io import atomic_directory, atomic_write_json
from elastic_lm.model import ElasticConfig, ElasticModel, ElasticPreTrainedModel, build_model
from elastic_lm.space import SearchSpace

TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
# Where a run directory keeps the trained super-network.
SUPERNET_SUBDIR = Path("train") / "supernet"


def supernet_folder(run_dir: str | Path) -> Path:
    """Where training leaves the super-network in a run directory (search, profile and export read it)."""
    return Path(run_dir) / SUPERNET_SUBDIR


@dataclass
class Supernet:
    """A loaded super-network and what lay beside it."""

    model: ElasticPreTrainedModel
    path: Path
    space: SearchSpace | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def has_tokenizer(self) -> bool:
        return any((self.path / name).is_file() for name in TOKENIZER_FILES)

    def tokenizer(self) -> Any:
        """The tokenizer saved beside the super-network, or None when it was saved without one."""
        if not self.has_tokenizer:
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path)


def _weight_files(path: Path) -> list[Path]:
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [path / s for s in shards]
    raise CheckpointError(
        f"{path} has no model.safetensors; pass the folder save_pretrained wrote (pickled .bin weights "
        "are not loaded)"
    )


def _read_config(path: Path) -> ElasticConfig:
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json; pass the folder save_pretrained wrote")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON ({err}); re-save the super-network") from err
    if raw.get("model_type") != ElasticConfig.model_type:
        raise CheckpointError(
            f"{file} has model_type={raw.get('model_type')!r}, not 'elastic-lm'; convert a Hugging Face "
            "model first with elastic_lm.convert.from_hf"
        )
    return ElasticConfig.from_pretrained(path)


def _build(config: ElasticConfig) -> ElasticPreTrainedModel:
    names = config.architectures or []
    if "ElasticModel" in names:
        return ElasticModel(config)
    return build_model(config)


def load_supernet(path: str | Path) -> Supernet:
    """The super-network saved in ``path``, its search space and provenance when present.

    Raises :class:`CheckpointError` for a missing folder or file and for the first tensor whose shape does
    not match what ``config.json`` implies.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"super-network folder {path} does not exist; pass the folder training saved")
    config = _read_config(path)
    model = _build(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tensors: dict[str, Any] = {}
    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open handles have no __iter__
                shape = tuple(handle.get_slice(name).get_shape())
                if name not in expected:
                    raise CheckpointError(
                        f"{file.name} holds tensor {name!r} that the model in config.json lacks; "
                        "the weights and config.json come from different models"
                    )
                if shape != expected[name]:
                    raise CheckpointError(
                        f"{file.name} tensor {name!r} has shape {list(shape)} but config.json implies "
                        f"{list(expected[name])}; the weights and config.json come from different models"
                    )
                tensors[name] = handle.get_tensor(name)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{path} lacks tensor {missing[0]!r} (and {len(missing) - 1} more); the checkpoint is incomplete"
        )
    model.load_state_dict(tensors, strict=True)
    model.eval()
    if model.can_generate() and (path / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(path)
    return Supernet(model=model, path=path, space=_read_space(path), provenance=_read_provenance(path))


def save_supernet(
    model: ElasticPreTrainedModel,
    tokenizer: Any,
    space: SearchSpace | None,
    path: str | Path,
    *,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write what :func:`load_supernet` reads, atomically: the hand-over from training to later stages.

    The model is saved with its full architecture selected, so no weight is ever stored sliced.
    """
    model.reset()
    with atomic_directory(path) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if space is not None:
            atomic_write_json(staging / "space.json", space.to_dict())
        if provenance:
            atomic_write_json(staging / "provenance.json", provenance)
    return Path(path)


def _read_space(path: Path) -> SearchSpace | None:
    file = path / "space.json"
    if not file.is_file():
        return None
    try:
        return SearchSpace.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{file} is not a valid search space ({err}); re-save it with to_dict") from err


def _read_provenance(path: Path) -> dict[str, Any]:
    file = path / "provenance.json"
    if not file.is_file():
        return {}
    data = json.loads(file.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def check_in_space(space: SearchSpace | None, arch: Any) -> None:
    """``space.validate`` when the super-network came with its space (one-line ArchitectureError)."""
    if space is None:
        return
    try:
        space.validate(arch)
    except ArchitectureError as err:
        raise ArchitectureError(f"--arch is outside the super-network's space.json: {err}") from err


__all__ = [
    "SUPERNET_SUBDIR",
    "TOKENIZER_FILES",
    "Supernet",
    "check_in_space",
    "load_supernet",
    "save_supernet",
    "supernet_folder",
]
