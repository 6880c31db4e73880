"""The recipes that ship inside the package, found by name, so ``elastic-lm run elm-mlm`` works anywhere.

The YAML files live once, in the repository's ``configs/``; ``src/elastic_lm/configs`` is a symbolic link
to that folder, so the wheel carries them as package data and a clone reads the same files (no copies
that can drift). A config argument is resolved in this order:

1. an existing file: that file;
2. a bare recipe name (``elm-mlm``): the shipped recipe;
3. ``configs/NAME.yaml`` that does not exist here (the paths of the README, used outside a clone): the
   shipped recipe ``NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from elastic_lm.errors import ConfigError

_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Recipe:
    """A shipped recipe: its name, file, first comment paragraph and the budgets it defines."""

    name: str
    path: Path
    description: str
    budgets: tuple[str, ...]


def recipes_dir() -> Path:
    """The folder of shipped recipes (inside the installed package, or the clone's ``configs/``)."""
    return Path(str(resources.files("elastic_lm").joinpath("configs")))


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    folder = recipes_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def recipe_path(name: str) -> Path:
    """The file of the shipped recipe ``name``; a ConfigError listing the known names otherwise."""
    for suffix in _SUFFIXES:
        path = recipes_dir() / f"{name}{suffix}"
        if path.is_file():
            return path
    known = ", ".join(recipe_names()) or "none (the package ships no recipes)"
    raise ConfigError(f"no recipe named {name!r}; shipped recipes: {known} (or pass a YAML file's path)")


def list_recipes() -> list[Recipe]:
    """Every shipped recipe with the first paragraph of its header comment and its budget names."""
    return [_describe(name, recipe_path(name)) for name in recipe_names()]


def resolve_config_path(arg: str | Path) -> Path:
    """The YAML file a config argument names: a path, a recipe name, or a repository ``configs/`` path."""
    path = Path(arg)
    if path.is_file():
        return path
    text = str(arg)
    if path.suffix not in _SUFFIXES and "/" not in text and "\\" not in text:
        return recipe_path(text)
    if path.parent.name == "configs" and path.suffix in _SUFFIXES and path.stem in recipe_names():
        return recipe_path(path.stem)
    raise ConfigError(
        f"config file {text!r} does not exist; pass the path of a YAML file or a recipe name "
        f"({', '.join(recipe_names())})"
    )


def _describe(name: str, path: Path) -> Recipe:
    text = path.read_text(encoding="utf-8")
    paragraph: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        body = stripped.lstrip("#").strip()
        if not body or body.startswith("elastic-lm "):
            break
        paragraph.append(body)
    data = yaml.safe_load(text) or {}
    budgets = data.get("budgets") if isinstance(data, dict) else None
    names = tuple(budgets) if isinstance(budgets, dict) else ()
    return Recipe(name=name, path=path, description=" ".join(paragraph), budgets=names)
