"""The model card (``README.md``) of an exported sub-network: what it is, how big, how good, where from.

A card is the one file a person opens; it must answer "what is this and can I use it" without elastic-lm:
the architecture in words and as JSON, exact sizes, measured metrics, provenance and licence, and a
snippet that loads it. The YAML front matter is the Hugging Face Hub's model-card metadata.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.export.hub import hub_metadata, render_front_matter, run_facts, source_facts

AUTO_CLASS: dict[str | None, str] = {
    None: "AutoModel",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
}
PIPELINE_TAG: dict[str | None, str] = {
    None: "feature-extraction",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "sequence-classification": "text-classification",
}


def describe_layer(la: LayerArch) -> str:
    """One layer in words, e.g. ``bert (4 heads, FFN 512)``."""
    if la.is_identity:
        return "dropped"
    parts = []
    heads = len(la.head_ids) if la.head_ids is not None else la.heads
    if heads or la.head_ids is not None:
        kv = f" / {la.kv_heads} KV" if la.kv_heads and la.kv_heads != heads else ""
        parts.append(f"{heads} heads{kv}")
    ffn = len(la.ffn_ids) if la.ffn_ids is not None else la.ffn
    if ffn or la.ffn_ids is not None:
        parts.append(f"FFN {ffn}")
    for name, label in (("bottleneck", "bottleneck"), ("ffn_stack", "FFN stack"), ("kernel", "kernel")):
        if getattr(la, name):
            parts.append(f"{label} {getattr(la, name)}")
    if la.hidden:
        parts.append(f"width {la.hidden}")
    return f"{la.block} ({', '.join(parts)})" if parts else la.block


def describe(arch: Architecture) -> str:
    """The architecture in one sentence, runs of equal layers merged (``4 x bert (...)``)."""
    kept = [describe_layer(la) for la in arch.layers if not la.is_identity]
    runs: list[tuple[str, int]] = []
    for text in kept:
        if runs and runs[-1][0] == text:
            runs[-1] = (text, runs[-1][1] + 1)
        else:
            runs.append((text, 1))
    body = "; ".join(f"{n} x {t}" if n > 1 else t for t, n in runs)
    dropped = len(arch.layers) - len(kept)
    tail = f" ({dropped} of {len(arch.layers)} super-network layers dropped)" if dropped else ""
    plural = "layer" if len(kept) == 1 else "layers"
    return f"{len(kept)} {plural} at width {arch.hidden}: {body}{tail}"


def _millions(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f} M)"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_card(info: dict[str, Any]) -> str:
    """Markdown for ``info`` (the dict :func:`elastic_lm.export.export_subnetwork` records)."""
    task = info.get("task")
    recorded: dict[str, Any] = info.get("provenance") or {}
    # what the source asset and the run's saved config say, unless the export recorded it already
    prov = {**source_facts(recorded.get("source_model")), **run_facts(recorded.get("run_dir")), **recorded}
    licence = str(prov.get("license") or "unknown")
    arch = Architecture.from_dict(info["architecture"])
    blocks = Counter(la.block for la in arch.layers if not la.is_identity)
    tags = ["elastic-lm", "neural-architecture-search", *sorted(blocks)]
    meta_info = {**info, "provenance": {**prov, "license": licence if licence != "unknown" else "other"}}
    front = render_front_matter(hub_metadata(meta_info, PIPELINE_TAG[task], tags))
    lines = [f"# {info['name']}", ""]
    lines += [
        f"A sub-network chosen by neural architecture search with elastic-lm and exported as a standalone "
        f"model: **{describe(arch)}**.",
        "",
        "## Format",
        "",
        f"- format: `{info['format']}` (class `{info['model_class']}`)",
    ]
    if info["format"] == "stock":
        lines.append("- loads with plain `transformers`; elastic-lm is not needed")
    else:
        lines.append(f"- elastic-lm's own class: {info.get('stock_reason', '')}")
        if info.get("remote_code"):
            lines.append(
                "- with elastic-lm installed, `import elastic_lm.model` first; without it, the folder's "
                "own modelling code (`elm_*.py`, named in `config.json`'s `auto_map`) loads with "
                "`trust_remote_code=True`"
            )
        else:
            lines.append("- `import elastic_lm.model` first")
    if info.get("onnx"):
        onnx = info["onnx"]
        lines.append(
            f"- ONNX: `{onnx['file']}` (opset {onnx['opset']}, dynamic batch and sequence axes, "
            f"checked with onnxruntime: max |diff| {onnx['max_abs_diff']:.2g})"
        )
    if info.get("max_abs_diff") is not None:
        lines.append(
            f"- verified: outputs equal the super-network with this architecture selected "
            f"(max |diff| {info['max_abs_diff']:.2g}, fp32, random tokens)"
        )
    lines += [
        "",
        "## Size",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| parameters (total) | {_millions(info['params'])} |",
        f"| parameters (without embeddings) | {_millions(info['params_non_embedding'])} |",
        f"| forward FLOPs at {info['seq_len']} tokens | {info['flops']:,} ({info['flops'] / 1e9:.3f} G) |",
        "",
        "FLOPs count 2 x the multiply-accumulates of every matrix product (linear layers, attention scores "
        "and values, convolutions, task head) for one sequence; embeddings, norms and activations are not "
        "counted.",
        "",
    ]
    metrics = info.get("metrics") or {}
    if metrics:
        lines += ["## Measured metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_value(v)} |" for k, v in sorted(metrics.items())]
        lines.append("")
    lines += ["## Where it came from", "", "| | |", "|---|---|"]
    rows = {
        "super-network": prov.get("supernet", "not recorded"),
        "run directory": prov.get("run_dir", "not recorded"),
        "search strategy": prov.get("strategy", "not recorded"),
        "trial": prov.get("trial"),
        "source model": prov.get("source_model"),
        "base model": prov.get("base_model"),
        "data sets": ", ".join(prov.get("datasets") or []) or None,
        "budget": prov.get("budget"),
        "licence of the source weights": licence,
        "elastic-lm version": prov.get("elastic_lm_version", ""),
        "elastic-lm commit": prov.get("commit") or "not recorded",
        "exported at": prov.get("exported_at", ""),
    }
    lines += [f"| {k} | {_value(v)} |" for k, v in rows.items() if v is not None]
    lines += ["", "## How it was made", "", _method(prov)]
    if prov.get("reproduce"):
        lines += ["", "To reproduce (the run's resolved config; re-runs skip finished stages):", ""]
        lines += ["```bash", str(prov["reproduce"]), "```"]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        *_snippet(info),
        "```",
        "",
        "## Architecture (JSON)",
        "",
        "The `Architecture` selected in the super-network (one entry per super-network layer; `identity` = "
        "dropped), also in `architecture.json`:",
        "",
        "```json",
        json.dumps(info["architecture"], indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(front + lines)


def _method(prov: dict[str, Any]) -> str:
    """One paragraph: which model it started from, how the sub-network was chosen."""
    source = prov.get("base_model") or prov.get("source_model") or "a pre-trained model"
    how = (
        f"a search ({prov['strategy']}) over the super-network's sub-networks, trial {prov.get('trial')}"
        if prov.get("strategy")
        else "structural pruning of the source"
    )
    space = f" in the `{prov['space']}` search space" if prov.get("space") else ""
    return (
        f"A super-network{space} was initialised from {source} and trained as the run's config says; "
        f"this model is the sub-network picked by {how}, extracted with its weights sliced from the "
        "super-network (no re-initialisation)."
    )


def _snippet(info: dict[str, Any]) -> list[str]:
    auto = AUTO_CLASS[info.get("task")]
    out = []
    if info["format"] != "stock":
        out.append("import elastic_lm.model  # registers model_type 'elastic-lm' with the Auto classes")
        if info.get("remote_code"):
            out.append("# without elastic-lm: skip that import and pass trust_remote_code=True (elm_*.py)")
    extra = ", add_pooling_layer=False" if info["format"] == "stock" and info.get("task") is None else ""
    out += [
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f'model = {auto}.from_pretrained("{info["name"]}"{extra})  # this folder',
    ]
    if info.get("tokenizer"):
        out.append(f'tokenizer = AutoTokenizer.from_pretrained("{info["name"]}")')
    if info.get("onnx"):
        out += [
            "",
            "import onnxruntime  # or the ONNX graph: inputs input_ids, attention_mask (int64)",
            f'session = onnxruntime.InferenceSession("{info["name"]}/{info["onnx"]["file"]}")',
        ]
    return out


__all__ = ["AUTO_CLASS", "describe", "describe_layer", "render_card"]
