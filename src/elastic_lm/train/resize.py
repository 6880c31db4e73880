"""Physical resizing of the super-network's FFN and attention sub-layers, and of AdamW's state.

ELM's dynamic modules change the super-network while it trains: saturated FFNs get new units and
redundant attention heads are deleted. Both are real changes of parameter shapes (never masks), so
the optimiser must be told (:func:`resize_optimizer_state`) and the model config must describe the
new per-layer sizes (:func:`record_layer_sizes`): the model builds each position from
``config.layer_sizes``, so a saved checkpoint loads back at the resized shapes.

New units are appended *last*, removed heads leave a gap that the later heads close: sub-networks
that keep "the first k" units or heads, with k not reaching the change, compute exactly what they
computed before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.model.modeling import ElasticPreTrainedModel
from elastic_lm.model.primitives import ElasticLinear

# Keys of one entry of ``config.layer_sizes[i][block]``: the ElasticConfig fields a layer overrides.
FFN_KEY, HEADS_KEY, KV_KEY = "intermediate_size", "num_attention_heads", "num_key_value_heads"


@dataclass(frozen=True)
class ParamResize:
    """``new`` replaced ``old``: ``new.index_select(dim, dst) == old.index_select(dim, src)``, rest new."""

    old: nn.Parameter
    new: nn.Parameter
    dim: int
    src: torch.Tensor
    dst: torch.Tensor

    def carry(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (shaped like ``old``) moved to ``new``'s shape; new entries are zero."""
        out = tensor.new_zeros(self.new.shape)
        moved = tensor.index_select(self.dim, self.src.to(tensor.device))
        return out.index_copy(self.dim, self.dst.to(tensor.device), moved)


def _replace(lin: ElasticLinear, name: str, value: torch.Tensor, dim: int, src, dst) -> ParamResize:
    old = getattr(lin, name)
    new = nn.Parameter(value.to(dtype=old.dtype, device=old.device), requires_grad=old.requires_grad)
    setattr(lin, name, new)
    lin.out_features, lin.in_features = lin.weight.shape
    lin.reset()  # index selections may point past the new size; the block's next select() sets them
    return ParamResize(old, new, dim, torch.as_tensor(src), torch.as_tensor(dst))


def _resize_dim(
    lin: ElasticLinear, dim: int, keep: torch.Tensor, extra: int, init_std: float, generator
) -> list[ParamResize]:
    """Keep entries ``keep`` of ``lin``'s weight along ``dim`` (0: rows, 1: columns), then append
    ``extra`` new ones: small random rows (incoming weights), zero columns (outgoing weights)."""
    changes = []
    for name in ("weight", "bias"):
        p = getattr(lin, name)
        if p is None or (name == "bias" and dim == 1):
            continue
        kept = p.detach().index_select(dim, keep.to(p.device))
        shape = list(kept.shape)
        shape[dim] = extra
        if name == "weight" and dim == 0:
            new = torch.randn(shape, generator=generator, dtype=torch.float32).to(p.dtype) * init_std
        else:
            new = torch.zeros(shape, dtype=p.dtype)
        value = torch.cat([kept, new.to(p.device)], dim)
        n = len(keep)
        changes.append(_replace(lin, name, value, dim, keep, torch.arange(n)))
    return changes


def grow_ffn(
    ffn: ElasticFFN, units: int, init_std: float = 0.02, generator: torch.Generator | None = None
) -> list[ParamResize]:
    """Append ``units`` hidden units: random incoming weights, zero outgoing weights and biases.

    The zero outgoing weights keep the network's function unchanged at first; their gradient is not
    zero (the new units are active), so training starts using them at once.
    """
    if units < 1:
        raise ValueError(f"units={units} must be >= 1")
    keep = torch.arange(ffn.inner)
    changes = _resize_dim(ffn.up, 0, keep, units, init_std, generator)
    if ffn.gate is not None:
        changes += _resize_dim(ffn.gate, 0, keep, units, init_std, generator)
    changes += _resize_dim(ffn.down, 1, keep, units, init_std, generator)
    ffn.inner += units
    return changes


def remove_heads(att: ElasticAttention, heads: Sequence[int]) -> list[ParamResize]:
    """Delete query heads (their q/k/v rows and output-projection columns); later heads move up.

    Multi-head attention only: with grouped-query attention a head shares its KV head with others,
    and removing single query heads would leave groups of unequal size.
    """
    drop = sorted(set(int(h) for h in heads))
    if att.max_heads != att.max_kv:
        raise ConfigError(
            f"head removal needs multi-head attention; this layer has {att.max_heads} query heads in "
            f"{att.max_kv} KV groups (GQA); disable head pruning for this model"
        )
    if not drop:
        return []
    if drop[0] < 0 or drop[-1] >= att.max_heads or len(drop) >= att.max_heads:
        raise ArchitectureError(
            f"cannot remove heads {drop} of {att.max_heads}; keep at least one, ids in 0..{att.max_heads - 1}"
        )
    kept = [h for h in range(att.max_heads) if h not in drop]
    d = att.head_dim
    rows = torch.tensor([h * d + j for h in kept for j in range(d)], dtype=torch.long)
    changes: list[ParamResize] = []
    for lin in (att.q, att.k, att.v):
        changes += _resize_dim(lin, 0, rows, 0, 0.0, None)
    changes += _resize_dim(att.o, 1, rows, 0, 0.0, None)
    att.max_heads = att.max_kv = len(kept)
    att.n_heads = att.n_kv = len(kept)
    return changes


def resize_optimizer_state(optimizer: torch.optim.Optimizer, changes: Sequence[ParamResize]) -> None:
    """Swap resized parameters into ``optimizer`` and carry their state along.

    Moments of kept entries are kept; new entries start at zero (a fresh AdamW moment); the step
    count is shared by the whole tensor and kept, so bias correction stays that of the old entries.
    """
    where = {id(p): (g, i) for g in optimizer.param_groups for i, p in enumerate(g["params"])}
    for change in changes:
        slot = where.pop(id(change.old), None)
        if slot is None:
            continue
        group, index = slot
        group["params"][index] = change.new
        where[id(change.new)] = slot
        state = optimizer.state.pop(change.old, None)
        if state is None:
            continue
        optimizer.state[change.new] = {
            k: change.carry(v) if torch.is_tensor(v) and v.shape == change.old.shape else v
            for k, v in state.items()
        }


# ---- per-layer sizes in the config ---------------------------------------------------------------
def position_modules(model: ElasticPreTrainedModel, layer: int) -> Iterator[tuple[str, nn.Module]]:
    """(block type, module) for every block built at layer position ``layer``."""
    position = model.backbone.layers[layer]
    if isinstance(position, nn.ModuleDict):
        yield from position.items()
    else:
        yield model.backbone.largest().layers[layer].block, position


def ffns_at(model: ElasticPreTrainedModel, layer: int) -> list[tuple[str, ElasticFFN]]:
    """(block type, FFN) at a position; a MobileBERT block contributes its whole FFN stack."""
    found = ((b, m) for b, blk in position_modules(model, layer) for m in blk.modules())
    return [(b, m) for b, m in found if isinstance(m, ElasticFFN)]


def attentions_at(model: ElasticPreTrainedModel, layer: int) -> list[tuple[str, ElasticAttention]]:
    found = ((b, m) for b, blk in position_modules(model, layer) for m in blk.modules())
    return [(b, m) for b, m in found if isinstance(m, ElasticAttention)]


def layer_sizes(model: ElasticPreTrainedModel) -> list[dict[str, dict[str, int]]]:
    """The built sizes of every position and block: ``[{block: {field: size}}]`` (config format)."""
    out: list[dict[str, dict[str, int]]] = []
    for i in range(len(model.backbone.layers)):
        entry: dict[str, dict[str, int]] = {}
        for block, _ in position_modules(model, i):
            sizes: dict[str, int] = {}
            ffns = [m for b, m in ffns_at(model, i) if b == block]
            atts = [m for b, m in attentions_at(model, i) if b == block]
            if ffns:
                sizes[FFN_KEY] = ffns[0].inner
            if atts:
                sizes[HEADS_KEY], sizes[KV_KEY] = atts[0].max_heads, atts[0].max_kv
            if sizes:
                entry[block] = sizes
        out.append(entry)
    return out


def record_layer_sizes(model: ElasticPreTrainedModel) -> None:
    """Write the built sizes into ``model.config``: ``layer_sizes`` per position and block, and the
    global maxima (``intermediate_size``, ``num_attention_heads``) that bound any architecture."""
    sizes = layer_sizes(model)
    config = model.config
    config.layer_sizes = sizes
    ffn = [s[FFN_KEY] for entry in sizes for s in entry.values() if FFN_KEY in s]
    heads = [s[HEADS_KEY] for entry in sizes for s in entry.values() if HEADS_KEY in s]
    if ffn:
        config.intermediate_size = max(ffn)
    if heads and config.num_attention_heads == config.num_key_value_heads:
        config.num_attention_heads = config.num_key_value_heads = max(heads)
