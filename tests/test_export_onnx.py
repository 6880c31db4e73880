"""ONNX export: the graph onnxruntime runs computes what PyTorch computes, at any batch size and length."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from elastic_lm.errors import UserError
from elastic_lm.export import export_onnx, export_subnetwork
from export_cases import batch, supernet
from space_cases import tiny

ort = pytest.importorskip("onnxruntime")


def test_export_with_onnx_round_trips_through_onnxruntime(tmp_path: Path) -> None:
    model = supernet("elm", "masked-lm")
    arch = tiny("elm").sample(random.Random(3))
    done = export_subnetwork(model, arch, tmp_path / "m", onnx=True, seq_len=12)
    assert done.onnx_path == tmp_path / "m" / "model.onnx"
    record = json.loads((tmp_path / "m" / "export.json").read_text())
    assert record["onnx"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(done.onnx_path), providers=["CPUExecutionProvider"])
    b = batch(5, length=9)  # another batch size and length than the trace
    feeds = {i.name: b[i.name].numpy() for i in session.get_inputs()}
    assert [o.name for o in session.get_outputs()] == ["logits"]  # as transformers' ONNX exports
    [got] = session.run(["logits"], feeds)
    with torch.inference_mode(), model.using(arch):
        expected = model(**b).logits.numpy()
    real = b["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_gqa_llama_exports(tmp_path: Path) -> None:
    sub = supernet("llama", "causal-lm").extract(tiny("llama").largest())
    assert export_onnx(sub, tmp_path / "l.onnx", seq_len=8).max_abs_diff <= 1e-4


def test_missing_onnx_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    with pytest.raises(UserError, match=r"pip install 'elastic-lm\[onnx\]'"):
        export_onnx(supernet("elm", "masked-lm"), tmp_path / "x.onnx")


def test_a_backbone_graph_outputs_last_hidden_state(tmp_path: Path) -> None:
    """A model without a head names its output as transformers does, and onnxruntime computes it."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32)).eval()  # fmt: skip
    done = export_onnx(model, tmp_path / "b.onnx", seq_len=8)
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    [got] = session.run(["last_hidden_state"], {i.name: feeds[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    assert got.shape == (3, 6, 16)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
