"""Recipes: ordered stages for the engine (:mod:`elastic_lm.pipeline.engine`), one module each.

A new recipe (decoder compression, say) is a module here with a ``RECIPE`` (or a function making one)
and a name in :data:`RECIPES`; ``elastic-lm run`` picks it by the config's ``pipeline`` field.
"""

from __future__ import annotations

# "pipeline" value of the config -> "module:attribute" of its recipe (imported when it runs)
RECIPES: dict[str, str] = {
    "nas": "elastic_lm.pipeline.recipes.nas:recipe",
    "prune": "elastic_lm.pipeline.recipes.prune:recipe",
    "decoder": "elastic_lm.pipeline.recipes.decoder:recipe",
}

__all__ = ["RECIPES"]
