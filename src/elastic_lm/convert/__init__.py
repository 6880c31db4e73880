"""Converters at the edge: Hugging Face checkpoints in (``hf_in``); models out come later."""

from __future__ import annotations

from elastic_lm.convert.hf_in import SUPPORTED_MODEL_TYPES, UnsupportedModelError, from_hf

__all__ = ["SUPPORTED_MODEL_TYPES", "UnsupportedModelError", "from_hf"]
