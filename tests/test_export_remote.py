"""Exports in elastic-lm's own class carry their modelling code: transformers alone loads them.

The child process cannot import elastic-lm (``sys.modules["elastic_lm"] = None``), loads each folder with
``AutoModelFor*.from_pretrained(folder, trust_remote_code=True)`` and its outputs must equal the
super-network's sub-network's. That flag is what a user without elastic-lm passes, on a folder they
exported; elastic-lm itself never passes it (checked below: in-process loading uses the registered class).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM

from elastic_lm.export import export_subnetwork
from elastic_lm.export.remote import AUTO_MAP, MODULES, portable_source
from elastic_lm.model import ElasticForMaskedLM
from export_cases import batch, main_output, real_tokens, supernet
from space_cases import tiny

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["elastic_lm"] = None  # elastic-lm cannot be imported here
    import torch
    import transformers
    cases = json.loads(sys.argv[1])
    out = {}
    for path, (auto, ids, mask) in cases.items():
        model = getattr(transformers, auto).from_pretrained(path, trust_remote_code=True).eval()
        with torch.inference_mode():
            result = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        logits = getattr(result, "logits", None)
        logits = result.last_hidden_state if logits is None else logits
        out[path] = {"class": type(model).__name__, "module": type(model).__module__,
                     "output": logits.tolist()}
    print(json.dumps(out))
    """
)
AUTO = {"masked-lm": "AutoModelForMaskedLM", "causal-lm": "AutoModelForCausalLM",
        "sequence-classification": "AutoModelForSequenceClassification"}  # fmt: skip
CASES = [("elm", "masked-lm"), ("elm", "sequence-classification"), ("nasbert", "masked-lm"),
         ("llama", "causal-lm")]  # fmt: skip


def _child(cases: dict[str, list], tmp_path: Path, trust: bool = True) -> subprocess.CompletedProcess[str]:
    code = CHILD if trust else CHILD.replace(", trust_remote_code=True", "")
    env = {"HF_MODULES_CACHE": str(tmp_path / "hf-modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True, timeout=300,
        check=False, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
def test_own_class_exports_load_with_transformers_alone_and_match_the_subnetwork(tmp_path: Path) -> None:
    cases: dict[str, list] = {}
    expected: dict[str, tuple[str, torch.Tensor, torch.Tensor]] = {}
    for i, (name, task) in enumerate(CASES):
        net = supernet(name, task)
        arch = tiny(name).smallest() if i % 2 else tiny(name).largest()
        folder = tmp_path / f"{name}-{task}"
        done = export_subnetwork(net, arch, folder, prefer_stock=False)
        assert done.format == "elastic-lm"
        inputs = batch(seed=i)
        with torch.inference_mode(), net.using(arch):
            want = main_output(net(**inputs))
        cases[str(folder)] = [AUTO[task], inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()]
        expected[str(folder)] = (done.model_class, want, inputs["attention_mask"])
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == AUTO_MAP
        assert sorted(p.name for p in folder.glob("elm_*.py")) == sorted(MODULES.values())
        assert json.loads((folder / "export.json").read_text())["remote_code"] == sorted(
            MODULES.values(), key=list(MODULES.values()).index
        )
    run = _child(cases, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for path, (cls, want, mask) in expected.items():
        assert got[path]["class"] == cls
        assert got[path]["module"].startswith("transformers_modules."), got[path][
            "module"
        ]  # the folder's code
        diff = (real_tokens(torch.tensor(got[path]["output"]), mask) - real_tokens(want, mask)).abs().max()
        assert float(diff) <= 1e-5, (path, float(diff))


def test_without_trust_remote_code_nothing_runs_and_elastic_lm_uses_its_own_class(tmp_path: Path) -> None:
    net = supernet("elm", "masked-lm")
    folder = tmp_path / "m"
    export_subnetwork(net, tiny("elm").smallest(), folder, prefer_stock=False)
    # elastic-lm imported: its registered class wins; the folder's code is never executed
    loaded = AutoModelForMaskedLM.from_pretrained(folder)
    assert type(loaded) is ElasticForMaskedLM
    inputs = batch(seed=3)
    cases = {
        str(folder): ["AutoModelForMaskedLM", inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()]
    }
    run = _child(cases, tmp_path, trust=False)
    assert run.returncode != 0
    assert "trust_remote_code" in run.stderr
    assert not (tmp_path / "hf-modules").exists() or not any((tmp_path / "hf-modules").rglob("elm_heads.py"))


def test_the_copied_sources_import_nothing_of_elastic_lm() -> None:
    for relative in MODULES:
        text = portable_source(relative)
        assert not re.search(r"^\s*(from|import)\s+elastic_lm\b", text, re.MULTILINE), relative
    assert "from .elm_config import ElasticConfig" in portable_source("model/heads.py")
    assert "from .elm_architecture import" in portable_source("model/config.py")
