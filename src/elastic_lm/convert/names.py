"""Weight names: Hugging Face backbones <-> elastic-lm, written once and read in both directions.

Converting in (``hf_in``) and exporting to stock classes (``export.stock``) are inverse mappings of
the same correspondence, so each family's table lives here and both directions are generated from
it. ``{i}`` stands for the layer index. Elastic names are those of an extracted model; a
super-network holds each layer's candidates under a block segment (``layers.{i}.bert.``), which
``block=`` inserts.
"""

from __future__ import annotations

import re

Rename = list[tuple[str, str]]  # (regex on a name, replacement giving the other name)
Names = list[tuple[str, str]]  # (Hugging Face prefix, elastic prefix)

BERT_NAMES: Names = [
    ("embeddings.word_embeddings.", "embeddings.word."),
    ("embeddings.position_embeddings.", "embeddings.position."),
    ("embeddings.token_type_embeddings.", "embeddings.token_type."),
    ("embeddings.LayerNorm.", "embeddings.norm."),
    ("encoder.layer.{i}.attention.self.query.", "layers.{i}.attention.q."),
    ("encoder.layer.{i}.attention.self.key.", "layers.{i}.attention.k."),
    ("encoder.layer.{i}.attention.self.value.", "layers.{i}.attention.v."),
    ("encoder.layer.{i}.attention.output.dense.", "layers.{i}.attention.o."),
    ("encoder.layer.{i}.attention.output.LayerNorm.", "layers.{i}.norm1."),
    ("encoder.layer.{i}.intermediate.dense.", "layers.{i}.ffn.up."),
    ("encoder.layer.{i}.output.dense.", "layers.{i}.ffn.down."),
    ("encoder.layer.{i}.output.LayerNorm.", "layers.{i}.norm2."),
]
# GPT-2's fused c_attn (q, k, v) is split and joined by the converters themselves.
GPT2_NAMES: Names = [
    ("wte.", "embeddings.word."),
    ("wpe.", "embeddings.position."),
    ("h.{i}.ln_1.", "layers.{i}.norm1."),
    ("h.{i}.ln_2.", "layers.{i}.norm2."),
    ("h.{i}.attn.c_proj.", "layers.{i}.attention.o."),
    ("h.{i}.mlp.c_fc.", "layers.{i}.ffn.up."),
    ("h.{i}.mlp.c_proj.", "layers.{i}.ffn.down."),
    ("ln_f.", "final_norm."),
]
LLAMA_NAMES: Names = [
    ("embed_tokens.", "embeddings.word."),
    ("layers.{i}.input_layernorm.", "layers.{i}.norm1."),
    ("layers.{i}.post_attention_layernorm.", "layers.{i}.norm2."),
    *((f"layers.{{i}}.self_attn.{p}_proj.", f"layers.{{i}}.attention.{p}.") for p in "qkvo"),
    *((f"layers.{{i}}.mlp.{p}_proj.", f"layers.{{i}}.ffn.{p}.") for p in ("gate", "up", "down")),
    ("norm.", "final_norm."),
]


def _pattern(prefix: str) -> str:
    return "^" + re.escape(prefix).replace(re.escape("{i}"), r"(\d+)")


def _replacement(prefix: str) -> str:
    return prefix.replace("{i}", r"\1")


def to_elastic(names: Names, block: str | None = None) -> Rename:
    """Hugging Face -> elastic names; ``block`` names the super-network's block segment."""
    table = []
    for hf, elastic in names:
        if block is not None:
            elastic = elastic.replace("layers.{i}.", f"layers.{{i}}.{block}.")
        table.append((_pattern(hf), _replacement(elastic)))
    return table


def to_hf(names: Names) -> Rename:
    """Elastic (extracted model) -> Hugging Face names."""
    return [(_pattern(elastic), _replacement(hf)) for hf, elastic in names]


def rename(name: str, table: Rename) -> str | None:
    """``name`` through the first matching entry of ``table``; None when none matches."""
    for pattern, replacement in table:
        new, count = re.subn(pattern, replacement, name)
        if count:
            return new
    return None
