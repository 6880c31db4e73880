"""The wheel works outside the repository: recipes ship inside it and run by name, and every kind of
export it writes loads with transformers in a process where elastic-lm cannot be imported.

Builds the wheel from a copy of the sources, installs it (``--no-deps``) into a new virtual environment in
a temporary folder, and runs the installed ``elastic-lm`` from there with no ``PYTHONPATH``. The new
environment sees the current one's site-packages through a plain path line (so torch etc. are reused and
the test takes seconds), which does *not* run the editable install's ``.pth``: the only ``elastic_lm``
it can import is the wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
import torch
import yaml

from prune_fixtures import sentiment_rows, tiny_bert

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    for name in ("src", "configs"):
        shutil.copytree(ROOT / name, target / name, symlinks=True, ignore=ignore)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding only the freshly built wheel of elastic-lm."""
    pytest.importorskip("setuptools")  # in the dev extra: building the wheel needs it
    work = tmp_path_factory.mktemp("wheel")
    (work / "src-copy").mkdir()
    _copy_sources(work / "src-copy")
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", "--no-build-isolation", "-w",
         str(work / "dist"), str(work / "src-copy")],
        check=True, cwd=work,
    )  # fmt: skip
    wheels = list((work / "dist").glob("elastic_lm-*.whl"))
    assert len(wheels) == 1
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    reuse = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "reuse-parent-env.pth").write_text("\n".join(reuse) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", *quiet, "--python", str(python), "install", "--no-deps", "--no-index",
         str(wheels[0])],
        check=True, cwd=work,
    )  # fmt: skip
    return env_dir / "bin"


def _outside(
    bin_dir: Path, args: list[str], cwd: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(extra or {}))
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    done = _outside(installed, ["python", "-c", "import elastic_lm; print(elastic_lm.__file__)"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.parent)


def test_recipes_ship_in_the_wheel_and_list(installed: Path, tmp_path: Path) -> None:
    done = _outside(installed, ["elastic-lm", "recipes", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    expected = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    assert sorted(rows) == expected
    assert "quick" in rows["elm-mlm"]["budgets"]
    assert Path(rows["elm-mlm"]["path"]).is_relative_to(installed.parent)
    shipped = yaml.safe_load(Path(rows["elm-mlm"]["path"]).read_text())
    assert shipped == yaml.safe_load((ROOT / "configs" / "elm-mlm.yaml").read_text())


@pytest.fixture(scope="module")
def tiny_run(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the installed ``elastic-lm run elm-mlm`` trained a tiny super-network (``run/``)."""
    work = tmp_path_factory.mktemp("outside")
    cache = work / "cache"  # the isolated_cache fixture is function-scoped; this run has its own
    cache.mkdir()
    source = tiny_bert(work / "tiny-bert")
    corpus = work / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(120)))
    options = ("{layers: 2, hidden: 32, heads: 4, ffn: 64, head_step: 2, ffn_step: 32, "
               "hidden_choices: [16, 32], ffn_stack: 2}")  # fmt: skip
    sets = [
        f"model.source={source}", f"teacher.source={source}", "teacher.retrain_steps=2",
        f"space.options={options}", f"data.source={corpus}", "data.max_length=16",
        "train.steps=2", "train.batch_size=4", "train.eval_batches=1",
    ]  # fmt: skip
    args = ["elastic-lm", "run", "elm-mlm", "--budget", "quick", "--run-dir", "run", "--until", "train"]
    for item in sets:
        args += ["--set", item]
    done = _outside(installed, args, work, {"ELASTIC_LM_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def test_a_tiny_recipe_runs_by_name_outside_the_repository(tiny_run: Path) -> None:
    saved = yaml.safe_load((tiny_run / "run" / "config.yaml").read_text())
    assert saved["space"]["preset"] == "elm"  # from the shipped recipe
    losses = [loss["name"] for loss in saved["train"]["losses"]]
    assert losses == ["last-hidden", "embedding", "minilm-relation"]
    assert saved["search"]["trials"] == 200  # the recipe's quick budget
    assert (tiny_run / "run" / "train" / "supernet" / "space.json").is_file()


# Run by the wheel's Python: export a uniform (stock) and an uneven (own-class) member of the trained
# super-network and record each one's logits as elastic-lm computes them.
EXPORT = textwrap.dedent(
    """
    import json, sys
    import torch
    from elastic_lm.architecture import Architecture, LayerArch
    from elastic_lm.export import export_subnetwork, load_supernet
    net = load_supernet("run/train/supernet").model.eval()
    shapes = {"stock": [(4, 64), (4, 64)], "own": [(4, 64), (2, 32)]}
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    out = {}
    for name, layers in shapes.items():
        arch = Architecture(hidden=32, layers=tuple(LayerArch("bert", heads=h, ffn=f) for h, f in layers))
        done = export_subnetwork(net, arch, f"export/{name}", prefer_stock=name == "stock")
        with torch.inference_mode(), net.using(arch):
            logits = net(input_ids=ids, attention_mask=mask).logits
        out[name] = {"format": done.format, "path": str(done.path), "logits": logits[mask.bool()].tolist()}
    print(json.dumps({"ids": ids.tolist(), "mask": mask.tolist(), "exports": out}))
    """
)
# Run where elastic-lm cannot be imported: transformers alone loads each export (the own-class one
# with its folder's code, which is what a user without elastic-lm opts in to).
LOAD = textwrap.dedent(
    """
    import json, sys
    sys.modules["elastic_lm"] = None
    import torch
    from transformers import AutoModelForMaskedLM
    spec = json.loads(sys.stdin.read())
    ids, mask = torch.tensor(spec["ids"]), torch.tensor(spec["mask"])
    out = {}
    for name, info in spec["exports"].items():
        remote = {"trust_remote_code": True} if info["format"] == "elastic-lm" else {}
        model = AutoModelForMaskedLM.from_pretrained(info["path"], **remote).eval()
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits
        out[name] = {"class": type(model).__name__, "module": type(model).__module__,
                     "logits": logits[mask.bool()].tolist()}
    print(json.dumps(out))
    """
)


def test_every_export_loads_with_transformers_where_elastic_lm_cannot_be_imported(
    installed: Path, tiny_run: Path
) -> None:
    exported = _outside(installed, ["python", "-c", EXPORT], tiny_run)
    assert exported.returncode == 0, exported.stderr[-3000:]
    spec = json.loads(exported.stdout.strip().splitlines()[-1])
    assert {k: v["format"] for k, v in spec["exports"].items()} == {"stock": "stock", "own": "elastic-lm"}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tiny_run / "hf-modules"))
    loaded = subprocess.run(
        [str(installed / "python"), "-c", LOAD], input=json.dumps(spec), cwd=tiny_run, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    got = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert got["stock"]["class"] == "BertForMaskedLM"
    assert got["stock"]["module"].startswith("transformers.models.bert")
    assert got["own"]["class"] == "ElasticForMaskedLM"
    assert got["own"]["module"].startswith("transformers_modules.")  # the folder's own code
    for name, info in spec["exports"].items():
        diff = (torch.tensor(got[name]["logits"]) - torch.tensor(info["logits"])).abs().max()
        assert float(diff) <= 1e-5, (name, float(diff))
