"""An elastic-lm-class export carries its own modelling code, so transformers alone can load it.

A sub-network that no stock class can hold (per-layer widths, mixed blocks, ...) is saved as
elastic-lm's class. With elastic-lm installed, ``import elastic_lm`` registers that class with the Auto
classes and ``AutoModelFor*.from_pretrained(folder)`` loads it with no remote code at all. For everyone
else the folder also holds a copy of the modelling package (``elm_*.py``, imports made relative) and
``config.json`` names it in ``auto_map``, the Hugging Face convention for custom architectures:
``AutoModelFor*.from_pretrained(folder, trust_remote_code=True)`` then works where elastic-lm is not
installed. elastic-lm itself never passes ``trust_remote_code``: with its classes registered,
transformers prefers them to the folder's code.

The copy is exactly the installed source (``elastic_lm/model/*.py`` with ``architecture.py`` and
``errors.py``, the only modules it imports), so a folder loads with the code that exported it.
"""

from __future__ import annotations

import re
from pathlib import Path

from elastic_lm import __version__
from elastic_lm.io import atomic_write_text

PACKAGE = Path(__file__).resolve().parents[1]  # src/elastic_lm
# module (relative to the package) -> file name in the export folder
MODULES: dict[str, str] = {
    "errors.py": "elm_errors.py",
    "architecture.py": "elm_architecture.py",
    **{
        f"model/{name}.py": f"elm_{name}.py"
        for name in (
            "primitives",
            "attention",
            "feedforward",
            "shapes",
            "config",
            "embeddings",
            "blocks",
            "modeling",
            "heads",
        )
    },
}
# What config.json's auto_map names: Auto class -> "module.Class" inside the folder.
AUTO_MAP: dict[str, str] = {
    "AutoConfig": "elm_config.ElasticConfig",
    "AutoModel": "elm_modeling.ElasticModel",
    "AutoModelForMaskedLM": "elm_heads.ElasticForMaskedLM",
    "AutoModelForCausalLM": "elm_heads.ElasticForCausalLM",
    "AutoModelForSequenceClassification": "elm_heads.ElasticForSequenceClassification",
}
_IMPORT = re.compile(r"^(\s*)from elastic_lm\.(?:model\.)?(\w+) import", re.MULTILINE)
_LEFT = re.compile(r"^\s*(?:from|import)\s+elastic_lm\b", re.MULTILINE)


def portable_source(relative: str) -> str:
    """The source of ``elastic_lm/<relative>`` with its elastic-lm imports made folder-relative."""
    text = (PACKAGE / relative).read_text(encoding="utf-8")

    def local(match: re.Match[str]) -> str:
        name = match.group(2)
        target = f"model/{name}.py" if f"model/{name}.py" in MODULES else f"{name}.py"
        if target not in MODULES:  # a bug of ours, never the user's: the copy would not import
            raise RuntimeError(f"{relative} imports elastic_lm.{name}, which exports do not carry")
        return f"{match.group(1)}from .{MODULES[target][:-3]} import"

    text = _IMPORT.sub(local, text)
    if _LEFT.search(text):  # a bug here, not the user's: a module the copy cannot resolve
        raise RuntimeError(f"{relative} still imports elastic_lm after rewriting; update MODULES")
    header = (
        f"# Copied by elastic-lm {__version__} from elastic_lm/{relative} (Apache-2.0), so this folder\n"
        "# loads with AutoModel*.from_pretrained(folder, trust_remote_code=True) without elastic-lm.\n"
    )
    return header + text


def add_remote_code(folder: Path) -> list[str]:
    """Write the modelling files into ``folder`` and add ``auto_map`` to its ``config.json``.

    Returns the file names written. ``folder`` is an export's staging folder that already holds the
    ``save_pretrained`` output of an elastic-lm class.
    """
    import json

    written = []
    for relative, name in MODULES.items():
        atomic_write_text(folder / name, portable_source(relative))
        written.append(name)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = dict(AUTO_MAP)
    atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return written


__all__ = ["AUTO_MAP", "MODULES", "add_remote_code", "portable_source"]
