"""The sub-network API: set / reset / using, extraction round trips, reordering, layer calls."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.importance import register_measure, reorder_by_importance
from elastic_lm.model import (
    ElasticConfig,
    ElasticForCausalLM,
    ElasticForMaskedLM,
    ElasticForSequenceClassification,
    ElasticModel,
)
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.model.primitives import ElasticLinear

VOCAB = 41


def config(**kw) -> ElasticConfig:
    base = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        num_layers=3,
        block_candidates=[["bert", "sepconv"], ["mobilebert", "attention"], ["llama", "ffn"]],
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=12,
        bottleneck_size=8,
        ffn_stack=2,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    base.update(kw)
    return ElasticConfig(**base)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


SMALL = Architecture(
    hidden=12,
    layers=(
        LayerArch("sepconv", kernel=3, hidden=8),
        LayerArch("mobilebert", heads=2, ffn=5, bottleneck=6, ffn_stack=1),
        LayerArch("llama", head_ids=(1, 3), ffn_ids=(0, 4, 7)),
    ),
)


@pytest.fixture(scope="module")
def mlm() -> ElasticForMaskedLM:
    torch.manual_seed(0)
    return ElasticForMaskedLM(config()).eval()


def test_full_size_runs_without_slicing(mlm: ElasticForMaskedLM) -> None:
    mlm.set_architecture(SMALL)
    mlm.reset()
    assert mlm.architecture == mlm.backbone.largest()
    for m in mlm.modules():
        if isinstance(m, ElasticLinear):
            assert m.out_sel is None
            assert m.in_sel is None


def test_set_then_reset_restores_the_full_function(mlm: ElasticForMaskedLM) -> None:
    with torch.no_grad():
        full = mlm(**batch()).logits
        mlm.set_architecture(SMALL)
        small = mlm(**batch()).logits
        mlm.reset()
        again = mlm(**batch()).logits
    assert not torch.allclose(small, full)
    torch.testing.assert_close(again, full, atol=0, rtol=0)


def test_extracted_model_saves_and_loads_through_auto_classes(mlm: ElasticForMaskedLM, tmp_path) -> None:
    sub = mlm.extract(SMALL)
    assert sub.config.architecture is not None
    assert sub.config.num_layers == 3
    sub.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "elastic-lm"
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is ElasticForMaskedLM
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, sub(**batch()).logits)
    names = [n for n, _ in loaded.named_parameters()]
    assert "model.layers.0.conv.depthwise.weight" in names  # simple names, no block key
    assert loaded.model.layers[0].conv.depthwise.weight.shape == (8, 1, 3)


def test_extracting_drops_identity_layers_and_re_extracts(mlm: ElasticForMaskedLM) -> None:
    arch = Architecture(
        hidden=16,
        layers=(LayerArch("identity"), LayerArch("attention", heads=3), LayerArch("ffn", ffn=4)),
    )
    sub = mlm.extract(arch)
    assert len(sub.model.layers) == 2
    inner = Architecture(hidden=10, layers=(LayerArch("attention", heads=1), LayerArch("ffn", ffn=2)))
    with torch.no_grad(), sub.using(inner):
        expected = sub(**batch()).logits
    with torch.no_grad():
        torch.testing.assert_close(sub.extract(inner)(**batch()).logits, expected)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(
            num_attention_heads=6,
            num_key_value_heads=2,
            positions="rope",
            norm="rmsnorm",
            block_candidates=[["llama"], ["llama", "attention"], ["gpt2"]],
        ),
    ],
)
def test_reordering_keeps_the_full_function_and_sorts_scores(kw: dict) -> None:
    torch.manual_seed(1)
    model = ElasticForCausalLM(config(task="causal-lm", **kw)).eval()
    with torch.no_grad():
        before = model(**batch()).logits
        scores = reorder_by_importance(model)
        after = model(**batch()).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    rescored = reorder_by_importance(model)  # already sorted: a second pass is the identity
    for name, module in model.named_modules():
        if isinstance(module, ElasticFFN):
            s = rescored[name]
            assert torch.all(s[:-1] >= s[1:]), name
        if isinstance(module, ElasticAttention):
            group = module.max_heads // module.max_kv
            per_group = rescored[name].reshape(module.max_kv, group)
            assert torch.all(per_group[:, :-1] >= per_group[:, 1:])
            totals = per_group.sum(1)
            assert torch.all(totals[:-1] >= totals[1:])
    assert set(scores) == set(rescored)


def test_reordering_with_given_scores_and_a_custom_measure() -> None:
    torch.manual_seed(2)
    model = ElasticModel(config(block_candidates=[["bert"]] * 3)).eval()
    ffn = model.layers[0]["bert"].ffn
    up_before = ffn.up.weight.detach().clone()
    scores = {"layers.0.bert.ffn": torch.arange(12.0)}  # unit 11 most important
    reorder_by_importance(model, scores=scores)
    torch.testing.assert_close(ffn.up.weight[0], up_before[11])

    @register_measure("negative-magnitude")
    def negative(module: torch.nn.Module) -> torch.Tensor:
        from elastic_lm.importance.reorder import magnitude

        return -magnitude(module)

    reorder_by_importance(model, measure="negative-magnitude")
    with pytest.raises(ConfigError, match="measure='nope'"):
        reorder_by_importance(model, measure="nope")


def test_forward_layer_chains_to_the_full_forward(mlm: ElasticForMaskedLM) -> None:
    b = batch()
    mlm.set_architecture(SMALL)
    with torch.no_grad():
        out = mlm.model(**b, output_hidden_states=True)
        states = out.hidden_states
        assert len(states) == 4
        assert [s.shape[-1] for s in states] == [12, 8, 12, 12]  # layer 0 is 8 wide
        x = states[0]
        for i in range(3):
            x = mlm.model.forward_layer(i, x, b["attention_mask"])
            torch.testing.assert_close(x, states[i + 1])
    mlm.reset()


def test_attention_weights_path_equals_sdpa_path(mlm: ElasticForMaskedLM) -> None:
    mlm.set_architecture(SMALL)
    with torch.no_grad():
        fast = mlm(**batch()).logits
        out = mlm(**batch(), output_attentions=True)
    mlm.reset()
    torch.testing.assert_close(out.logits, fast, atol=1e-5, rtol=1e-5)
    assert out.attentions[0] is None  # the sepconv layer has no attention
    assert out.attentions[1].shape == (2, 2, 7, 7)
    torch.testing.assert_close(out.attentions[2].sum(-1), torch.ones(2, 2, 7))


def test_losses() -> None:
    torch.manual_seed(3)
    b = batch()
    mlm = ElasticForMaskedLM(config()).eval()
    labels = torch.full_like(b["input_ids"], -100)
    labels[:, 2] = b["input_ids"][:, 2]
    out = mlm(**b, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 2], labels[:, 2])
    torch.testing.assert_close(out.loss, expected)

    reg = ElasticForSequenceClassification(config(task="sequence-classification", num_labels=1))
    target = torch.tensor([0.5, -1.0])
    out = reg(**b, labels=target)
    torch.testing.assert_close(out.loss, ((out.logits.squeeze(-1) - target) ** 2).mean())

    clm = ElasticForCausalLM(config(task="causal-lm", tie_word_embeddings=False))
    ids = b["input_ids"]
    out = clm(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(out.loss, expected)


def test_causal_model_does_not_look_ahead() -> None:
    torch.manual_seed(4)
    clm = ElasticForCausalLM(config(task="causal-lm")).eval()
    ids = batch()["input_ids"]
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % VOCAB
    with torch.no_grad():
        a, b = clm(ids).logits, clm(changed).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        (Architecture(hidden=32, layers=(LayerArch("bert"),) * 3), "hidden=32"),
        (Architecture(hidden=16, layers=(LayerArch("bert"),) * 2), "has 2 layers"),
        (Architecture(hidden=16, layers=(LayerArch("gpt2"),) * 3), "block='gpt2'"),
        (
            Architecture(hidden=16, layers=(LayerArch("bert", heads=9), *(LayerArch("identity"),) * 2)),
            "heads=9",
        ),
        (
            Architecture(hidden=16, layers=(LayerArch("sepconv", kernel=4), *(LayerArch("identity"),) * 2)),
            "kernel=4",
        ),
    ],
)
def test_bad_architectures_raise_user_errors(mlm: ElasticForMaskedLM, arch: Architecture, match: str) -> None:
    before = mlm.architecture
    with pytest.raises(ArchitectureError, match=match):
        mlm.set_architecture(arch)
    assert mlm.architecture == before


def test_for_supernet_takes_bounds_from_the_largest_member() -> None:
    largest = Architecture(
        hidden=24,
        layers=(LayerArch("bert", heads=6, ffn=48), LayerArch("sepconv", kernel=5, hidden=32)),
    )
    cfg = ElasticConfig.for_supernet(
        largest, [("bert", "identity"), ("sepconv", "ffn")], vocab_size=50, head_dim=4
    )
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (32, 6, 48)
    assert cfg.conv_kernel_size == 5
    assert cfg.block_candidates[1] == ["sepconv", "ffn"]
    model = ElasticForMaskedLM(cfg)
    model.set_architecture(largest)  # the largest member fits
    with pytest.raises(ConfigError, match="block_types"):
        ElasticConfig.for_supernet(largest, [("bert",)], vocab_size=50)


def test_classification_loads_through_auto_class(tmp_path) -> None:
    model = ElasticForSequenceClassification(config(task="sequence-classification", num_labels=3))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(loaded) is ElasticForSequenceClassification
    assert loaded.config.num_labels == 3


def test_training_a_sub_network_updates_only_its_slice() -> None:
    """Slicing, not masking: weights outside the sub-network get no gradient at all."""
    torch.manual_seed(5)
    model = ElasticForMaskedLM(config(block_candidates=[["bert"]] * 3))
    arch = Architecture(hidden=8, layers=(LayerArch("bert", heads=2, ffn=5),) * 3)
    model.set_architecture(arch)
    b = batch()
    model(**b, labels=b["input_ids"]).loss.backward()
    attn = model.model.layers[0]["bert"].attention
    ffn = model.model.layers[0]["bert"].ffn
    assert attn.q.weight.grad[:8, :8].abs().sum() > 0
    assert attn.q.weight.grad[8:].abs().sum() == 0  # heads 2 and 3 (head_dim 4)
    assert attn.q.weight.grad[:, 8:].abs().sum() == 0  # hidden channels 8..15
    assert ffn.up.weight.grad[5:].abs().sum() == 0
    assert ffn.down.weight.grad[:, 5:].abs().sum() == 0
    assert model.model.embeddings.word.weight.grad[:, 8:].abs().sum() == 0


def test_gqa_head_selection_rule() -> None:
    from elastic_lm.model.attention import select_heads

    # 6 heads in 2 KV groups of 3: {0,1,2} read KV 0, {3,4,5} read KV 1
    assert select_heads(6, 2, heads=4, kv_heads=2) == ([0, 1, 3, 4], [0, 1])
    assert select_heads(6, 2, heads=4) == ([0, 1, 3, 4], [0, 1])  # fewest KV heads that fit
    assert select_heads(6, 2, heads=2, kv_heads=1) == ([0, 1], [0])
    assert select_heads(6, 2, heads=4, kv_heads=1) == ([0, 1, 2, 3], [0])  # head 3 borrowed
    assert select_heads(6, 2, head_ids=(4, 1)) == ([1, 4], [0, 1])
    assert select_heads(6, 2, heads=0) == ([], [])
    assert select_heads(4, 4, heads=3) == ([0, 1, 2], [0, 1, 2])
    with pytest.raises(ArchitectureError, match="head_ids"):
        select_heads(6, 2, head_ids=(0, 1, 3))  # 2 heads in group 0, 1 in group 1
    with pytest.raises(ArchitectureError, match="kv_heads=3"):
        select_heads(6, 2, heads=3, kv_heads=3)


@pytest.mark.parametrize("tied", [True, False])
def test_rope_model_round_trips_through_save_pretrained(tied: bool, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(6)
    cfg = config(
        task="causal-lm",
        block_candidates=[["llama"]] * 3,
        positions="rope",
        rope_theta=100.0,
        norm="rmsnorm",
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    model = ElasticForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, model(**batch()).logits)
