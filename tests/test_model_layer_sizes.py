"""Per-position sizes (``ElasticConfig.layer_sizes``): what ELM dynamic modules leave behind when
they widen one position's FFN and remove heads from another. The model must build, select, extract
and count each position at its own size."""

from __future__ import annotations

import pytest
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.metrics.size import count_flops, count_params
from elastic_lm.model import ElasticConfig, ElasticForMaskedLM

VOCAB = 29
# Layer 1's BERT block is wider (12 FFN units against 8) and has fewer heads (3 against 4); its
# MobileBERT candidate keeps the global sizes.
SIZES = [
    {"bert": {"intermediate_size": 8}},
    {"bert": {"intermediate_size": 12, "num_attention_heads": 3, "num_key_value_heads": 3}},
    {"bert": {"intermediate_size": 8}},
]


def config(**kw) -> ElasticConfig:
    base = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        num_layers=3,
        block_candidates=[["bert"], ["bert", "mobilebert"], ["bert"]],
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=12,
        bottleneck_size=8,
        ffn_stack=2,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_sizes=SIZES,
    )
    base.update(kw)
    return ElasticConfig(**base)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, VOCAB, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def model() -> ElasticForMaskedLM:
    torch.manual_seed(0)
    return ElasticForMaskedLM(config()).eval()


def test_each_position_is_built_at_its_own_size(model: ElasticForMaskedLM) -> None:
    layers = model.model.layers
    assert layers[0]["bert"].ffn.up.weight.shape == (8, 16)
    assert layers[1]["bert"].ffn.up.weight.shape == (12, 16)
    assert layers[1]["bert"].ffn.down.weight.shape == (16, 12)
    assert layers[1]["bert"].attention.q.weight.shape == (3 * 4, 16)
    assert layers[1]["bert"].attention.k.weight.shape == (3 * 4, 16)
    assert layers[1]["bert"].attention.o.weight.shape == (16, 3 * 4)
    assert layers[1]["mobilebert"].attention.q.weight.shape == (4 * 4, 8)  # no override: global
    assert layers[1]["mobilebert"].ffns[0].up.weight.shape == (12, 8)
    assert layers[2]["bert"].attention.q.weight.shape == (4 * 4, 16)
    assert layers[2]["bert"].ffn.up.weight.shape == (8, 16)
    largest = model.model.largest().layers
    assert [(la.heads, la.kv_heads, la.ffn) for la in largest] == [(4, 4, 8), (3, 3, 12), (4, 4, 8)]


def test_sizes_beyond_a_position_are_refused(model: ElasticForMaskedLM) -> None:
    full = model.model.largest()
    with pytest.raises(ArchitectureError, match="heads=4"):
        model.set_architecture(full.replace_layer(1, LayerArch("bert", heads=4, ffn=12)))
    with pytest.raises(ArchitectureError, match="ffn=12"):
        model.set_architecture(full.replace_layer(0, LayerArch("bert", heads=4, ffn=12)))
    assert model.architecture == full  # a refused architecture leaves the previous one selected


def test_extract_at_the_positions_full_size_equals_the_supernet(model: ElasticForMaskedLM, tmp_path) -> None:
    arch = Architecture(
        hidden=16,
        layers=(
            LayerArch("bert", heads=2, ffn=5),
            LayerArch("bert", heads=3, ffn=12),  # layer 1 at its full (resized) size
            LayerArch("bert", heads=4, ffn=8),
        ),
    )
    with model.using(arch), torch.no_grad():
        expected = model(**batch()).logits
    small = model.extract(arch).eval()
    with torch.no_grad():
        got = small(**batch()).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert small.config.layer_sizes == [
        {"bert": {"intermediate_size": 5, "num_attention_heads": 2, "num_key_value_heads": 2}},
        {"bert": {"intermediate_size": 12, "num_attention_heads": 3, "num_key_value_heads": 3}},
        {"bert": {"intermediate_size": 8, "num_attention_heads": 4, "num_key_value_heads": 4}},
    ]
    assert small.model.layers[1].ffn.up.weight.shape == (12, 16)
    assert small.model.layers[1].attention.q.weight.shape == (12, 16)
    n = sum(p.numel() for p in small.parameters())
    assert count_params(model.config, arch) == n
    assert count_params(small.config, small.architecture) == n
    assert count_flops(model.config, arch, 7) == count_flops(small.config, small.architecture, 7)
    small.save_pretrained(tmp_path)
    again = ElasticForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch()).logits, expected, rtol=0, atol=1e-5)


def test_full_network_size_counts_each_position_at_its_size(model: ElasticForMaskedLM) -> None:
    full = model.model.largest()
    bert_params = sum(
        p.numel() for name, p in model.named_parameters() if ".mobilebert." not in name
    )  # the super-network minus the idle MobileBERT candidate is exactly the largest network
    assert count_params(model.config, full) == bert_params


def test_layer_sizes_round_trip_through_the_saved_config(tmp_path) -> None:
    config().save_pretrained(tmp_path)
    loaded = ElasticConfig.from_pretrained(tmp_path)
    assert loaded.layer_sizes == SIZES
    rebuilt = ElasticForMaskedLM(loaded)
    assert rebuilt.model.layers[1]["bert"].attention.q.weight.shape == (12, 16)


def test_heads_only_override_of_a_multi_head_config_stays_multi_head() -> None:
    c = config(layer_sizes=[{}, {"bert": {"num_attention_heads": 2}}, {}])
    assert c.layer_heads(1, "bert") == (2, 2)
    assert c.layer_heads(0, "bert") == (4, 4)
    assert c.layer_heads(1, "mobilebert") == (4, 4)


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ([{}, {}], "one dict per layer position"),
        ([{}, {"sepconv": {"intermediate_size": 4}}, {}], "candidates there"),
        ([{}, {"bert": {"hidden_size": 4}}, {}], "use keys from"),
        ([{}, {"bert": {"intermediate_size": 13}}, {}], r"use 1\.\.12"),
        ([{}, {"bert": {"num_attention_heads": 3, "num_key_value_heads": 2}}, {}], "must divide"),
    ],
)
def test_bad_layer_sizes_name_the_field(sizes: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config(layer_sizes=sizes)
