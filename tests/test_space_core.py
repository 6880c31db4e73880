"""SearchSpace as data: serialisation, with_choices, repair on decode, and validate's messages."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError, ConfigError
from elastic_lm.space import SearchSpace, preset, preset_dict
from elastic_lm.space.count import brute_force_size
from space_cases import PRESETS, both_shapes, tiny

ID = LayerArch(block="identity")


def _vector(space: SearchSpace, **named: int) -> list[int]:
    """Index vector with index 0 everywhere except the dimensions named (dots as '__')."""
    names = [d.name for d in space.dimensions()]
    vector = [0] * len(names)
    for name, index in named.items():
        vector[names.index(name.replace("__", "."))] = index
    return vector


# ---- serialisation -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_space_json_and_yaml_round_trip(name: str) -> None:
    for space in both_shapes(name):
        again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
        assert again == space
        assert again.dimensions() == space.dimensions()
        assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space


def test_round_trip_keeps_per_dimension_overrides() -> None:
    space = preset("elm", blocks=["bert"]).with_choices("layer3.heads", (2, 4))
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space
    assert {d.name: d.choices for d in again.dimensions()}["layer3.heads"] == (2, 4)


def test_sampled_architectures_round_trip_through_json() -> None:
    rng = random.Random(5)
    for name in PRESETS:
        space = tiny(name)
        for _ in range(5):
            arch = space.sample(rng)
            assert Architecture.from_json(arch.to_json()) == arch
            space.validate(Architecture.from_json(arch.to_json()))


def test_malformed_space_dicts_raise_config_errors() -> None:
    good = preset_dict("prune-medium", **{"layers": 2, "heads": 2, "ffn": 4, "ffn_step": 2})
    with pytest.raises(ConfigError, match="'colour'"):
        SearchSpace.from_dict({**good, "colour": "red"})
    bad_scope = {**good, "groups": [{**good["groups"][0], "scope": "row"}]}
    with pytest.raises(ConfigError, match="scope='row'"):
        SearchSpace.from_dict(bad_scope)
    dupes = {**good, "groups": [{**good["groups"][0], "choices": [1, 1]}]}
    with pytest.raises(ConfigError, match="unique"):
        SearchSpace.from_dict(dupes)
    with pytest.raises(ConfigError, match="min_depth"):
        SearchSpace.from_dict({**good, "min_depth": 1})
    no_layers = {k: v for k, v in good.items() if k != "num_layers"}
    with pytest.raises(ConfigError, match="'num_layers'"):
        SearchSpace.from_dict(no_layers)


# ---- with_choices --------------------------------------------------------------------------------
def test_with_choices_on_a_group_keeps_the_encoding_length() -> None:
    space = preset("elm").with_choices("block", ("bert",))  # "ffn" is the BERT blocks' FFN
    narrow = space.with_choices("ffn", (128, 256))
    assert narrow is not space
    assert len(narrow.dimensions()) == len(space.dimensions())
    assert {d.choices for d in narrow.dimensions() if d.name.endswith(".ffn")} == {(128, 256)}
    assert narrow.largest().layers[0].ffn == 256
    assert space.largest().layers[0].ffn == 1536  # the original is unchanged
    with pytest.raises(ArchitectureError, match=r"layer 0\.ffn=1536"):
        narrow.validate(space.largest())


def test_with_choices_on_one_dimension() -> None:
    space = preset("elm").with_choices("layer3.mobile_heads", (2, 4))  # largest: MobileBERT blocks
    large = space.largest()
    assert [la.heads for la in large.layers] == [12, 12, 12, 4, 12, 12]
    assert space.size() < preset("elm").size()


def test_with_choices_grows_widths() -> None:
    space = tiny("prune-small").with_choices("heads", (1, 2, 3, 4))
    assert space.largest().layers[0].heads == 4
    assert space.size() == 3 * 4 * 2


def test_with_choices_errors() -> None:
    space = preset("llama")
    with pytest.raises(ConfigError, match="'width'"):
        space.with_choices("width", (1, 2))
    with pytest.raises(ConfigError, match="unique"):
        space.with_choices("ffn", (256, 256))
    with pytest.raises(ConfigError, match="multiple of kv_heads=2"):
        space.with_choices("layer4.heads", (3, 9))


# ---- repair on decode ----------------------------------------------------------------------------
def test_nasbert_moves_identity_to_the_end_of_its_block() -> None:
    space = tiny("nasbert")  # 4 layers, blocks of 2; ops identity, sepconv3, attention, ffn
    ops = space.dimensions()[0].choices
    assert ops == ("identity", "sepconv3", "attention", "ffn")
    arch = space.decode(_vector(space, layer0__op=0, layer1__op=2, layer2__op=3, block0__hidden=1))
    assert arch.layers[0] == LayerArch(block="attention", heads=4, hidden=128)
    assert arch.layers[1] == ID
    assert arch.layers[2] == LayerArch(block="ffn", ffn=4 * 64, hidden=64)
    assert arch.layers[3] == ID


def test_llama_repairs_heads_to_a_multiple_of_kv_heads() -> None:
    space = preset("llama")  # heads 1..9 (index = heads - 1), kv_heads 1..3
    kept = {f"layer{i}__keep": 1 for i in range(3)}
    arch = space.decode(
        _vector(
            space,
            **kept,
            layer0__heads=8,
            layer0__kv_heads=1,  # 9 heads, 2 groups -> 8
            layer1__heads=0,
            layer1__kv_heads=2,  # 1 head, 3 groups -> 3 (nothing below)
            layer2__heads=4,
            layer2__kv_heads=2,  # 5 heads, 3 groups -> 3
        )
    )
    assert [(la.heads, la.kv_heads) for la in arch.layers[:3]] == [(8, 2), (3, 3), (3, 3)]
    assert all(la.is_identity for la in arch.layers[3:])


def test_prune_medium_empty_layer_is_identity() -> None:
    space = tiny("prune-medium")  # heads (0, 1, 2), ffn (0, 2, 4)
    arch = space.decode(_vector(space, layer0__heads=2, layer1__ffn=1))
    assert arch.layers[0] == LayerArch(block="bert", heads=2)
    assert arch.layers[1] == LayerArch(block="bert", ffn=2)
    assert arch.layers[2] == ID


def test_prune_layer_keeps_any_subset_and_repairs_empty() -> None:
    space = tiny("prune-layer")
    arch = space.decode([0, 0, 1])
    assert [la.is_identity for la in arch.layers] == [True, True, False]
    assert arch.layers[2] == LayerArch(block="bert", heads=2, ffn=4)
    assert space.decode([0, 0, 0]) == space.decode([1, 0, 0])


def test_prune_large_keeps_explicit_heads_and_units() -> None:
    space = tiny("prune-large")  # 2 layers, 2 heads, 3 units: [h00 h01 h10 h11 u00 u01 u02 ...]
    arch = space.decode([0, 1, 0, 0, 1, 0, 1, 0, 0, 0])
    assert arch.layers[0] == LayerArch(block="bert", heads=1, head_ids=(1,), ffn=2, ffn_ids=(0, 2))
    assert arch.layers[1] == ID


def test_decode_rejects_malformed_vectors() -> None:
    space = tiny("elm")
    with pytest.raises(ArchitectureError, match="needs"):
        space.decode([0])
    bad = [0] * len(space.dimensions())
    bad[0] = 9
    with pytest.raises(ArchitectureError, match="dimension hidden: index 9"):
        space.decode(bad)


# ---- validate ------------------------------------------------------------------------------------
def _layers(space: SearchSpace, arch: Architecture, i: int, **changes: object) -> Architecture:
    data = arch.layers[i].to_dict() | changes
    return arch.replace_layer(i, LayerArch.from_dict(data))


def test_validate_names_layer_field_value_and_allowed() -> None:
    space = preset("elm")
    large = space.largest()
    with pytest.raises(ArchitectureError, match=r"layer 2\.heads=5 .*allowed: 2, 4, 6"):
        space.validate(_layers(space, large, 2, heads=5))
    with pytest.raises(ArchitectureError, match=r"^hidden=100 .*allowed: 192, 288, 384$"):
        space.validate(Architecture(hidden=100, layers=large.layers))
    with pytest.raises(ArchitectureError, match="has 5 layers"):
        space.validate(Architecture(hidden=384, layers=large.layers[:5]))


def test_validate_explains_constraints() -> None:
    elm = preset("elm")
    bert = elm.decode([2, 5, *[0] * (len(elm.dimensions()) - 2)])  # all six layers bert
    with pytest.raises(ArchitectureError, match=r"layer 0\.bottleneck=96 .*does not apply"):
        elm.validate(_layers(elm, bert, 0, bottleneck=96))
    with pytest.raises(ArchitectureError, match=r"layer 1\.block='identity' .*only trailing layers"):
        elm.validate(bert.replace_layer(1, ID))

    nas = preset("nasbert")
    middle = nas.middle()
    with pytest.raises(ArchitectureError, match="identity layers must come last"):
        nas.validate(middle.replace_layer(2, ID))
    attention = _layers(nas, middle, 0, block="attention", kernel=0, heads=3)
    with pytest.raises(ArchitectureError, match=r"layer 0\.heads=3 .*fixed by the space"):
        nas.validate(attention)

    llama = preset("llama")
    with pytest.raises(ArchitectureError, match=r"layer 0\.heads=8 .*multiple of kv_heads=3"):
        llama.validate(_layers(llama, llama.largest(), 0, heads=8))

    small = preset("prune-small")
    with pytest.raises(ArchitectureError, match=r"layer 1\.heads=3 .*share one heads"):
        small.validate(_layers(small, small.largest(), 1, heads=3))

    large = preset("prune-large")
    with pytest.raises(ArchitectureError, match=r"layer 0\.head_ids has id\(s\) \[12\]"):
        large.validate(_layers(large, large.largest(), 0, head_ids=[0, 12]))


def test_contains() -> None:
    space = preset("prune-medium")
    assert space.contains(space.largest())
    assert space.contains(space.largest().replace_layer(0, ID))  # any layer may be dropped
    assert not space.contains(_layers(space, space.largest(), 0, ffn=100))
    assert space.contains(preset("prune-layer").largest())  # full width is a medium member too


def test_decode_accepts_numpy_integers() -> None:
    np = pytest.importorskip("numpy")
    space = tiny("llama")
    vector = space.encode(space.largest())
    assert space.decode(np.array(vector)) == space.largest()
    with pytest.raises(ArchitectureError, match="use an int"):
        space.decode([float(v) for v in vector])


def test_size_with_per_layer_overrides_matches_brute_force() -> None:
    elm = tiny("elm").with_choices("layer1.ffn", (32,))
    assert elm.size() == brute_force_size(elm) < tiny("elm").size()
    # NAS-BERT with different ops per layer has no closed form: counted by enumeration instead
    nas = tiny("nasbert").with_choices("layer1.op", ("identity", "ffn"))
    assert nas.size() == brute_force_size(nas) < tiny("nasbert").size()
