"""A model name or folder -> a local Hugging Face folder.

Its own module (not ``train.build``) because teacher preparation, super-network building, pruning and
downstream evaluation all ask this one question, and none of them should import the others for it.
"""

from __future__ import annotations

from pathlib import Path

from elastic_lm.errors import ConfigError


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


__all__ = ["model_folder"]
