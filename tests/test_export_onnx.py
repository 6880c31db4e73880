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
    got = session.run(None, feeds)[0]
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
