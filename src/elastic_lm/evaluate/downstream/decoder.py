"""Decoders: held-out perplexity and greedy continuations of prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from elastic_lm.data.config import DataConfig
from elastic_lm.errors import DataError
from elastic_lm.evaluate.downstream.models import (
    _device,
    folder_params,
    load_tokenizer,
)
from elastic_lm.evaluate.downstream.results import (
    DecoderResult,
    ModelEntry,
)


def load_causal_lm(folder: str | Path) -> nn.Module:
    """The folder as a causal LM (stock classes, or elastic-lm's own once registered), in eval mode."""
    from transformers import AutoModelForCausalLM

    import elastic_lm.model  # noqa: F401

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


@torch.no_grad()
def perplexity(model: nn.Module, blocks: Any, batch_size: int = 8) -> tuple[float, int]:
    """exp(mean next-token NLL) over the tokens of ``blocks``, and how many tokens were predicted."""
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64)
    count = 0
    for start in range(0, len(blocks), batch_size):
        rows = blocks[start : start + batch_size]
        ids = torch.tensor(rows["input_ids"], device=device)
        mask = torch.tensor(rows["attention_mask"], device=device) if "attention_mask" in rows else None
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        targets = ids[:, 1:]
        keep = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask[:, 1:].bool()
        losses = nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        )
        nll += losses[keep.reshape(-1)].double().sum().cpu()
        count += int(keep.sum())
    if count == 0:
        raise DataError(
            "no held-out tokens to score perplexity on; lower evaluate.max_length or raise "
            "evaluate.max_examples / data.test_ratio"
        )
    return float(torch.exp(nll / count)), count


@torch.no_grad()
def greedy_continuation(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """The greedy continuation of ``prompt`` (without the prompt).

    Uses ``generate`` where the model supports it (stock GPT-2 / Llama and elastic-lm's own causal
    class, both with a KV cache); any other model gets a plain loop that picks the same tokens, slower.
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    eos = tokenizer.eos_token_id
    can_generate = getattr(model, "can_generate", None)
    if callable(can_generate) and can_generate():
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        out = cast(Any, model).generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        new = out[0, ids.shape[1] :]
    else:
        new = greedy_tokens(model, ids, max_new_tokens, eos)
    return tokenizer.decode(new, skip_special_tokens=True)


def greedy_tokens(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, eos: int | None) -> torch.Tensor:
    """Up to ``max_new_tokens`` arg-max tokens after ``ids`` [1, T] (stops after EOS); no cache."""
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        token = int(logits[0, -1].argmax())
        new.append(token)
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
        if eos is not None and token == eos:
            break
    return torch.tensor(new, dtype=torch.long)


def evaluate_decoder(
    entry: ModelEntry,
    corpus: DataConfig,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    tokenizer_fallback: Callable[[], Any] | None = None,
    device: str = "auto",
) -> DecoderResult:
    """Held-out perplexity on ``corpus``'s test split (as causal LM) and greedy prompt continuations."""
    from elastic_lm.data.prepare import prepare_data

    tokenizer = load_tokenizer(entry.path, tokenizer_fallback)
    data = prepare_data(corpus.model_copy(update={"task": "clm"}), tokenizer)
    model = load_causal_lm(entry.path).to(_device(device))
    ppl, tokens = perplexity(model, data.splits["test"], batch_size)
    samples = [
        {"prompt": p, "completion": greedy_continuation(model, tokenizer, p, max_new_tokens)} for p in prompts
    ]
    return DecoderResult(entry.name, str(entry.path), folder_params(entry.path), ppl, tokens, samples)


__all__ = ["evaluate_decoder", "greedy_continuation", "greedy_tokens", "load_causal_lm", "perplexity"]
