"""Every preset, tiny and at its default shape: membership, encoding, extremes and exact size."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elastic_lm.architecture import LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.space import preset, preset_names
from elastic_lm.space.count import brute_force_size
from space_cases import PRESETS, TINY, both_shapes, tiny

SPACES = {name: both_shapes(name) for name in PRESETS}
CASES = [(name, k) for name in PRESETS for k in range(2)]
IDS = [f"{name}-{'tiny' if k == 0 else 'default'}" for name, k in CASES]

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def test_every_registered_preset_is_tested() -> None:
    assert sorted(preset_names()) == sorted(TINY)


@pytest.mark.parametrize(("name", "k"), CASES, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_samples_are_members_and_round_trip(name: str, k: int, seed: int) -> None:
    space = SPACES[name][k]
    arch = space.sample(random.Random(seed))
    space.validate(arch)
    assert space.contains(arch)
    vector = space.encode(arch)
    assert len(vector) == len(space.dimensions())
    assert space.decode(vector) == arch
    assert type(arch).from_json(arch.to_json()) == arch


@pytest.mark.parametrize(("name", "k"), CASES, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, bias=st.sampled_from(["uniform", "low", "high"]))
def test_every_vector_decodes_to_a_member(name: str, k: int, seed: int, bias: str) -> None:
    """Any in-range vector, also ones skewed to the low or high ends where repairs happen."""
    space = SPACES[name][k]
    rng = random.Random(seed)
    pick = {
        "uniform": rng.random,
        "low": lambda: rng.random() ** 4,
        "high": lambda: 1 - rng.random() ** 4,
    }[bias]
    vector = [min(int(pick() * len(d.choices)), len(d.choices) - 1) for d in space.dimensions()]
    arch = space.decode(vector)
    space.validate(arch)
    assert space.decode(space.encode(arch)) == arch  # decoding is canonical (idempotent)


@pytest.mark.parametrize("name", PRESETS)
def test_size_matches_brute_force_on_tiny_shape(name: str) -> None:
    space = tiny(name)
    assert space.size() == brute_force_size(space)


def test_sizes_at_default_shape() -> None:
    sizes = {name: preset(name).size() for name in PRESETS}
    assert sizes["prune-small"] == 6 * 12 * 24
    assert sizes["prune-layer"] == 2**6 - 1
    assert sizes["prune-medium"] == (13 * 25) ** 6  # 0/0 collapses into identity: 325 values
    assert sizes["prune-large"] == 2 ** (6 * (12 + 1536))
    # ELM: 3 widths x sum over depth d of (bert 6x6 + mobilebert 6x6x2x4)^d
    assert sizes["elm"] == 3 * sum(324**d for d in range(1, 7))
    # NAS-BERT: per block, sum over 5 widths of 5 ops^k for k = 1..6 kept layers, + all identity
    assert sizes["nasbert"] == (5 * sum(5**k for k in range(1, 7)) + 1) ** 4
    # Llama: (heads, kv) pairs after GQA repair: 9 + 4 + 3 = 16, times 6 FFN widths, + dropped;
    # the all-dropped vector is repaired into a one-layer member.
    assert sizes["llama"] == 3 * (97**30 - 1)


def test_elm_extremes() -> None:
    space = preset("elm")
    small, large = space.smallest(), space.largest()
    assert small.hidden == 192
    assert small.depth == 1
    assert (small.layers[0].block, small.layers[0].heads, small.layers[0].ffn) == ("bert", 2, 256)
    assert all(layer.is_identity for layer in small.layers[1:])
    assert large.hidden == 384
    assert large.depth == 6
    for layer in large.layers:
        assert (layer.block, layer.heads, layer.ffn) == ("mobilebert", 12, 1536)
        assert (layer.bottleneck, layer.ffn_stack) == (192, 4)
    assert space.middle().depth == 4


def test_nasbert_extremes_and_derived_widths() -> None:
    space = preset("nasbert")
    assert all(layer.is_identity for layer in space.smallest().layers)
    large = space.largest()
    assert large.hidden == 512
    for layer in large.layers:
        assert (layer.block, layer.hidden, layer.ffn, layer.heads) == ("ffn", 512, 2048, 0)
    middle = space.middle()
    assert {layer.block for layer in middle.layers} == {"sepconv"}
    assert {layer.kernel for layer in middle.layers} == {7}


def test_prune_extremes() -> None:
    small = preset("prune-small").smallest()
    assert small.depth == 1
    assert (small.layers[0].heads, small.layers[0].ffn) == (1, 64)
    full = preset("prune-layer").largest()
    assert all((la.block, la.heads, la.ffn) == ("bert", 12, 1536) for la in full.layers)
    assert preset("prune-layer").smallest().depth == 1  # min_depth repairs "drop all"
    assert preset("prune-medium").smallest().depth == 0
    large = preset("prune-large").largest()
    assert all(la.head_ids == tuple(range(12)) and la.heads == 12 for la in large.layers)
    assert all(la.ffn_ids == tuple(range(1536)) and la.ffn == 1536 for la in large.layers)


def test_llama_extremes() -> None:
    space = preset("llama")
    large = space.largest()
    assert large.hidden == 576
    assert large.depth == 30
    assert all((la.heads, la.kv_heads, la.ffn) == (9, 3, 1536) for la in large.layers)
    small = space.smallest()
    assert small.hidden == 192
    assert small.depth == 1
    assert (small.layers[0].heads, small.layers[0].kv_heads, small.layers[0].ffn) == (1, 1, 256)


@pytest.mark.parametrize("name", PRESETS)
def test_largest_is_largest_in_every_width(name: str) -> None:
    """No sampled member exceeds the largest member in any width field (the super-network)."""
    space = preset(name)
    large = space.largest()
    rng = random.Random(1)
    for _ in range(20):
        arch = space.sample(rng)
        assert arch.hidden <= large.hidden
        for la, big in zip(arch.layers, large.layers, strict=True):
            if la.is_identity or la.block != big.block:
                continue
            for f in ("heads", "kv_heads", "ffn", "bottleneck", "ffn_stack", "hidden"):
                assert getattr(la, f) <= getattr(big, f)


def test_block_types() -> None:
    assert preset("elm").block_types(0) == ("bert", "mobilebert")  # layer 0 is always kept
    assert preset("elm").block_types(5) == ("bert", "mobilebert", "identity")
    assert preset("nasbert").block_types(3) == ("identity", "sepconv", "attention", "ffn")
    assert preset("llama").block_types(7) == ("llama", "identity")
    assert preset("prune-small").block_types(0) == ("bert",)


def test_preset_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'elmo'"):
        preset("elmo")
    with pytest.raises(ConfigError, match="'layer'"):
        preset("elm", layer=3)
    with pytest.raises(ConfigError, match="head_dim"):
        preset("nasbert", hidden_choices=(100,))
    with pytest.raises(ConfigError, match="kv_heads"):  # no heads choice is a multiple of 2
        preset("llama", heads=1, kv_heads=2)


def test_prune_spaces_can_search_hidden() -> None:
    for kind in ("small", "medium", "layer", "large"):
        space = preset(f"prune-{kind}", search_hidden=True)
        assert space.dimensions()[0].name == "hidden"
        assert space.dimensions()[0].choices == (192, 288, 384)
    shape = {**TINY["prune-medium"], "search_hidden": True}
    space = preset("prune-medium", **shape)
    assert space.size() == brute_force_size(space) == 3 * tiny("prune-medium").size()


def test_dimension_names_are_readable() -> None:
    names = [d.name for d in preset("elm").dimensions()]
    assert names[:3] == ["hidden", "depth", "layer0.block"]
    assert "layer3.bottleneck" in names
    large = [d.name for d in tiny("prune-large").dimensions()]
    assert large[:3] == ["layer0.head0", "layer0.head1", "layer1.head0"]
    assert len(set(large)) == len(large)
    assert list(itertools.islice((d.name for d in preset("nasbert").dimensions()), 24, 26)) == [
        "block0.hidden",
        "block1.hidden",
    ]


def test_largest_layer_per_block_type() -> None:
    elm = preset("elm")
    assert elm.largest_layer(0, "bert") == LayerArch(block="bert", heads=12, ffn=1536)
    assert elm.largest_layer(0, "mobilebert") == LayerArch(
        block="mobilebert", heads=12, ffn=1536, bottleneck=192, ffn_stack=4
    )
    nas = preset("nasbert")
    assert nas.largest_layer(5, "sepconv") == LayerArch(block="sepconv", kernel=7, hidden=512)
    assert nas.largest_layer(5, "attention") == LayerArch(block="attention", heads=8, hidden=512)
    large = preset("prune-large").largest_layer(1, "bert")
    assert large.head_ids == tuple(range(12))
    assert large.ffn == 1536
    with pytest.raises(ArchitectureError, match="cannot hold block 'sepconv'"):
        elm.largest_layer(0, "sepconv")


def test_elm_layer_subsets_keep_any_layers() -> None:
    """``layer_subsets``: keep bits instead of a depth, so the last layers can stay in a member."""
    space = preset("elm", layer_subsets=True, blocks=("bert",), hidden_choices=(384,))
    names = [d.name for d in space.dimensions()]
    assert "depth" not in names
    assert "layer5.keep" in names
    assert space.largest().depth == 6
    assert space.smallest().depth == 1
    vector = space.encode(space.largest())
    keep = [i for i, d in enumerate(space.dimensions()) if d.name.endswith(".keep")]
    for i in keep[1:5]:
        vector[i] = 0
    arch = space.decode(vector)
    assert [layer.is_identity for layer in arch.layers] == [False, True, True, True, True, False]
    # per layer: 6 head counts x 6 FFN widths; any non-empty subset of the six layers
    assert space.size() == sum(math.comb(6, d) * 36**d for d in range(1, 7))
