"""Exported encoders as sentence-transformers folders: they load with that library (a stock-shaped one
without elastic-lm) and embed exactly as the super-network's sub-network does under the source's pooling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.evaluate.embedding import PoolingSpec, TextEmbedder, read_pooling_spec, subnetwork_forward
from elastic_lm.export import export_subnetwork
from elastic_lm.export.sentence import export_sentence_transformer, sentence_folder_for, sentence_spec_of
from elastic_lm.model import ElasticConfig, build_model

pytest.importorskip("sentence_transformers")

TEXTS = [
    "the cat sat on the mat .",
    "a good film",
    "i hated it !",
    "the dog was not very bad , and i liked it",
]
CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["elastic_lm"] = None  # a stock-shaped export must load without elastic-lm
    from sentence_transformers import SentenceTransformer
    texts = json.loads(sys.argv[1])
    out = {d: SentenceTransformer(d, device="cpu").encode(texts, batch_size=2).tolist() for d in sys.argv[2:]}
    print(json.dumps(out))
    """
)
MODES = [("mean", True), ("cls", False), ("max", True), ("mean_sqrt_len", False)]


def supernet():
    torch.manual_seed(0)
    config = ElasticConfig(
        vocab_size=40,
        hidden_size=16,
        num_layers=3,
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=12,
        max_position_embeddings=32,
        block_candidates=[["bert"]] * 3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        task="masked-lm",
    )
    return build_model(config).eval()


def test_stock_sentence_exports_load_without_elastic_lm_and_match_the_subnetwork(
    tmp_path: Path, tiny_tokenizer
) -> None:
    model = supernet()
    arch = Architecture(
        hidden=8,
        layers=(
            LayerArch("bert", head_ids=(1, 3), ffn=5),
            LayerArch("identity"),
            LayerArch("bert", heads=2, ffn=5),
        ),
    )
    done = export_subnetwork(model, arch, tmp_path / "trial-1", tokenizer=tiny_tokenizer)
    assert done.model_class == "BertForMaskedLM"
    expected, folders = {}, []
    for mode, normalize in MODES:
        spec = PoolingSpec(mode, normalize, 24)  # type: ignore[arg-type]
        folder = export_sentence_transformer(done.path, spec, tmp_path / f"{mode}-st")
        assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
        origin = f"sentence-transformers config of {mode}-st"
        assert read_pooling_spec(folder) == PoolingSpec(mode, normalize, 24, origin)  # type: ignore[arg-type]
        expected[str(folder)] = TextEmbedder(subnetwork_forward(model, arch), tiny_tokenizer, spec).embed(
            TEXTS
        )
        folders.append(str(folder))
    assert sentence_folder_for(done.path) == tmp_path / "trial-1-st"
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(TEXTS), *folders],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for (_, normalize), folder in zip(MODES, folders, strict=True):
        got = torch.tensor(results[folder])
        assert got.shape == (len(TEXTS), 8)
        assert float((got - expected[folder]).abs().max()) <= 1e-5, folder
        unit = torch.allclose(got.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
        assert unit == normalize, folder


def test_elastic_shaped_sentence_export_matches_the_subnetwork(tmp_path: Path, tiny_tokenizer) -> None:
    from sentence_transformers import SentenceTransformer

    model = supernet()
    uneven = Architecture(
        hidden=16, layers=(LayerArch("bert"), LayerArch("bert", heads=2, ffn=5), LayerArch("identity"))
    )
    done = export_subnetwork(model, uneven, tmp_path / "trial-2", tokenizer=tiny_tokenizer)
    assert done.format == "elastic-lm"
    spec = PoolingSpec("mean", True, 24)
    folder = export_sentence_transformer(done.path, spec)
    assert "import elastic_lm.model" in (folder / "README.md").read_text()
    got = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True, batch_size=3)
    expected = TextEmbedder(subnetwork_forward(model, uneven), tiny_tokenizer, spec).embed(TEXTS)
    assert float((got.cpu() - expected).abs().max()) <= 1e-5
    # without elastic-lm: the folder's own modelling code (elm_*.py), as a user opts in to it
    child = CHILD.replace('device="cpu")', 'device="cpu", trust_remote_code=True)')
    assert child != CHILD
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf-modules")}
    run = subprocess.run(
        [sys.executable, "-c", child, json.dumps(TEXTS), str(folder)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    alone = torch.tensor(json.loads(run.stdout.strip().splitlines()[-1])[str(folder)])
    assert float((alone - expected).abs().max()) <= 1e-5


def test_the_source_decides_whether_there_is_a_sentence_export(tmp_path: Path) -> None:
    assert sentence_spec_of("scratch") is None
    assert sentence_spec_of(str(tmp_path / "nowhere")) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert sentence_spec_of(str(plain)) is None  # a model folder without modules.json


@pytest.mark.assets
def test_minilm_is_mean_pooled_and_normalised() -> None:
    from elastic_lm.assets import get_asset

    if not get_asset("minilm-l6").installed:
        pytest.skip("minilm-l6 asset not installed")
    spec = sentence_spec_of("minilm-l6")
    assert spec is not None
    assert (spec.mode, spec.normalize, spec.max_seq_length) == ("mean", True, 256)


def test_pareto_export_writes_a_sentence_folder_beside_each_member(tmp_path: Path, tiny_tokenizer) -> None:
    from elastic_lm.export import export_pareto

    source = tmp_path / "source"  # a sentence-transformers source: mean pooling, no normalisation
    (source / "1_Pooling").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (source / "modules.json").write_text(json.dumps(modules))
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    run = tmp_path / "run"
    folder = run / "train" / "supernet"
    model = supernet()
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"source_model": str(source)}))
    small = Architecture(
        hidden=16, layers=(LayerArch("bert", heads=4, ffn=6),) * 2 + (LayerArch("identity"),)
    )
    trials = [
        {
            "number": 0,
            "architecture": model.architecture.to_dict(),
            "metrics": {"val_loss": 1.0, "params": 9},
        },
        {"number": 1, "architecture": small.to_dict(), "metrics": {"val_loss": 2.0, "params": 5}},
    ]
    (run / "search").mkdir()
    (run / "search" / "trials.json").write_text(json.dumps(trials))
    objectives = [{"name": "val_loss", "direction": "minimize"}, {"name": "params", "direction": "minimize"}]
    (run / "search" / "summary.json").write_text(json.dumps({"objectives": objectives, "strategy": "random"}))
    export_pareto(run)
    index = json.loads((run / "export" / "index.json").read_text())
    assert [e.get("sentence_transformers") for e in index] == ["export/trial-0-st", "export/trial-1-st"]
    spec = read_pooling_spec(run / "export" / "trial-1-st")
    assert spec is not None
    assert (spec.mode, spec.normalize) == ("mean", False)
    expected = TextEmbedder(subnetwork_forward(model, small), tiny_tokenizer, spec).embed(TEXTS)
    from elastic_lm.evaluate.embedding import folder_embedder

    got, _ = folder_embedder(run / "export" / "trial-1-st", tiny_tokenizer, spec)
    assert float((got.embed(TEXTS) - expected).abs().max()) <= 1e-5
