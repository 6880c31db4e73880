"""The elastic causal LM generates like a stock transformers model: a KV cache that changes no logit,
``generate()`` with and without the cache giving the same tokens, and a sub-network generating exactly
what the stock ``LlamaForCausalLM`` exported from it generates."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache, GenerationConfig, LlamaForCausalLM

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.export import export_subnetwork
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
    ids, mask = prompts()
    beams = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 6, "num_beams": 3}
    with model.using(SUB):  # beam search reorders the cache between steps
        assert torch.equal(model.generate(**beams), stock.generate(**beams))
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


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["elastic_lm"] = None  # the folder must load with transformers alone
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, text = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
    with torch.inference_mode():
        logits = model(**batch).logits
        out = model.generate(**batch)  # every setting from generation_config.json
    print(json.dumps({
        "class": type(model).__name__,
        "kv_heads": model.config.num_key_value_heads,
        "ids": batch["input_ids"][0].tolist(),
        "logits": logits[0].tolist(),
        "tokens": out[0, batch["input_ids"].shape[1]:].tolist(),
        "max_new_tokens": model.generation_config.max_new_tokens,
        "eos": model.generation_config.eos_token_id,
    }))
    """
)


def test_an_exported_member_is_a_stock_folder_that_generates_like_the_sub_network(
    tmp_path: Path, tiny_tokenizer
) -> None:
    model = make(LLAMA)
    model.generation_config = GenerationConfig(
        max_new_tokens=9, do_sample=False, bos_token_id=2, eos_token_id=3, pad_token_id=0
    )
    done = export_subnetwork(model, SUB, tmp_path / "member", tokenizer=tiny_tokenizer)
    assert (done.format, done.model_class) == ("stock", "LlamaForCausalLM")
    assert json.loads((tmp_path / "member" / "export.json").read_text())["generation_config"]
    text = "the cat sat on the mat and the dog"
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "member"), text],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    ids = tiny_tokenizer([text], return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert got["ids"] == ids[0].tolist()
    assert (got["class"], got["kv_heads"], got["max_new_tokens"], got["eos"]) == ("LlamaForCausalLM", 1, 9, 3)
    with torch.inference_mode(), model.using(SUB):
        logits = model(input_ids=ids).logits[0]
        tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids))[0, ids.shape[1] :]
    assert float((torch.tensor(got["logits"]) - logits).abs().max()) <= 1e-5
    assert got["tokens"] == tokens.tolist()
    assert 0 < len(tokens) <= 9


def test_a_converted_llama_keeps_its_generation_settings_through_save_and_load(tmp_path: Path) -> None:
    from elastic_lm.convert import from_hf
    from elastic_lm.export.supernet import load_supernet, save_supernet

    stock = to_stock(make(LLAMA).extract(SUB))
    assert stock is not None
    stock.config.eos_token_id = 3
    stock.generation_config = GenerationConfig(max_new_tokens=7, eos_token_id=3, pad_token_id=0)
    elastic = from_hf(stock.eval(), task="causal-lm")
    assert elastic.config.eos_token_id == 3
    save_supernet(elastic, None, None, tmp_path / "supernet")
    loaded = load_supernet(tmp_path / "supernet").model
    assert (loaded.generation_config.max_new_tokens, loaded.generation_config.eos_token_id) == (7, 3)
    ids, mask = prompts()
    with torch.inference_mode():
        ours = loaded.generate(input_ids=ids, attention_mask=mask)
        theirs = stock.generate(input_ids=ids, attention_mask=mask)
    assert torch.equal(ours, theirs)
    assert ours.shape[1] > ids.shape[1]
