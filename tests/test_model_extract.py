"""The test that matters most: an extracted sub-network computes exactly what the super-network
computes with that sub-network selected, and its size is what the analytic metrics say."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.metrics.size import count_flops, count_params
from elastic_lm.model import ElasticConfig, build_model

ALL_BLOCKS = ["bert", "mobilebert", "attention", "ffn", "sepconv", "llama", "gpt2"]
VOCAB, T = 37, 6


def encoder_config(task: str) -> ElasticConfig:
    """Every block type at every position, MHA, learned positions, LayerNorm."""
    return ElasticConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_layers=3,
        block_candidates=[ALL_BLOCKS] * 3,
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=12,
        bottleneck_size=8,
        ffn_stack=2,
        conv_kernel_size=7,
        max_position_embeddings=16,
        task=task,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def llama_config(task: str) -> ElasticConfig:
    """Llama-style: GQA (6 heads in 3 KV groups), RoPE, RMSNorm, no biases, untied head."""
    return ElasticConfig(
        vocab_size=VOCAB,
        hidden_size=12,
        num_layers=3,
        block_candidates=[["llama", "ffn", "attention"]] * 3,
        num_attention_heads=6,
        num_key_value_heads=3,
        head_dim=4,
        intermediate_size=10,
        hidden_act="silu",
        norm="rmsnorm",
        norm_eps=1e-6,
        positions="rope",
        type_vocab_size=0,
        embedding_norm=False,
        final_norm=True,
        use_bias=False,
        tie_word_embeddings=False,
        task=task,
        num_labels=1,
        pooling="last",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


@st.composite
def heads_choice(draw: st.DrawFn, max_heads: int, max_kv: int) -> dict:
    group = max_heads // max_kv
    if draw(st.integers(0, 5)) == 0:  # every head pruned: the sub-layer adds only its bias
        return {"head_ids": ()}
    if draw(st.booleans()):  # explicit subset, equal count per kept KV group
        groups = draw(st.lists(st.integers(0, max_kv - 1), min_size=1, unique=True))
        per = draw(st.integers(1, group))
        ids: list[int] = []
        for g in groups:
            ids += draw(st.lists(st.integers(0, group - 1), min_size=per, max_size=per, unique=True))
            ids[-per:] = [g * group + j for j in ids[-per:]]
        return {"head_ids": tuple(ids)}
    if group == 1:
        return {"heads": draw(st.integers(1, max_heads))}
    kv = draw(st.integers(1, max_kv))  # heads per KV head may exceed the group: heads borrowed
    return {"heads": kv * draw(st.integers(0, max_heads // kv)), "kv_heads": kv}


@st.composite
def architectures(draw: st.DrawFn, config: ElasticConfig) -> Architecture:
    hidden = draw(st.integers(4, config.hidden_size))
    layers = []
    for cands in config.block_candidates:
        block = draw(st.sampled_from([*cands, "identity"]))
        kw: dict = {"block": block}
        if block == "identity":
            layers.append(LayerArch(**kw))
            continue
        if draw(st.booleans()):
            kw["hidden"] = draw(st.integers(4, config.hidden_size))
        if block in ("bert", "mobilebert", "attention", "llama", "gpt2"):
            kw.update(draw(heads_choice(config.num_attention_heads, config.num_key_value_heads)))
        if block in ("bert", "mobilebert", "ffn", "llama", "gpt2"):
            if draw(st.booleans()):
                kw["ffn"] = draw(st.integers(1, config.intermediate_size))
            else:
                kw["ffn_ids"] = tuple(
                    draw(st.lists(st.integers(0, config.intermediate_size - 1), unique=True))
                )
        if block == "sepconv":
            kw["kernel"] = draw(st.sampled_from([1, 3, 5, 7]))
        if block == "mobilebert":
            kw["bottleneck"] = draw(st.integers(4, config.bottleneck_size))
            kw["ffn_stack"] = draw(st.integers(1, config.ffn_stack))
        layers.append(LayerArch(**kw))
    return Architecture(hidden=hidden, layers=tuple(layers))


def inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


CONFIGS = {
    (kind, task): (encoder_config if kind == "encoder" else llama_config)(task)
    for kind in ("encoder", "llama")
    for task in ("masked-lm", "causal-lm", "sequence-classification")
}
MODELS: dict = {}


def supernet(kind: str, task: str):
    if (kind, task) not in MODELS:
        torch.manual_seed(0)
        MODELS[kind, task] = build_model(CONFIGS[kind, task]).eval()
    return MODELS[kind, task]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_extracted_equals_selected_supernet_and_sizes_agree(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["encoder", "llama"]))
    task = data.draw(st.sampled_from(["masked-lm", "causal-lm", "sequence-classification"]))
    model, config = supernet(kind, task), CONFIGS[kind, task]
    arch = data.draw(architectures(config))
    batch = inputs(data.draw(st.integers(0, 100)))
    with torch.no_grad(), model.using(arch):
        expected = model(**batch).logits
        sub = model.extract(arch)
        got = sub(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.architecture == model.backbone.largest()  # using() restored the full network

    n_params = sum(p.numel() for p in sub.parameters())
    assert count_params(config, arch) == n_params
    emb = sum(
        p.numel() for n, p in sub.named_parameters() if n.startswith("model.embeddings.") and "norm" not in n
    )
    assert count_params(config, arch, include_embeddings=False) == n_params - emb
    assert len(sub.model.layers) == arch.depth


def measured_flops(model, batch: dict[str, torch.Tensor]) -> int:
    """torch's own FLOP counter. Attention weights are asked for because the counter does not
    see inside the CPU kernel of scaled_dot_product_attention (the eager path does the same
    arithmetic)."""
    with FlopCounterMode(display=False) as counter:
        model(**batch, output_attentions=True)
    return counter.get_total_flops()


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_count_flops_matches_torch_flop_counter_on_sliced_supernet(data: st.DataObject) -> None:
    """The selected super-network does only the sub-network's work (slicing, not masking)."""
    kind = data.draw(st.sampled_from(["encoder", "llama"]))
    task = data.draw(st.sampled_from(["masked-lm", "causal-lm"]))
    model, config = supernet(kind, task), CONFIGS[kind, task]
    arch = data.draw(architectures(config))
    batch = {"input_ids": inputs(0)["input_ids"][:1]}  # one sequence, no padding
    with model.using(arch):
        assert measured_flops(model, batch) == count_flops(config, arch, T)
    assert measured_flops(model.extract(arch), batch) == count_flops(config, arch, T)


def test_quarter_flops_sub_network_does_about_a_quarter_of_the_work() -> None:
    config = encoder_config("masked-lm")
    model = supernet("encoder", "masked-lm")
    full = Architecture(hidden=16, layers=(LayerArch("bert", heads=4, ffn=12),) * 3)
    small = Architecture(hidden=8, layers=(LayerArch("bert", heads=2, ffn=6),) * 3)
    batch = {"input_ids": inputs(0)["input_ids"][:1]}
    with model.using(full):
        big_flops = measured_flops(model, batch)
    with model.using(small):
        small_flops = measured_flops(model, batch)
    assert big_flops == count_flops(config, full, T)
    assert small_flops < 0.6 * big_flops
