"""Tiny super-networks for every search-space preset, shared by the export tests and the benchmark."""

from __future__ import annotations

from functools import cache

import torch
from transformers.utils import logging as hf_logging

from elastic_lm.model import ElasticConfig, ElasticPreTrainedModel, build_model
from elastic_lm.space import SearchSpace
from space_cases import PRESETS, tiny

VOCAB = 40
hf_logging.disable_progress_bar()  # keep test output readable
hf_logging.set_verbosity_error()
LLAMA_SHAPE = {
    "norm": "rmsnorm",
    "norm_eps": 1e-6,
    "positions": "rope",
    "type_vocab_size": 0,
    "embedding_norm": False,
    "final_norm": True,
    "use_bias": False,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}


def supernet_config(space: SearchSpace, task: str) -> ElasticConfig:
    """A super-network config large enough for every member of ``space``."""
    shape: dict = {
        "max_position_embeddings": 24,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "num_labels": 3,
    }
    if any("llama" in space.block_types(i) for i in range(len(space.largest().layers))):
        shape.update(LLAMA_SHAPE)
    return ElasticConfig.from_space(space, VOCAB, task, **shape)


def tasks_for(name: str) -> tuple[str, ...]:
    return (
        ("causal-lm", "sequence-classification")
        if name == "llama"
        else ("masked-lm", "sequence-classification")
    )


@cache
def supernet(name: str, task: str) -> ElasticPreTrainedModel:
    """The tiny super-network of preset ``name`` with random weights (seeded, eval mode)."""
    torch.manual_seed(0)
    return build_model(supernet_config(tiny(name), task)).eval()


def batch(seed: int, length: int = 7) -> dict[str, torch.Tensor]:
    """Random token ids and a mask with padding at the end of the second row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (2, length), generator=g)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, length - 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def main_output(out: object) -> torch.Tensor:
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.last_hidden_state  # type: ignore[attr-defined]


def real_tokens(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Outputs at real tokens only (padded positions are arbitrary in every implementation)."""
    return t[mask.bool()] if t.dim() == 3 else t


__all__ = [
    "PRESETS",
    "VOCAB",
    "batch",
    "main_output",
    "real_tokens",
    "supernet",
    "supernet_config",
    "tasks_for",
]
