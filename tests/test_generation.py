"""The elastic causal LM generates like a stock transformers model: a KV cache that changes no logit,
``generate()`` with and without the cache giving the same tokens, and a sub-network generating exactly
what the stock ``LlamaForCausalLM`` exported from it generates."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaForCausalLM

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.export.stock import to_stock
from elastic_lm.model import ElasticConfig, ElasticForCausalLM, build_model

VOCAB = 50
LLAMA = {
    "vocab_size": VOCAB,
    "hidden_size": 12,
    "num_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 4,
    "intermediate_size": 12,
    "max_position_embeddings": 64,
    "block_candidates": [["llama", "identity"]] * 3,
    "type_vocab_size": 0,
    "embedding_norm": False,
    "final_norm": True,
    "norm": "rmsnorm",
    "norm_eps": 1e-6,
    "positions": "rope",
    "use_bias": False,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "task": "causal-lm",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "pad_token_id": 0,
    "initializer_range": 0.4,  # random weights large enough that greedy tokens vary
}
GPT2 = {
    **LLAMA,
    "block_candidates": [["gpt2"]] * 3,
    "num_key_value_heads": 0,
    "norm": "layernorm",
    "positions": "learned",
    "use_bias": True,
    "hidden_act": "gelu_new",
    "tie_word_embeddings": True,
}
# 4 heads in 2 KV groups: keep KV group 1 with both its heads, drop the middle layer, then one group
SUB = Architecture(
    hidden=12,
    layers=(
        LayerArch("llama", head_ids=(2, 3), ffn=7),
        LayerArch("identity"),
        LayerArch("llama", heads=2, kv_heads=1, ffn=7),
    ),
)


def make(shape: dict) -> ElasticForCausalLM:
    torch.manual_seed(0)
    model = build_model(ElasticConfig(**shape)).eval()
    assert isinstance(model, ElasticForCausalLM)
    return model


def prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts, the second left-padded by two tokens (as batched generation pads)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    ids[1, :2], mask[1, :2] = 0, 0
    return ids, mask


def greedy(model: torch.nn.Module, use_cache: bool = True, new: int = 12) -> torch.Tensor:
    ids, mask = prompts()
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False, use_cache=use_cache
    )
    return out[:, ids.shape[1] :]


@pytest.mark.parametrize("shape", [LLAMA, GPT2], ids=["llama", "gpt2"])
def test_cached_steps_give_the_logits_of_a_full_pass(shape: dict) -> None:
    model = make(shape)
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full = model(input_ids=ids).logits
        cache = DynamicCache()
        first = model(input_ids=ids[:, :5], past_key_values=cache, use_cache=True)
        assert first.past_key_values is cache
        assert cache.get_seq_length() == 5
        steps = [first.logits]
        steps.append(model(input_ids=ids[:, 5:7], past_key_values=cache).logits)  # two at once
        for t in (7, 8):
            steps.append(model(input_ids=ids[:, t : t + 1], past_key_values=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [LLAMA, GPT2], ids=["llama", "gpt2"])
def test_generate_gives_the_same_tokens_with_and_without_the_cache(shape: dict) -> None:
    model = make(shape)
    cached, uncached = greedy(model, use_cache=True), greedy(model, use_cache=False)
    assert cached.shape == (2, 12)
    assert torch.equal(cached, uncached)
    assert len({tuple(row.tolist()) for row in cached}) == 2  # the padded row is not a copy of the other


def test_generate_with_the_cache_feeds_one_token_per_step() -> None:
    model = make(LLAMA)
    lengths: list[int] = []
    hook = model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: lengths.append(kwargs.get("input_ids", args[0] if args else None).shape[1]),
        with_kwargs=True,
    )
    try:
        greedy(model, new=5)
    finally:
        hook.remove()
    assert lengths == [6, 1, 1, 1, 1]


def test_a_sub_network_generates_what_its_stock_llama_export_generates() -> None:
    model = make(LLAMA)
    stock = to_stock(model.extract(SUB))
    assert isinstance(stock, LlamaForCausalLM)
    assert stock.config.num_key_value_heads == 1
    assert stock.config.num_hidden_layers == 2
    with model.using(SUB):
        ours = greedy(model)
        ours_uncached = greedy(model, use_cache=False)
    theirs = greedy(stock.eval())
    assert torch.equal(ours, theirs)
    assert torch.equal(ours_uncached, theirs)
    assert not torch.equal(ours, greedy(model))  # the full network writes something else


def test_a_layer_without_heads_keeps_the_cache_aligned() -> None:
    model = make(LLAMA)
    arch = Architecture(
        hidden=12,
        layers=(LayerArch("llama", heads=0, kv_heads=0, ffn=12), *SUB.layers[1:]),
    )
    with model.using(arch):
        assert torch.equal(greedy(model), greedy(model, use_cache=False))


def test_a_mask_that_does_not_cover_the_cached_tokens_is_refused() -> None:
    model = make(LLAMA)
    ids = torch.randint(3, VOCAB, (1, 4))
    with torch.inference_mode():
        cache = model(input_ids=ids, use_cache=True).past_key_values
        with pytest.raises(ArchitectureError, match="covers 1 tokens but the cache holds 4"):
            model(input_ids=ids[:, :1], attention_mask=torch.ones(1, 1), past_key_values=cache)
