"""Activation samples for ELM's dynamic modules: FFN intermediate outputs, per-head attention context
vectors and hidden states of every layer position, on a random subset of real tokens.

Memory stays bounded: at most ``max_tokens`` rows per module, drawn (reproducibly, from ``seed``)
among the non-padding tokens of each batch. Each block type of a position is measured in a network
made of that block type wherever it is a candidate (ELM positions hold a BERT and a MobileBERT block).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from elastic_lm.analysis import pairwise_head_cka, pca_components
from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.model.modeling import ElasticPreTrainedModel
from elastic_lm.model.shapes import max_shape
from elastic_lm.train.resize import attentions_at, ffns_at

MODEL_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass
class ModuleStats:
    """What one FFN or attention module of one position showed on the sampled tokens."""

    layer: int
    block: str
    kind: str  # "ffn" or "attention"
    width: int  # FFN units or attention heads
    components: int = 0  # FFN: principal components for the requested variance
    cka: torch.Tensor | None = None  # attention: (heads, heads) linear CKA
    samples: int = 0  # FFN: sampled tokens the components were counted on (0: unknown)

    @property
    def saturation(self) -> float:
        """Components over the most the sample can show: with n tokens, centred activations have
        rank at most n - 1, so 1,024 tokens of a 1,536-unit FFN could never pass 0.67 of the width."""
        measurable = min(self.width, self.samples - 1) if self.samples > 1 else self.width
        return self.components / measurable if measurable > 0 else 0.0


@dataclass
class Statistics:
    modules: list[ModuleStats] = field(default_factory=list)
    hidden_components: dict[int, int] = field(default_factory=dict)  # layer -> components of its output
    tokens: int = 0


class _Sampler:
    """Forward pre-hooks that keep the rows ``self.index`` of every watched module's input."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.index: torch.Tensor | None = None
        self.rows: dict[str, list[torch.Tensor]] = {}

    def hook(self, key: str):
        def keep(_module: nn.Module, args: tuple) -> None:
            x = args[0]
            if self.index is None or sum(len(r) for r in self.rows.get(key, [])) >= self.max_tokens:
                return
            flat = x.detach().reshape(-1, x.shape[-1]).index_select(0, self.index.to(x.device))
            self.rows.setdefault(key, []).append(flat.float().cpu())

        return keep

    def matrix(self, key: str) -> torch.Tensor:
        return torch.cat(self.rows[key])[: self.max_tokens]


def _token_index(batch: Mapping, per_batch: int, generator: torch.Generator) -> torch.Tensor:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = torch.arange(ids.numel()) if mask is None else mask.reshape(-1).nonzero().reshape(-1).cpu()
    pick = torch.randperm(len(real), generator=generator)[:per_batch]
    return real[pick.sort().values]


def _block_networks(model: ElasticPreTrainedModel) -> list[Architecture]:
    """One full-width architecture per block type: that type wherever it is a candidate.

    Sizes are explicit and per position (a count of 0 keeps none), from ``config.layer_sizes``, so
    layers that dynamic modules already resized are watched at their full width.
    """
    cands = [[b for b in c if b != "identity"] for c in model.config.block_candidates]
    types = list(dict.fromkeys(b for c in cands for b in c))

    def full(position: int, block: str) -> LayerArch:
        return max_shape(model.config, block, layer=position).to_layer_arch()

    hidden = model.config.hidden_size
    return [
        Architecture(
            hidden,
            tuple(
                full(i, t if t in c else c[0]) if c else LayerArch("identity") for i, c in enumerate(cands)
            ),
        )
        for t in types
    ]


def _watch(model: ElasticPreTrainedModel, arch: Architecture, attention: bool) -> dict[str, tuple]:
    """(layer, block, kind, module, hooked linear) of every module ``arch`` runs, by a stable key."""
    out: dict[str, tuple] = {}
    for i, la in enumerate(arch.layers):
        ffns = [m for b, m in ffns_at(model, i) if b == la.block]
        for j, ffn in enumerate(ffns):
            out[f"{i}.{la.block}.ffn{j}"] = (i, la.block, "ffn", ffn, ffn.down)
        for b, att in attentions_at(model, i) if attention else []:
            if b == la.block:
                out[f"{i}.{b}.attention"] = (i, b, "attention", att, att.o)
    return out


@torch.no_grad()
def collect_statistics(
    model: ElasticPreTrainedModel,
    batches: Iterable[Mapping],
    variance: float = 0.99,
    max_tokens: int = 2048,
    tokens_per_batch: int = 512,
    seed: int = 0,
    attention: bool = True,
) -> Statistics:
    """Run the full-width network(s) on ``batches`` and summarise every FFN and attention module.

    Hidden states (the output of every position) are measured in the first block type's network.
    """
    batches = list(batches)
    was_training, previous = model.training, model.architecture
    model.eval()
    sampler = _Sampler(max_tokens)
    watched: dict[str, tuple] = {}
    tokens = 0
    try:
        for n, arch in enumerate(_block_networks(model)):
            model.set_architecture(arch)
            here = _watch(model, arch, attention)
            watched.update(here)
            handles = [lin.register_forward_pre_hook(sampler.hook(k)) for k, (*_, lin) in here.items()]
            generator = torch.Generator().manual_seed(seed)
            try:
                for batch in batches:
                    sampler.index = _token_index(batch, tokens_per_batch, generator)
                    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
                    out = model(**inputs, output_hidden_states=n == 0)
                    tokens += len(sampler.index) if n == 0 else 0
                    for i, h in enumerate(out.hidden_states[1:] if n == 0 else ()):
                        sampler.hook(f"hidden{i}")(model, (h,))
            finally:
                for handle in handles:
                    handle.remove()
    finally:
        model.set_architecture(previous)
        model.train(was_training)
    stats = Statistics(tokens=tokens)
    for key, (layer, block, kind, module, _) in watched.items():
        if key not in sampler.rows:
            continue
        x = sampler.matrix(key)
        if kind == "ffn":
            stats.modules.append(
                ModuleStats(layer, block, kind, module.inner, pca_components(x, variance), samples=len(x))
            )
        else:
            ctx = x.reshape(len(x), module.max_heads, module.head_dim)
            stats.modules.append(
                ModuleStats(layer, block, kind, module.max_heads, cka=pairwise_head_cka(ctx))
            )
    for i in range(len(model.backbone.layers)):
        if f"hidden{i}" in sampler.rows:
            stats.hidden_components[i] = pca_components(sampler.matrix(f"hidden{i}"), variance)
    return stats
