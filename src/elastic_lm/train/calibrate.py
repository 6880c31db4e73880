"""Reorder a seeded decoder super-network by importance on the config's own text, before training.

Why: the super-network's sub-networks keep "the first k" units, heads and channels. Sorting the
pre-trained weights by importance first (a permutation: the full model's output is unchanged) makes
every smaller member start from the parts that carry the signal, so search and healing start from
meaningful perplexities (``model.decoder_importance`` in the config names the scores).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError

if TYPE_CHECKING:
    from elastic_lm.model.modeling import ElasticPreTrainedModel


def calibration_batches(config: Config, n_batches: int, batch_size: int = 8) -> list[dict[str, Any]]:
    """The first ``n_batches`` collated batches of the training split (causal LM text: no masking, so
    the same rows give the same batches every time; padding is masked)."""
    from transformers import AutoTokenizer

    from elastic_lm.assets.models import model_folder
    from elastic_lm.data.prepare import prepare_data

    tokenizer = AutoTokenizer.from_pretrained(
        str(model_folder(config.model.tokenizer or config.model.source))
    )
    prepared = prepare_data(config.data, tokenizer)
    train = prepared.splits["train"]
    batches = []
    for first in range(0, min(len(train), n_batches * batch_size), batch_size):
        batch = prepared.collator([train[i] for i in range(first, min(len(train), first + batch_size))])
        batches.append({k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")})
    return batches


def reorder_from_config(model: torch.nn.Module, config: Config) -> dict[str, int]:
    """Apply ``model.decoder_importance`` to a freshly seeded causal LM in place; returns what moved."""
    names = list(config.model.decoder_importance)
    if not names:
        return {}
    if config.model.task != "causal-lm":
        raise ConfigError(
            f"model.decoder_importance={names} reorders decoders; model.task is {config.model.task!r}: "
            "use causal-lm or leave model.decoder_importance empty"
        )
    from elastic_lm.importance.decoder import decoder_importance, reorder_decoder

    batches = calibration_batches(config, config.model.importance_batches)
    was_training = model.training
    model.eval()
    elastic = cast("ElasticPreTrainedModel", model)
    scores = decoder_importance(elastic, batches, names)
    done = reorder_decoder(elastic, scores, dims=names)
    model.train(was_training)
    return done


__all__ = ["calibration_batches", "reorder_from_config"]
