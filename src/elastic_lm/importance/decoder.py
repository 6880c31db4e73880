"""Importance of every dimension of a decoder (Llama / GPT-2 blocks), from activations on the user's text.

Why: a sub-network keeps "the first k" heads, units and channels and whichever layers the architecture
names. Cutting a pre-trained decoder without sorting first keeps arbitrary parts; sorting by importance
first keeps the parts that carry the signal, so quality is meaningful before any healing (Minitron,
Sheared-LLaMA, ShortGPT).

Scores, each selectable by name (:data:`DECODER_SCORES`), measured on the full network:

- ``ffn``: per FFN unit, the mean absolute value of its activation (the input of the down projection);
- ``heads``: per query head, the mean L2 norm of its attention output (before the output projection);
  a KV group scores the sum of its heads, so reordering moves whole groups (grouped-query attention
  stays consistent: every kept head still reads its own KV head);
- ``hidden``: per hidden channel, the mean absolute value of every RMSNorm / LayerNorm output summed
  over the norms (the channels the network reads most);
- ``block``: per layer, the mean cosine distance ``1 - cos(input, output)`` of the block (ShortGPT's
  block importance: a layer that barely turns its input matters little);
- ``removal_perplexity``: per layer, the perplexity of the network with that layer removed.

:func:`reorder_decoder` permutes units, heads (groups first) and hidden channels so the most important
come first; it is a permutation of weights, so the full model computes exactly what it did before.
Layers are not reordered (order is the computation); :func:`keep_layers` drops the least important.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.blocks import PreNormBlock
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.model.modeling import ElasticModel, ElasticPreTrainedModel
from elastic_lm.model.primitives import ElasticLinear

DECODER_SCORES: tuple[str, ...] = ("ffn", "heads", "hidden", "block", "removal_perplexity")
REORDERABLE: tuple[str, ...] = ("ffn", "heads", "hidden")
Batch = Mapping[str, torch.Tensor]


@dataclass
class DecoderScores:
    """Scores by name; per-layer dicts are keyed by layer position. Higher means more important."""

    ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    hidden: torch.Tensor | None = None
    block: torch.Tensor | None = None  # (positions,); NaN where a position holds no layer
    removal_perplexity: torch.Tensor | None = None  # (positions,); NaN where no layer
    perplexity: float | None = None  # of the full network on the same text


def _check_names(names: Iterable[str], allowed: Sequence[str], what: str) -> list[str]:
    out = list(names)
    unknown = [n for n in out if n not in allowed]
    if unknown:
        raise ConfigError(f"{what}: {unknown[0]!r} is unknown; use names from {', '.join(allowed)}")
    return out


def decoder_blocks(model: ElasticPreTrainedModel) -> dict[int, PreNormBlock]:
    """The block at each kept position of the selected architecture (Llama / GPT-2 blocks only)."""
    backbone: ElasticModel = model.backbone
    fixed = backbone.config.fixed_architecture is not None
    blocks: dict[int, PreNormBlock] = {}
    for i, la in enumerate(model.architecture.layers):
        if la.is_identity:
            continue
        block = backbone.layers[i] if fixed else backbone.layers[i][la.block]
        if not isinstance(block, PreNormBlock):
            raise ArchitectureError(
                f"layer {i} is a {la.block!r} block; decoder importance covers llama and gpt2 blocks only"
            )
        blocks[i] = block
    return blocks


def _tokens(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    return ids, (torch.ones_like(ids) if mask is None else mask).bool()


class _Collector:
    """Forward hooks summing |activation| statistics over real tokens (padding excluded)."""

    def __init__(self) -> None:
        self.mask = torch.ones(1, 1, dtype=torch.bool)
        self.sums: dict[str, torch.Tensor] = {}
        self.tokens = 0

    def add(self, key: str, per_token: torch.Tensor) -> None:
        """``per_token`` (B, T, n): summed over the real tokens into ``sums[key]``."""
        value = per_token.detach().float()[self.mask.to(per_token.device)].sum(0).cpu()
        self.sums[key] = self.sums.get(key, 0) + value

    def mean(self, key: str) -> torch.Tensor:
        return self.sums[key] / max(self.tokens, 1)


def _hooks(blocks: dict[int, PreNormBlock], final_norm: nn.Module | None, c: _Collector, names: list[str]):
    handles = []
    for i, block in blocks.items():
        if "ffn" in names:
            handles.append(
                block.ffn.down.register_forward_pre_hook(lambda m, a, i=i: c.add(f"ffn{i}", a[0].abs()))
            )
        if "heads" in names:
            att = block.attention

            def heads(m: nn.Module, a: tuple, i: int = i, att: ElasticAttention = att) -> None:
                x = a[0]
                c.add(f"heads{i}", x.view(*x.shape[:-1], att.max_heads, att.head_dim).norm(dim=-1))

            handles.append(att.o.register_forward_pre_hook(heads))
        if "hidden" in names:
            for norm in (block.norm1, block.norm2):
                handles.append(norm.register_forward_hook(lambda m, a, out: c.add("hidden", out.abs())))
    if "hidden" in names and final_norm is not None:
        handles.append(final_norm.register_forward_hook(lambda m, a, out: c.add("hidden", out.abs())))
    return handles


def _nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token negative log-likelihood over pairs of real tokens, and their count."""
    keep = mask[:, 1:] & mask[:, :-1]
    loss = F.cross_entropy(logits[:, :-1][keep].float(), ids[:, 1:][keep], reduction="sum")
    return float(loss), int(keep.sum())


def _perplexity(model: ElasticPreTrainedModel, batches: Sequence[Batch]) -> float:
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in batches:
        ids, mask = _tokens(batch)
        ids, mask = ids.to(device), mask.to(device)
        out = model(input_ids=ids, attention_mask=mask.long())
        nll, n = _nll(out.logits, ids, mask)
        total, count = total + nll, count + n
    return math.exp(total / max(count, 1))


def sub_perplexity(model: ElasticPreTrainedModel, arch: Architecture, batches: Sequence[Batch]) -> float:
    """Perplexity of the sub-network ``arch`` on ``batches`` (no training): how well a cut starts."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), model.using(arch):
            return _perplexity(model, batches)
    finally:
        model.train(was_training)


def decoder_importance(
    model: ElasticPreTrainedModel,
    batches: Sequence[Batch],
    names: Iterable[str] = ("ffn", "heads", "hidden", "block"),
) -> DecoderScores:
    """Score the full network (its largest architecture) on ``batches`` (``input_ids``, optional
    ``attention_mask``; a few hundred sequences of the user's text), for each score in ``names``.

    ``removal_perplexity`` runs one pass over ``batches`` per layer; the others share a single pass.
    """
    wanted = _check_names(names, DECODER_SCORES, "importance scores")
    if model.config.task != "causal-lm":
        raise ConfigError(f"decoder importance needs a causal-lm model, not task={model.config.task!r}")
    if not batches:
        raise ConfigError("decoder importance needs at least one batch of text")
    largest = model.backbone.largest()
    scores = DecoderScores()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), model.using(largest):
            blocks = decoder_blocks(model)
            c = _Collector()
            handles = _hooks(blocks, model.backbone.final_norm, c, wanted)
            distance = torch.zeros(len(largest.layers), dtype=torch.float64)
            total, count = 0.0, 0
            try:
                for batch in batches:
                    ids, mask = _tokens(batch)
                    ids, mask = ids.to(device), mask.to(device)
                    c.mask, c.tokens = mask, c.tokens + int(mask.sum())
                    out = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
                    nll, n = _nll(out.logits, ids, mask)
                    total, count = total + nll, count + n
                    states = out.hidden_states
                    for i in blocks:
                        cos = F.cosine_similarity(states[i].float(), states[i + 1].float(), dim=-1)
                        distance[i] += float((1 - cos)[mask].sum())
            finally:
                for h in handles:
                    h.remove()
            scores.perplexity = math.exp(total / max(count, 1))
            kept = torch.tensor([i in blocks for i in range(len(largest.layers))])
            if "block" in wanted:
                scores.block = torch.where(kept, distance / max(c.tokens, 1), math.nan).float()
            scores.ffn = {i: c.mean(f"ffn{i}") for i in blocks if "ffn" in wanted}
            scores.heads = {i: c.mean(f"heads{i}") for i in blocks if "heads" in wanted}
            if "hidden" in wanted:
                scores.hidden = c.mean("hidden")
        if "removal_perplexity" in wanted:
            scores.removal_perplexity = _removal_perplexity(model, batches, largest)
    finally:
        model.train(was_training)
    return scores


def _removal_perplexity(
    model: ElasticPreTrainedModel, batches: Sequence[Batch], largest: Architecture
) -> torch.Tensor:
    out = torch.full((len(largest.layers),), math.nan)
    with torch.inference_mode():
        for i, la in enumerate(largest.layers):
            if la.is_identity:
                continue
            layers = list(largest.layers)
            layers[i] = LayerArch("identity")
            with model.using(Architecture(hidden=largest.hidden, layers=tuple(layers), meta=largest.meta)):
                out[i] = _perplexity(model, batches)
    return out


# -- permutations (each leaves the full network's function unchanged) -------------------------------
def _permute(lin: ElasticLinear | nn.Module, dim: int, order: torch.Tensor, bias: bool = False) -> None:
    lin.weight.data = lin.weight.data.index_select(dim, order.to(lin.weight.device))
    if bias and getattr(lin, "bias", None) is not None:
        lin.bias.data = lin.bias.data.index_select(0, order.to(lin.bias.device))


def permute_ffn(ffn: ElasticFFN, order: torch.Tensor) -> None:
    """Unit ``order[j]`` becomes unit ``j``."""
    for lin in (ffn.up, ffn.gate):
        if lin is not None:
            _permute(lin, 0, order, bias=True)
    _permute(ffn.down, 1, order)


def head_order(att: ElasticAttention, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(query-head order, KV-head order): groups by summed score, heads by score inside each group."""
    group = att.max_heads // att.max_kv
    per_group = score.reshape(att.max_kv, group)
    kv = per_group.sum(1).argsort(descending=True, stable=True)
    q = torch.cat([g * group + per_group[g].argsort(descending=True, stable=True) for g in kv])
    return q, kv


def permute_heads(att: ElasticAttention, q_order: torch.Tensor, kv_order: torch.Tensor) -> None:
    """Query head ``q_order[j]`` becomes head ``j``, KV head ``kv_order[g]`` becomes group ``g``; every
    query head must stay in the group it reads (``head_order`` guarantees it)."""
    group = att.max_heads // att.max_kv
    if not torch.equal(q_order.reshape(att.max_kv, group) // group, kv_order[:, None].expand(-1, group)):
        raise ArchitectureError("a head order must keep every query head with its own KV head")

    def rows(heads: torch.Tensor) -> torch.Tensor:
        return (heads[:, None] * att.head_dim + torch.arange(att.head_dim)).reshape(-1)

    _permute(att.q, 0, rows(q_order), bias=True)
    _permute(att.k, 0, rows(kv_order), bias=True)
    _permute(att.v, 0, rows(kv_order), bias=True)
    _permute(att.o, 1, rows(q_order))


def permute_hidden(model: ElasticPreTrainedModel, order: torch.Tensor) -> None:
    """Channel ``order[j]`` of the residual stream becomes channel ``j`` everywhere it is read or written.

    Norms are per-channel (RMSNorm's mean of squares and LayerNorm's statistics do not depend on channel
    order), so permuting the embeddings, every norm, every projection's hidden side and the LM head
    together changes no output.
    """
    backbone: ElasticModel = model.backbone
    hidden = backbone.config.hidden_size
    model.reset()
    blocks = decoder_blocks(model)
    if any(b.attention.hidden != hidden or b.ffn.hidden != hidden for b in blocks.values()):
        raise ArchitectureError("hidden-channel reordering needs every layer built at the full width")
    emb = backbone.embeddings
    for table in (emb.word, emb.position, emb.token_type):
        if table is not None:
            _permute(table, 1, order)
    norms: list[nn.Module] = [n for n in (emb.norm, backbone.final_norm) if n is not None]
    for block in blocks.values():
        norms += [block.norm1, block.norm2]
        for lin in (block.attention.q, block.attention.k, block.attention.v, block.ffn.up, block.ffn.gate):
            if lin is not None:
                _permute(lin, 1, order)
        _permute(block.attention.o, 0, order, bias=True)
        _permute(block.ffn.down, 0, order, bias=True)
    for norm in norms:
        _permute(norm, 0, order, bias=True)
    head = getattr(model, "lm_head", None)
    if head is not None:
        _permute(head, 1, order)


def reorder_decoder(
    model: ElasticPreTrainedModel, scores: DecoderScores, dims: Iterable[str] = REORDERABLE
) -> dict[str, int]:
    """Permute ``dims`` (``ffn``, ``heads``, ``hidden``) most important first, in place; returns how
    many layers (or 1 for ``hidden``) each dimension reordered. The model is left at its largest."""
    wanted = _check_names(dims, REORDERABLE, "reorder dims")
    done = dict.fromkeys(wanted, 0)
    model.reset()
    blocks = decoder_blocks(model)
    with torch.no_grad():
        for i, block in blocks.items():
            if "ffn" in wanted and i in scores.ffn:
                permute_ffn(block.ffn, scores.ffn[i].argsort(descending=True, stable=True))
                done["ffn"] += 1
            if "heads" in wanted and i in scores.heads:
                permute_heads(block.attention, *head_order(block.attention, scores.heads[i]))
                done["heads"] += 1
        if "hidden" in wanted and scores.hidden is not None:
            permute_hidden(model, scores.hidden.argsort(descending=True, stable=True))
            done["hidden"] = 1
    model.reset()
    return done


def keep_layers(arch: Architecture, layer_scores: torch.Tensor, keep: int) -> Architecture:
    """``arch`` with only its ``keep`` most important layers (by ``block`` or ``removal_perplexity``
    scores); the others become identity. Ties keep the earlier layer."""
    kept = [i for i, la in enumerate(arch.layers) if not la.is_identity]
    if not 1 <= keep <= len(kept):
        raise ConfigError(f"keep={keep} is not allowed; keep between 1 and the {len(kept)} layers there")
    ranked = sorted(kept, key=lambda i: (-float(layer_scores[i]), i))[:keep]
    layers = tuple(la if i in ranked else LayerArch("identity") for i, la in enumerate(arch.layers))
    return Architecture(hidden=arch.hidden, layers=layers, meta=arch.meta)


LAYER_SCORES: tuple[str, ...] = ("block", "removal_perplexity")


def layer_scores(scores: DecoderScores, name: str) -> torch.Tensor:
    """The per-layer score ``name`` (``block`` or ``removal_perplexity``), for :func:`keep_layers`."""
    _check_names([name], LAYER_SCORES, "layer score")
    value = getattr(scores, name)
    if value is None:
        raise ConfigError(f"layer score {name!r} was not computed; pass it in decoder_importance(names=...)")
    return value


__all__ = [
    "DECODER_SCORES",
    "LAYER_SCORES",
    "REORDERABLE",
    "DecoderScores",
    "decoder_blocks",
    "decoder_importance",
    "head_order",
    "keep_layers",
    "layer_scores",
    "permute_ffn",
    "permute_heads",
    "permute_hidden",
    "reorder_decoder",
    "sub_perplexity",
]
