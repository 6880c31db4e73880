"""The declarative search space and its presets.

``preset("elm")`` (or any name of :func:`preset_names`) gives a :class:`SearchSpace`; a space saved
with ``to_dict`` loads back with ``SearchSpace.from_dict``. Samplers only see index vectors
(:meth:`SearchSpace.encode` / :meth:`SearchSpace.decode`) and :class:`Dimension` names.
"""

from __future__ import annotations

from typing import Any

from elastic_lm.space.core import SearchSpace
from elastic_lm.space.model import Dimension, Group, Rule
from elastic_lm.space.presets import preset_dict, preset_names


def preset(name: str, **shape: Any) -> SearchSpace:
    """A preset space at the base model's shape, e.g. ``preset("elm", layers=2, hidden=64)``."""
    return SearchSpace.from_dict(preset_dict(name, **shape))


__all__ = ["Dimension", "Group", "Rule", "SearchSpace", "preset", "preset_dict", "preset_names"]
