"""Read a YAML config, apply command-line overrides, validate, and explain mistakes in one line.

A config error names the field (dotted path), the bad value and what is allowed, so a user can fix it
without reading a traceback; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from elastic_lm.config.recipes import resolve_config_path
from elastic_lm.config.schema import Config
from elastic_lm.errors import ConfigError


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), budget: str | None = None
) -> Config:
    """Load ``path`` (YAML; None means all defaults), apply a named budget, then ``key=value`` overrides.

    ``path`` may also name a shipped recipe (``elm-mlm``); see :mod:`elastic_lm.config.recipes`.

    A recipe may hold a ``budgets:`` mapping (e.g. ``quick`` for a 2-core CPU, ``full`` for a GPU) whose
    entries are partial configs merged over the file; ``budget`` picks one.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(resolve_config_path(path))
    budgets = data.pop("budgets", None) or {}
    if not isinstance(budgets, dict):
        raise ConfigError("config field 'budgets' must map budget names to partial configs")
    if budget is not None:
        if budget not in budgets:
            known = ", ".join(sorted(budgets)) or "none (this config defines no budgets)"
            raise ConfigError(f"budget {budget!r} is not defined in the config; defined budgets: {known}")
        data = deep_merge(data, budgets[budget])
        data["budget"] = budget
    data = apply_overrides(data, overrides)
    return validate_config(data)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, section by section (update wins on plain values)."""
    merged = _deep_copy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _deep_copy(value) if isinstance(value, Mapping) else value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError that says what is wrong with the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} does not exist; pass the path of a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {str(file)!r} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start}); save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {str(file)!r} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(file)!r} must hold a mapping of sections (got {type(data).__name__})"
        )
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` keys may be overridden: that is what merging is for
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` set; values are parsed as YAML scalars."""
    result: dict[str, Any] = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.steps=100)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def validate_config(data: Mapping[str, Any]) -> Config:
    """Validate a mapping against the schema; the first problem becomes a one-line ConfigError."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def _explain(error: ValidationError) -> str:
    problems = [_explain_one(item) for item in error.errors()]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return problems[0] + more


def _explain_one(item: Mapping[str, Any]) -> str:
    location = [str(part) for part in item["loc"]]
    field = ".".join(location) or "config"
    if item["type"] == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"config field {field!r} is not a known key{hint}"
    value = item.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    return f"config field {field!r} has bad value {shown}: {item['msg']}"


def _allowed_keys(section: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
