"""Latency measurement and predictors: behaviour only, never timings (fake timers where values matter)."""

from __future__ import annotations

import builtins
import json
import math
import random
from collections.abc import Callable, Sequence

import pytest
import torch

from elastic_lm.architecture import Architecture
from elastic_lm.cli.main import main
from elastic_lm.errors import ArchitectureError, UserError
from elastic_lm.metrics.latency import (
    LatencyMeasurement,
    measure_decode_ms,
    measure_latency_ms,
    measure_peak_memory_mb,
    summarise,
    time_callable,
    time_interleaved,
)
from elastic_lm.profile import (
    LookupTablePredictor,
    ProfileRecord,
    ProfileSettings,
    RegressorPredictor,
    architecture_features,
    build_supernet,
    fit_predictors,
    load_predictor,
    prediction_errors,
    predictor_from_dict,
    recheck,
)
from elastic_lm.profile.measure import sample_architectures
from elastic_lm.profile.records import MIN_PREDICTED_MS
from elastic_lm.report.inputs import load_latency_checks
from elastic_lm.space import preset

SETTINGS = ProfileSettings(batch_size=1, seq_len=8, warmup=0, repeats=2, chunk=4)


@pytest.fixture(scope="module")
def space():
    return preset(
        "elm",
        layers=2,
        hidden=32,
        heads=2,
        ffn=64,
        ffn_step=32,
        hidden_choices=(16, 32),
        bottleneck_choices=(8, 16),
        ffn_stack=2,
    )


@pytest.fixture(scope="module")
def supernet(space):
    return build_supernet(space, vocab_size=50, head_dim=8, max_position_embeddings=32)


class FakeMeasure:
    """Returns 1, 2, 3, ... ms in call order, so every timed thing gets a distinct, known value."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fns: Sequence[Callable[[], object]]) -> list[LatencyMeasurement]:
        out = []
        for _ in fns:
            self.calls += 1
            out.append(summarise([float(self.calls)]))
        return out


def synthetic_records(supernet, archs, fn) -> list[ProfileRecord]:
    return [ProfileRecord(a, fn(a), 0.0, 0, 0) for a in archs]


# -- measurement ---------------------------------------------------------------------------------------
def test_measure_returns_requested_samples_and_restores_threads(supernet, space):
    model = supernet.extract(space.middle())
    before = torch.get_num_threads()
    m = measure_latency_ms(model, batch_size=2, seq_len=8, threads=1, warmup=1, repeats=7)
    assert len(m.samples_ms) == 7
    # structure, never speed: finite samples, summarised by the median / IQR of those very samples
    assert all(math.isfinite(s) for s in m.samples_ms)
    again = summarise(m.samples_ms)
    assert (m.median_ms, m.iqr_ms) == (again.median_ms, again.iqr_ms)
    assert m.settings["batch_size"] == 2
    assert m.settings["threads"] == 1
    assert torch.get_num_threads() == before


def test_time_callable_uses_the_injected_clock():
    ticks = iter([0.0, 0.001, 1.0, 1.003, 2.0, 2.002])
    m = time_callable(lambda: None, warmup=2, repeats=3, clock=lambda: next(ticks))
    assert m.samples_ms == pytest.approx((1.0, 3.0, 2.0))
    assert m.median_ms == pytest.approx(2.0)


def test_interleaved_gives_each_callable_its_samples():
    order: list[str] = []
    ms = time_interleaved([lambda: order.append("a"), lambda: order.append("b")], warmup=0, repeats=3)
    assert [len(m.samples_ms) for m in ms] == [3, 3]
    assert order == ["a", "b"] * 3


def test_sliced_supernet_is_refused(supernet):
    with pytest.raises(ArchitectureError, match=r"extract\(arch\)"):
        measure_latency_ms(supernet, batch_size=1, seq_len=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"seq_len": 100}, "max_position_embeddings=32"),
        ({"backend": "tensorrt"}, "backend='tensorrt'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"repeats": 0}, "repeats=0"),
        ({"threads": 0}, "threads=0"),
    ],
)
def test_bad_settings_are_one_line_user_errors(supernet, space, kwargs, match):
    model = supernet.extract(space.smallest())
    args = {"batch_size": 1, "seq_len": 4, **kwargs}
    with pytest.raises(UserError, match=match):
        measure_latency_ms(model, **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when no GPU is present")
def test_cuda_without_gpu_is_a_user_error(supernet, space):
    with pytest.raises(UserError, match="--device cpu"):
        measure_latency_ms(supernet.extract(space.smallest()), batch_size=1, seq_len=4, device="cuda")


def test_missing_onnxruntime_names_the_extra(supernet, space, monkeypatch):
    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(UserError, match=r"pip install 'elastic-lm\[onnx\]'"):
        measure_latency_ms(supernet.extract(space.smallest()), batch_size=1, seq_len=4, backend="onnxruntime")


def test_onnxruntime_backend_measures(supernet, space):
    pytest.importorskip("onnxruntime")
    m = measure_latency_ms(
        supernet.extract(space.middle()), batch_size=1, seq_len=8, backend="onnxruntime", repeats=3
    )
    assert len(m.samples_ms) == 3
    assert m.settings["backend"] == "onnxruntime"


def test_decode_uses_the_kv_cache_of_a_stock_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    )
    d = measure_decode_ms(gpt2, batch_size=1, prompt_len=6, new_tokens=3, warmup=0, repeats=2)
    assert d.kv_cache
    assert len(d.prefill.samples_ms) == 2
    assert len(d.decode.samples_ms) == 6


def test_decode_without_kv_cache_says_so():
    from transformers import GPT2Config, GPT2LMHeadModel

    class NoCache(torch.nn.Module):
        """A causal LM that never returns past_key_values (as models without a KV cache do)."""

        def __init__(self) -> None:
            super().__init__()
            config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=32)
            self.lm = GPT2LMHeadModel(config)
            self.config = self.lm.config

        def forward(self, input_ids, **kwargs):
            return self.lm(input_ids=input_ids, use_cache=False)

    d = measure_decode_ms(NoCache(), batch_size=1, prompt_len=4, new_tokens=2, warmup=0, repeats=1)
    assert not d.kv_cache
    assert "no KV cache" in d.note
    assert len(d.decode.samples_ms) == 2


def test_peak_memory_counts_at_least_the_weights(supernet, space):
    model = supernet.extract(space.largest())
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    mem = measure_peak_memory_mb(model, batch_size=1, seq_len=8)
    assert mem.peak_memory_mb >= weights_mb
    assert "estimate" in mem.method


# -- lookup table -------------------------------------------------------------------------------------
def test_lookup_table_sums_what_it_measured_and_times_each_config_once(supernet, space):
    archs = sample_architectures(space, supernet.config, 8, random.Random(0))
    fake = FakeMeasure()
    table = LookupTablePredictor.build(supernet, archs, SETTINGS, fake)
    assert fake.calls == len(table.entries) + len(table.constants)
    assert sorted([*table.entries.values(), *table.constants.values()]) == [
        float(i) for i in range(1, fake.calls + 1)
    ]
    from elastic_lm.profile.lookup import layer_keys

    for arch in archs:
        expected = table.constants[str(arch.hidden)] + sum(
            table.entries[k] for _, k in layer_keys(supernet.config, arch)
        )
        assert table.predict_ms(arch) == pytest.approx(expected)
    assert table.extend(supernet, archs, fake) == 0  # cached: nothing timed twice


def test_lookup_table_unknown_layer_is_a_clear_error(supernet, space):
    table = LookupTablePredictor.build(supernet, [space.smallest()], SETTINGS, FakeMeasure())
    with pytest.raises(ArchitectureError, match=r"table.extend"):
        table.predict_ms(space.largest())


def test_lookup_correction_recovers_scale_and_offset(supernet, space):
    archs = sample_architectures(space, supernet.config, 10, random.Random(1))
    table = LookupTablePredictor.build(supernet, archs, SETTINGS, FakeMeasure())
    records = synthetic_records(supernet, archs, lambda a: 1.5 * table.raw_ms(a) + 0.25)
    table.fit(records)
    assert table.scale == pytest.approx(1.5)
    assert table.offset == pytest.approx(0.25)


def test_lookup_prediction_is_never_below_the_floor(supernet, space):
    archs = sample_architectures(space, supernet.config, 10, random.Random(1))
    table = LookupTablePredictor.build(supernet, archs, SETTINGS, FakeMeasure())
    # A fit whose offset outweighs the smallest table: extrapolates below zero without the clamp.
    records = synthetic_records(supernet, archs, lambda a: table.raw_ms(a) - 1e6)
    table.fit(records)
    assert min(table.predict_ms(a) for a in archs) == MIN_PREDICTED_MS


def test_lookup_fit_never_keeps_a_negative_scale(supernet, space):
    archs = sample_architectures(space, supernet.config, 10, random.Random(1))
    table = LookupTablePredictor.build(supernet, archs, SETTINGS, FakeMeasure())
    records = synthetic_records(supernet, archs, lambda a: 1000.0 - table.raw_ms(a))
    table.fit(records)
    assert table.scale > 0
    assert table.offset == 0.0


# -- regressor ----------------------------------------------------------------------------------------
def test_regressor_fits_a_linear_latency_function_exactly(supernet, space):
    archs = sample_architectures(space, supernet.config, 60, random.Random(2))

    def latency(a: Architecture) -> float:
        f = architecture_features(supernet.config, a, SETTINGS.seq_len)
        return 0.3 + 2e-5 * f["flops.bert"] + 5e-6 * f["flops.mobilebert"] + 0.1 * f["depth"]

    records = synthetic_records(supernet, archs, latency)
    reg = RegressorPredictor(supernet.config, SETTINGS.seq_len).fit(records[:45])
    for r in records:
        assert reg.predict_ms(r.architecture) == pytest.approx(r.latency_ms, rel=1e-6)
    assert all(c >= 0 for c in reg.state["coef"])


def test_regressor_prediction_is_never_below_the_floor(supernet, space):
    archs = sample_architectures(space, supernet.config, 30, random.Random(2))
    wide = next(a for a in archs if a.hidden == 32)
    narrow = next(a for a in archs if a.hidden == 16)
    reg = RegressorPredictor(supernet.config, SETTINGS.seq_len, groups=("hidden",))
    # Linear in the hidden size, below zero at the narrow width: the clamp must catch it.
    reg.fit(synthetic_records(supernet, archs, lambda a: a.hidden - 20.0))
    assert reg.predict_ms(wide) == pytest.approx(12.0)
    assert reg.predict_ms(narrow) == MIN_PREDICTED_MS


def test_features_are_generic_over_block_types(supernet, space):
    feats = architecture_features(supernet.config, space.largest(), 8)
    assert {"layers.bert", "layers.mobilebert", "flops.bert", "flops.mobilebert", "sum.ffn"} <= set(feats)
    smallest = architecture_features(supernet.config, space.smallest(), 8)
    assert smallest["depth"] == space.smallest().depth


def test_unfitted_regressor_is_a_user_error(supernet, space):
    with pytest.raises(UserError, match="fit"):
        RegressorPredictor(supernet.config, 8).predict_ms(space.smallest())


def test_json_round_trip_gives_identical_predictions(supernet, space):
    archs = sample_architectures(space, supernet.config, 12, random.Random(3))
    table = LookupTablePredictor.build(supernet, archs, SETTINGS, FakeMeasure())
    records = synthetic_records(supernet, archs, lambda a: 0.7 * table.raw_ms(a) + 1.0 + 0.01 * a.depth)
    table.fit(records)
    reg = RegressorPredictor(supernet.config, SETTINGS.seq_len, table).fit(records)
    for predictor in (table, reg):
        again = predictor_from_dict(json.loads(json.dumps(predictor.to_dict())))
        assert [again.predict_ms(a) for a in archs] == [predictor.predict_ms(a) for a in archs]


def test_prediction_errors():
    err = prediction_errors([1.0, 2.0, 4.0], [1.0, 2.5, 4.0])
    assert err["mape"] == pytest.approx(0.5 / 2.5 / 3)
    assert err["kendall_tau"] == pytest.approx(1.0)
    assert err["max_abs_error_ms"] == pytest.approx(0.5)


# -- the whole job, recheck, files --------------------------------------------------------------------
def test_fit_predictors_writes_predictor_json(supernet, space, tmp_path):
    result = fit_predictors(
        supernet, space, SETTINGS, n_train=8, n_held_out=4, out_dir=tmp_path, measure=FakeMeasure()
    )
    data = json.loads((tmp_path / "predictor.json").read_text())
    assert set(data["predictors"]) == {"lookup", "regressor", "analytic"}
    assert {"cpu", "threads", "torch", "device"} <= set(data["machine"])
    assert data["n_train"] == 8
    assert data["n_held_out"] == 4
    assert set(data["held_out"]["lookup"]) >= {"mape", "kendall_tau", "max_abs_error_ms"}
    assert data["recommended"] in data["predictors"]
    keys = [r.architecture.key() for r in result.train]
    assert space.smallest().key() in keys
    assert space.largest().key() in keys
    assert not set(keys) & {r.architecture.key() for r in result.held_out}
    loaded = load_predictor(tmp_path / "predictor.json")
    arch = result.held_out[0].architecture
    assert loaded.predict_ms(arch) == result.predictors[data["recommended"]].predict_ms(arch)


def test_recheck_writes_the_documented_format(supernet, space, tmp_path):
    archs = [space.smallest(), space.middle()]
    table = LookupTablePredictor(supernet.config, SETTINGS)
    path = tmp_path / "profile" / "latency_check.json"
    rows = recheck(
        table, supernet, archs, SETTINGS, labels=["small", "mid"], path=path, measure=FakeMeasure()
    )
    saved = json.loads(path.read_text())
    assert saved == rows
    assert [r["label"] for r in saved] == ["small", "mid"]
    assert all({"label", "architecture", "predicted_ms", "measured_ms"} == set(r) for r in saved)
    assert Architecture.from_dict(saved[1]["architecture"]) == space.middle()
    checks = load_latency_checks(path)  # what 'elastic-lm report' reads
    assert [c.label for c in checks] == ["small", "mid"]


def test_recheck_label_count_must_match(supernet, space):
    table = LookupTablePredictor(supernet.config, SETTINGS)
    with pytest.raises(UserError, match="one label each"):
        recheck(table, supernet, [space.smallest()], SETTINGS, labels=["a", "b"])


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 0), ("backend", "tvm"), ("quantile", 2.0), ("warmup", -1), ("clock", "tsc")],
)
def test_bad_profile_settings(field, value):
    with pytest.raises(UserError, match=field):
        ProfileSettings(**{field: value})


def test_thread_clock_needs_one_thread():
    with pytest.raises(UserError, match="clock='thread' needs threads=1"):
        ProfileSettings(clock="thread", threads=2)


# -- CLI ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space_from", ["space.json", "--space FILE"])
def test_cli_profiles_a_supernet_folder(supernet, space, tmp_path, capsys, space_from):
    from elastic_lm.export.supernet import save_supernet

    folder = tmp_path / "supernet"
    save_supernet(supernet, None, space if space_from == "space.json" else None, folder)
    extra = []
    if space_from == "--space FILE":
        space_file = tmp_path / "space.json"
        space_file.write_text(json.dumps(space.to_dict()))
        extra = ["--space", str(space_file)]
    out = tmp_path / "run" / "profile"
    code = main(
        ["profile", str(folder), *extra, "--samples", "8", "--seq-len", "8",
         "--repeats", "2", "--warmup", "0", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed
    assert "regressor" in printed
    assert (out / "predictor.json").is_file()
    assert (out / "records.json").is_file()
    if space_from == "space.json":  # the same run, machine-readable
        args = ["profile", str(folder), "--samples", "8", "--seq-len", "8", "--repeats", "2", "--warmup", "0"]
        assert main([*args, "--out", str(tmp_path / "again"), "--json"]) == 0
        out_json = json.loads(capsys.readouterr().out)
        assert out_json["held_out"] == 2  # a quarter of --samples
        assert {"lookup", "regressor", "analytic"} <= set(out_json["errors"])
        assert out_json["files"]["predictor"] == str(tmp_path / "again" / "predictor.json")


def test_cli_folder_without_space_is_an_error(supernet, tmp_path, capsys):
    folder = tmp_path / "supernet"
    supernet.save_pretrained(folder)
    assert main(["profile", str(folder)]) == 2
    assert "--space PRESET" in capsys.readouterr().err


def test_cli_unknown_space(tmp_path, capsys):
    assert main(["profile", "--space", "nope"]) == 2
    assert "'nope' is not a preset" in capsys.readouterr().err


def test_cli_too_few_samples(capsys):
    assert main(["profile", "--space", "elm", "--samples", "3"]) == 2
    assert "--samples=3" in capsys.readouterr().err


def test_regressor_feature_groups_are_checked_and_saved(supernet, space):
    with pytest.raises(UserError, match="feature groups"):
        RegressorPredictor(supernet.config, 8, groups=("flops", "vibes"))
    archs = sample_architectures(space, supernet.config, 6, random.Random(4))
    records = synthetic_records(supernet, archs, lambda a: 1.0 + a.depth)
    reg = RegressorPredictor(supernet.config, 8, groups=("depth", "flops")).fit(records)
    assert set(reg.state["features"]) <= {"depth", "flops.bert", "flops.mobilebert", "flops.embeddings_head"}
    again = predictor_from_dict(json.loads(json.dumps(reg.to_dict())))
    assert again.groups == ("depth", "flops")
    assert again.predict_ms(archs[0]) == reg.predict_ms(archs[0])


def test_cli_from_a_scratch_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {source: scratch}\n"
        "space: {preset: elm, options: {layers: 2, hidden: 32, heads: 2, ffn: 64, ffn_step: 32,"
        " hidden_choices: [16, 32], bottleneck_choices: [8, 16], ffn_stack: 2}}\n"
    )
    code = main(
        ["profile", str(config), "--run-dir", str(tmp_path / "run"), "--samples", "6", "--held-out", "2",
         "--seq-len", "8", "--repeats", "1", "--warmup", "0"]
    )  # fmt: skip
    assert code == 0
    assert "random weights (model.source: scratch)" in capsys.readouterr().out
    assert (tmp_path / "run" / "profile" / "predictor.json").is_file()
