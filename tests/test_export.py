"""Exported sub-networks of every preset reload with ``from_pretrained`` and compute exactly what the
super-network computes with that architecture selected; their size is what ``count_params`` says."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

import elastic_lm.model  # noqa: F401 - registers model_type "elastic-lm" with the Auto classes
from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ArchitectureError
from elastic_lm.export import export_subnetwork, stock_fit, verify_export
from elastic_lm.metrics.size import count_flops, count_params
from export_cases import PRESETS, batch, main_output, real_tokens, supernet, tasks_for
from space_cases import tiny

AUTO = {
    "masked-lm": AutoModelForMaskedLM,
    "causal-lm": AutoModelForCausalLM,
    "sequence-classification": AutoModelForSequenceClassification,
}


def check_round_trip(name: str, task: str, arch: Architecture, prefer_stock: bool, seed: int) -> dict:
    model = supernet(name, task)
    b = batch(seed)
    with torch.inference_mode(), model.using(arch):
        expected = main_output(model(**b))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sub"
        done = export_subnetwork(model, arch, out, prefer_stock=prefer_stock, seq_len=16)
        reloaded = AUTO[task].from_pretrained(out).eval()
        record = json.loads((out / "export.json").read_text())
        card = (out / "README.md").read_text()
    with torch.inference_mode():
        got = main_output(reloaded(**b))
    torch.testing.assert_close(
        real_tokens(got, b["attention_mask"]),
        real_tokens(expected, b["attention_mask"]),
        atol=1e-5,
        rtol=1e-5,
    )
    n = sum(p.numel() for p in reloaded.parameters())
    assert done.params == count_params(model.config, arch) == n
    assert done.flops == count_flops(model.config, arch, 16)
    assert type(reloaded).__name__ == done.model_class == record["model_class"]
    expect_stock = prefer_stock and stock_fit(model.extract(arch)).fits
    assert done.format == ("stock" if expect_stock else "elastic-lm")
    assert Architecture.from_dict(record["architecture"]) == arch
    assert f"{n:,}" in card
    assert done.format in card
    return record


@settings(max_examples=28, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_sub_networks_of_every_preset_round_trip(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(PRESETS))
    task = data.draw(st.sampled_from(tasks_for(name)))
    arch = tiny(name).sample(random.Random(data.draw(st.integers(0, 10_000))))
    prefer_stock = data.draw(st.booleans())
    check_round_trip(name, task, arch, prefer_stock, data.draw(st.integers(0, 100)))


def test_own_class_with_rope_reloads_its_rotary_tables() -> None:
    """Llama classification has no stock form; its RoPE tables must survive from_pretrained."""
    arch = tiny("llama").largest()
    check_round_trip("llama", "sequence-classification", arch, True, 0)


@pytest.mark.parametrize("name", PRESETS)
def test_smallest_and_largest_member_of_each_preset_round_trip(name: str) -> None:
    space = tiny(name)
    for arch in (space.smallest(), space.largest()):
        check_round_trip(name, tasks_for(name)[0], arch, True, 0)  # llama: stock LlamaForCausalLM


def test_uniform_prune_small_member_is_saved_as_stock_bert() -> None:
    space = tiny("prune-small")
    full = space.largest()
    arch = Architecture(hidden=full.hidden, layers=(LayerArch("bert", heads=2, ffn=2),) * 2 + full.layers[2:])
    arch = space.decode(space.encode(arch))
    record = check_round_trip("prune-small", "masked-lm", arch, True, 3)
    assert record["format"] == "stock"
    assert record["model_class"] == "BertForMaskedLM"
    record = check_round_trip("prune-small", "masked-lm", arch, False, 3)
    assert record["format"] == "elastic-lm"
    assert record["model_class"] == "ElasticForMaskedLM"


def test_card_states_provenance_metrics_and_how_to_load(tmp_path: Path) -> None:
    model = supernet("elm", "masked-lm")
    arch = tiny("elm").smallest()
    prov = {"supernet": "runs/x/train/supernet", "strategy": "nsga2", "license": "apache-2.0", "trial": 7}
    export_subnetwork(
        model, arch, tmp_path / "small", provenance=prov, metrics={"val_loss": 3.25}, prefer_stock=False
    )
    card = (tmp_path / "small" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n")
    for text in (
        "runs/x/train/supernet",
        "nsga2",
        "| val_loss | 3.25 |",
        "AutoModelForMaskedLM",
        "import elastic_lm.model",
        "FLOPs at 128 tokens",
        '"hidden": 32',
    ):
        assert text in card, text
    assert json.loads((tmp_path / "small" / "architecture.json").read_text()) == arch.to_dict()


def test_export_is_atomic_and_rejects_architectures_that_do_not_fit(tmp_path: Path) -> None:
    model = supernet("prune-small", "masked-lm")
    good = tiny("prune-small").smallest()
    export_subnetwork(model, good, tmp_path / "m")
    before = sorted(p.name for p in (tmp_path / "m").iterdir())
    too_wide = Architecture(hidden=999, layers=good.layers)
    with pytest.raises(ArchitectureError, match="hidden=999"):
        export_subnetwork(model, too_wide, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert {"config.json", "model.safetensors", "README.md", "export.json"} <= set(before)


def test_card_metadata_names_base_model_licence_datasets_and_measured_metrics(tmp_path: Path) -> None:
    """The Hub metadata comes from the source asset and the run's saved config, metrics as measured."""
    import yaml

    from elastic_lm.export.hub import front_matter, weights_licence

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump({"budget": "quick", "data": {"source": ["austen", "bbc-news"]}})
    )
    model = supernet("elm", "masked-lm")
    prov = {
        "source_model": "minilm-l6",
        "run_dir": str(run),
        "strategy": "mo-rea",
        "trial": 3,
        "space": "elm",
    }
    export_subnetwork(
        model, tiny("elm").smallest(), tmp_path / "m", provenance=prov,
        metrics={"val_loss": 6.25, "params": 1234}, prefer_stock=False,
    )  # fmt: skip
    card = (tmp_path / "m" / "README.md").read_text()
    meta = front_matter(card)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0"  # the registry says "Apache-2.0 (weights), MIT (package)"
    assert meta["datasets"] == ["austen", "bbc-news"]
    assert meta["pipeline_tag"] == "fill-mask"
    assert {"elastic-lm", "neural-architecture-search", "bert"} <= set(meta["tags"])
    [entry] = meta["model-index"]
    assert entry["name"] == "m"
    [result] = entry["results"]
    assert result["task"]["type"] == "fill-mask"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"params": 1234.0, "val_loss": 6.25}
    assert f"elastic-lm run {run / 'config.yaml'}" in card
    assert "## How it was made" in card
    assert "trial 3" in card
    assert weights_licence("MIT") == "mit"
    assert weights_licence("(c) BBC, research use only") == "other"


def test_export_verification_scales_with_the_outputs_and_still_catches_a_wrong_model(tmp_path: Path) -> None:
    """Logits of about 330 differ by 3e-5 from float32 round-off alone (the largest member here): the
    tolerance scales with them, while a model whose weights really differ is refused, nothing written."""
    from elastic_lm.export.onnx import ExportVerificationError
    from elastic_lm.export.stock import to_stock

    model = supernet("prune-small", "sequence-classification")
    arch = tiny("prune-small").largest()
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.mul_(1e4)
    stock = to_stock(model.extract(arch))  # the stock class sums in another order
    assert verify_export(model, arch, stock) > 1e-5  # what the fixed 1e-5 refused
    export_subnetwork(model, arch, tmp_path / "large-logits")
    assert (tmp_path / "large-logits" / "model.safetensors").is_file()

    extract = model.extract

    def wrong(a: Architecture) -> torch.nn.Module:
        sub = extract(a)
        with torch.no_grad():
            sub.classifier.bias.add_(1.0)  # 1 in logits of 330: 3e-3 relative, far above 1e-5
        return sub

    model.extract = wrong  # type: ignore[method-assign]
    with pytest.raises(ExportVerificationError, match="differs from the super-network"):
        export_subnetwork(model, arch, tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists()
