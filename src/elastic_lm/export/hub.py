"""Hugging Face Hub metadata of a model card: base model, licence, data sets, tags, model-index.

The facts come from where the export came from: the source asset (``minilm-l6`` is
``sentence-transformers/all-MiniLM-L6-v2`` under Apache-2.0), the run's saved ``config.yaml`` (data
sets, the command that reproduces it) and the measured metrics. Nothing is guessed: a local source
folder gives its own card's ``license`` when it has one, else ``other``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# Upstream Hub ids of the offline model assets (the weights the asset packages ship).
HUB_IDS: dict[str, str] = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# Hub licence identifiers for the licence names the asset registry uses.
_HUB_LICENCES: dict[str, str] = {"apache-2.0": "apache-2.0", "mit": "mit"}
TASK_NAMES: dict[str, str] = {
    "fill-mask": "Masked language modelling",
    "text-generation": "Causal language modelling",
    "text-classification": "Text classification",
    "feature-extraction": "Feature extraction",
}


def weights_licence(text: str) -> str:
    """The Hub identifier of the weights' licence in a registry string such as
    ``"Apache-2.0 (weights), MIT (package)"``; ``other`` when it is not a standard one."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    chosen = next((p for p in parts if "(weights)" in p), parts[0] if parts else "")
    name = re.sub(r"\(.*?\)", "", chosen).strip().lower()
    return _HUB_LICENCES.get(name, "other")


def source_facts(source: str | None) -> dict[str, str]:
    """``base_model`` (a Hub id, or the folder's name) and ``license`` of the model a run started from."""
    if not source:
        return {}
    from elastic_lm.assets.registry import ASSETS

    asset = ASSETS.get(source)
    if asset is not None:
        facts = {"license": weights_licence(asset.licence)}
        if source in HUB_IDS:
            facts["base_model"] = HUB_IDS[source]
        return facts
    folder = Path(source)
    facts = {"base_model": folder.name or source}
    card = folder / "README.md"
    if card.is_file():
        meta = front_matter(card.read_text(encoding="utf-8"))
        if isinstance(meta.get("license"), str):
            facts["license"] = meta["license"]
        if isinstance(meta.get("base_model"), str):
            facts["base_model"] = meta["base_model"]
    return facts


def run_facts(run_dir: str | Path | None) -> dict[str, Any]:
    """Data sets and the reproducing command, from a run directory's saved (resolved) ``config.yaml``."""
    if run_dir is None:
        return {}
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        return {}
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    sources = (data.get("data") or {}).get("source") or []
    sources = [sources] if isinstance(sources, str) else list(sources)
    return {
        "datasets": [Path(str(s)).name or str(s) for s in sources],
        "reproduce": f"elastic-lm run {config}",
        **({"budget": data["budget"]} if data.get("budget") else {}),
    }


def front_matter(text: str) -> dict[str, Any]:
    """The YAML block between the leading ``---`` lines of a card (empty when there is none)."""
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    meta = yaml.safe_load(text[3:end])
    return meta if isinstance(meta, dict) else {}


def hub_metadata(info: dict[str, Any], pipeline_tag: str, tags: list[str]) -> dict[str, Any]:
    """The card's metadata: licence, base model, data sets, tags and a model-index of the metrics."""
    prov: dict[str, Any] = info.get("provenance") or {}
    meta: dict[str, Any] = {"license": prov.get("license") or "other"}
    if meta["license"] == "other" and prov.get("license_name"):
        meta["license_name"] = prov["license_name"]
    if prov.get("base_model"):
        meta["base_model"] = prov["base_model"]
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = pipeline_tag
    if prov.get("datasets"):
        meta["datasets"] = list(prov["datasets"])
    meta["tags"] = tags
    metrics = {k: v for k, v in (info.get("metrics") or {}).items() if isinstance(v, int | float)}
    if metrics:
        dataset = ", ".join(prov.get("datasets") or []) or "not recorded"
        meta["model-index"] = [
            {
                "name": str(info["name"]),
                "results": [
                    {
                        "task": {"type": pipeline_tag, "name": TASK_NAMES.get(pipeline_tag, pipeline_tag)},
                        "dataset": {"type": dataset, "name": f"{dataset} (held-out split of the run)"},
                        "metrics": [
                            {"type": name, "name": name, "value": float(value)}
                            for name, value in sorted(metrics.items())
                        ],
                    }
                ],
            }
        ]
    return meta


def render_front_matter(meta: dict[str, Any]) -> list[str]:
    """``---`` / YAML / ``---`` lines."""
    body = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")
    return ["---", *body.splitlines(), "---", ""]


__all__ = ["HUB_IDS", "front_matter", "hub_metadata", "run_facts", "source_facts", "weights_licence"]
