"""A tiny sliceable super-network and space for training-loop tests (milliseconds per step).

Global width (first ``hidden`` channels), per-layer FFN width (first ``ffn`` units) and layer
dropping (``identity``), so some parameters get no gradient in a step, as in the real model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elastic_lm.architecture import Architecture, LayerArch

VOCAB, SEQ = 24, 6
WIDTHS = (8, 16)
FFNS = (8, 16, 32)


@dataclass
class ToyOutput:
    """Looks like an HF ModelOutput to the losses."""

    logits: Tensor
    hidden_states: tuple[Tensor | None, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class ToySpace:
    """Width x per-layer (FFN width or dropped) for ``n_layers`` layers; the first layer stays."""

    def __init__(self, n_layers: int = 2) -> None:
        self.n_layers = n_layers

    def _arch(self, hidden: int, ffns: list[int]) -> Architecture:
        layers = [LayerArch("identity") if f == 0 else LayerArch("bert", ffn=f) for f in ffns]
        return Architecture(hidden, tuple(layers))

    def sample(self, rng: random.Random) -> Architecture:
        ffns = [rng.choice(FFNS)] + [rng.choice((0, *FFNS)) for _ in range(self.n_layers - 1)]
        return self._arch(rng.choice(WIDTHS), ffns)

    def smallest(self) -> Architecture:
        return self._arch(WIDTHS[0], [FFNS[0]] + [0] * (self.n_layers - 1))

    def largest(self) -> Architecture:
        return self._arch(WIDTHS[-1], [FFNS[-1]] * self.n_layers)


class ToyElastic(nn.Module):
    """Embedding -> residual ReLU FFN layers with LayerNorm -> tied output projection."""

    def __init__(self, n_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        h, f = WIDTHS[-1], FFNS[-1]
        self.embed = nn.Embedding(VOCAB, h)
        self.up = nn.ModuleList(nn.Linear(h, f) for _ in range(n_layers))
        self.down = nn.ModuleList(nn.Linear(f, h) for _ in range(n_layers))
        self.norm = nn.ModuleList(nn.LayerNorm(h) for _ in range(n_layers))
        self.out_bias = nn.Parameter(torch.zeros(VOCAB))
        self.dropout = dropout
        self.space = ToySpace(n_layers)
        self.arch = self.space.largest()

    def set_architecture(self, arch: Architecture) -> None:
        self.arch = arch

    def reset(self) -> None:
        self.arch = self.space.largest()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ToyOutput:
        h = self.arch.hidden
        x = F.embedding(input_ids, self.embed.weight[:, :h])
        states: list[Tensor | None] = [x]
        for i, layer in enumerate(self.arch.layers):
            if layer.is_identity:
                states.append(None)
                continue
            f = layer.ffn
            up, down, norm = self.up[i], self.down[i], self.norm[i]
            y = F.relu(F.linear(x, up.weight[:f, :h], up.bias[:f]))
            y = F.dropout(y, self.dropout, self.training)
            y = F.linear(y, down.weight[:h, :f], down.bias[:h])
            x = F.layer_norm(x + y, (h,), norm.weight[:h], norm.bias[:h])
            states.append(x)
        logits = F.linear(x, self.embed.weight[:, :h], self.out_bias)
        return ToyOutput(logits, tuple(states) if output_hidden_states else None)


def toy_data(n: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """Sequences whose labels are the next token mod VOCAB (learnable), every position labelled."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (SEQ,), generator=g)
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": (ids + 1) % VOCAB,
            }
        )
    return rows


class ToyTeacher(nn.Module):
    """A fixed, narrower-or-wider external teacher (no elastic dimensions)."""

    def __init__(self, width: int = 12, n_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(n_layers))
        self.head = nn.Linear(width, VOCAB)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> ToyOutput:
        x = self.embed(input_ids)
        states = [x]
        for layer in self.layers:
            x = torch.tanh(layer(x)) + x
            states.append(x)
        return ToyOutput(self.head(x), tuple(states) if output_hidden_states else None)


def masking_collate(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack, then keep labels only at a random half of the positions (an MLM-style collator)."""
    batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    keep = torch.rand(batch["labels"].shape) < 0.5
    batch["labels"] = torch.where(keep, batch["labels"], torch.full_like(batch["labels"], -100))
    return batch


def hf_mlm_collator(seed: int = 0):
    """The transformers MLM collator with its own seeded generator, over a toy word-level vocab."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[MASK]": 1, "[CLS]": 2, "[SEP]": 3} | {f"w{i}": i for i in range(4, VOCAB)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[PAD]")),
        pad_token="[PAD]",
        mask_token="[MASK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.3, seed=seed)


def token_rows(n: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Unmasked token rows as the data package hands them to its collator."""
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(4, VOCAB, (SEQ,), generator=g).tolist()} for _ in range(n)]
