"""The decode cost model (features, non-negative fit, ordering by depth) and round-robin decode timing.

Nothing here asserts on measured speed: the fit is checked on given timings, the timing on a fake clock.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.convert import from_hf
from elastic_lm.errors import DataError
from elastic_lm.metrics.decode import measure_decode_round_robin
from elastic_lm.metrics.decode_cost import (
    FEATURES,
    DecodeCostModel,
    calibration_members,
    decode_features,
    fit_decode_cost,
)
from elastic_lm.space import preset


def tiny() -> tuple[object, object]:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=24, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
        intermediate_size=32, max_position_embeddings=32, tie_word_embeddings=True,
    )  # fmt: skip
    space = preset("llama", layers=4, hidden=24, heads=6, kv_heads=2, ffn=32, ffn_step=16)
    return from_hf(LlamaForCausalLM(config).eval(), space=space), space


def test_features_count_layers_body_and_head() -> None:
    model, space = tiny()
    full = space.largest()
    f = decode_features(model.config, full)
    assert f["layers"] == 4.0
    assert f["head_millions"] == pytest.approx(24 * 50 / 1e6)
    dropped = Architecture(hidden=24, layers=(*full.layers[:2], LayerArch("identity"), full.layers[3]))
    g = decode_features(model.config, dropped)
    assert g["layers"] == 3.0
    assert g["body_millions"] < f["body_millions"]


def test_fit_recovers_non_negative_costs_and_refuses_negative_ones() -> None:
    rows = [
        {"constant": 1.0, "layers": float(n), "body_millions": b, "head_millions": 0.5}
        for n, b in [(30, 100.0), (20, 70.0), (15, 50.0), (30, 60.0), (25, 90.0)]
    ]
    truth = {"constant": 2.0, "layers": 0.4, "body_millions": 0.5, "head_millions": 0.0}
    ms = [sum(truth[k] * r[k] for k in FEATURES) for r in rows]
    cost = fit_decode_cost(rows, ms)
    for k in ("layers", "body_millions"):
        assert cost.coefficients[k] == pytest.approx(truth[k], rel=1e-6)
    assert cost.fit_error == pytest.approx(0.0, abs=1e-9)
    # timings that fall with depth would need a negative per-layer cost: clipped to zero instead
    falling = fit_decode_cost(rows, [100.0 - r["layers"] for r in rows])
    assert min(falling.coefficients.values()) >= 0.0
    with pytest.raises(DataError, match=">= 0"):
        DecodeCostModel({**truth, "layers": -1.0}, {})
    again = DecodeCostModel.from_dict(cost.to_dict())
    assert again.coefficients == cost.coefficients


def test_predicted_cost_orders_members_by_layer_count() -> None:
    model, space = tiny()
    members = calibration_members(space, layer_scores=torch.tensor([0.4, 0.1, 0.3, 0.2]))
    depths = [sum(not la.is_identity for la in a.layers) for a in members]
    assert depths[0] == 4
    assert min(depths) == 2
    for arch in members:
        space.validate(arch)  # raises on a member the space cannot express
    half = next(a for a, d in zip(members, depths, strict=True) if d == 2)
    assert [i for i, la in enumerate(half.layers) if not la.is_identity] == [0, 2]  # the best scores
    cost = DecodeCostModel({"constant": 1.0, "layers": 0.5, "body_millions": 2.0, "head_millions": 1.0}, {})
    full_width = [
        a for a in members if a.hidden == 24 and all(la.is_identity or la.ffn == 32 for la in a.layers)
    ]
    predicted = [cost.predict_ms(model.config, a) for a in full_width]
    by_depth = sorted(full_width, key=lambda a: sum(not la.is_identity for la in a.layers))
    assert sorted(predicted) == [cost.predict_ms(model.config, a) for a in by_depth]
    assert len(set(predicted)) == len(predicted)


def test_round_robin_interleaves_models_and_times_each() -> None:
    calls: list[str] = []

    class Recorder(torch.nn.Module):
        def __init__(self, name: str, lm: LlamaForCausalLM) -> None:
            super().__init__()
            self.name, self.lm, self.config = name, lm, lm.config

        def forward(self, **kwargs: object) -> object:
            calls.append(self.name)
            return self.lm(**kwargs)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=16, max_position_embeddings=32,
    )  # fmt: skip
    lm = LlamaForCausalLM(config).eval()
    ticks = iter(range(10_000))
    out = measure_decode_round_robin(
        {"a": Recorder("a", lm), "b": Recorder("b", lm)},
        batch_size=1, prompt_len=4, new_tokens=2, warmup=1, repeats=2, clock=lambda: float(next(ticks)),
    )  # fmt: skip
    # one cache probe each, then per round: a (prefill + 2 steps), then b (prefill + 2 steps)
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 3
    for name in ("a", "b"):
        assert out[name].kv_cache
        assert len(out[name].prefill.samples_ms) == 2
        assert len(out[name].decode.samples_ms) == 4
        assert out[name].decode.median_ms == pytest.approx(1000.0)  # one fake tick per call
