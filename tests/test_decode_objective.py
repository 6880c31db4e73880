"""Decode latency as a search objective and constraint: measured once per architecture on the exported
model (stock ``LlamaForCausalLM`` where the shape has one) with the KV cache, at the configured prompt and
generation length."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import elastic_lm.metrics.latency as latency
from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.config import load_config
from elastic_lm.errors import ConfigError
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.pipeline.objectives import MetricContext, build_constraints, build_objectives, units
from test_generation import LLAMA, SUB

NAMES = ("decode_ms_per_token", "decode_tokens_per_s", "prefill_ms")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every measure_decode_ms call: the model class it timed, its settings and its result."""
    seen: list[dict[str, Any]] = []
    real = latency.measure_decode_ms

    def recording(model: torch.nn.Module, **kwargs: Any) -> Any:
        result = real(model, **kwargs)
        seen.append({"class": type(model).__name__, "kwargs": kwargs, "result": result})
        return result

    monkeypatch.setattr(latency, "measure_decode_ms", recording)
    return seen


def context(**kwargs: Any) -> MetricContext:
    torch.manual_seed(0)
    model = build_model(ElasticConfig(**LLAMA)).eval()
    return MetricContext(model, latency_repeats=2, decode_prompt_len=5, decode_new_tokens=3, **kwargs)


def objectives(ctx: MetricContext) -> list[Any]:
    specs = ", ".join(f"{{name: {n}}}" for n in NAMES)
    return build_objectives(load_config(None, [f"search.objectives=[{specs}]"]).search.objectives, ctx)


def test_decode_objectives_share_one_cached_measurement_of_the_stock_export(calls) -> None:
    ctx = context()
    decode, rate, prefill = objectives(ctx)
    values = [decode.fn(SUB), rate.fn(SUB), prefill.fn(SUB)]
    assert len(calls) == 1
    call = calls[0]
    assert call["class"] == "LlamaForCausalLM"
    assert call["result"].kv_cache
    assert (call["kwargs"]["prompt_len"], call["kwargs"]["new_tokens"]) == (5, 3)
    assert call["kwargs"]["repeats"] == 2
    assert values[0] == call["result"].decode.median_ms
    assert values[1] == pytest.approx(1000.0 / values[0])
    assert values[2] == call["result"].prefill.median_ms
    assert [o.direction for o in (decode, rate, prefill)] == ["minimize", "maximize", "minimize"]
    assert not any(o.cheap for o in (decode, rate, prefill))
    assert units(list(NAMES), ctx)["decode_ms_per_token"] == (
        "ms per generated token, batch 1, prompt 5 tokens, 3 new, KV cache"
    )


def test_a_shape_without_a_stock_class_is_timed_as_the_extracted_elastic_model(calls) -> None:
    ctx = context()
    last = LayerArch("llama", ffn=12)  # FFN widths differ between layers: no stock Llama holds that
    uneven = Architecture(hidden=12, layers=(SUB.layers[0], LayerArch("identity"), last))
    (constraint,) = build_constraints(
        load_config(
            None, ["search.constraints=[{name: decode_ms_per_token, max: 1.0e9}]"]
        ).search.constraints,
        ctx,
    )
    assert constraint.fn(uneven) > 0
    assert [(c["class"], c["result"].kv_cache) for c in calls] == [("ElasticForCausalLM", True)]


def test_decode_objectives_need_a_causal_model() -> None:
    torch.manual_seed(0)
    mlm = build_model(ElasticConfig(vocab_size=40, hidden_size=8, num_layers=1, num_attention_heads=2))
    with pytest.raises(ConfigError, match="'decode_ms_per_token' needs a causal-lm model"):
        objectives(MetricContext(mlm))


def test_prompt_and_generation_length_are_config_fields() -> None:
    section = load_config(None, ["search.decode_prompt_len=7", "search.decode_new_tokens=4"]).search
    assert (section.decode_prompt_len, section.decode_new_tokens) == (7, 4)
    default = load_config(None, []).search
    assert (default.decode_prompt_len, default.decode_new_tokens) == (32, 32)
    with pytest.raises(ConfigError, match="decode_new_tokens"):
        load_config(None, ["search.decode_new_tokens=0"])
