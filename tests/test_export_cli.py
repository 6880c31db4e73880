"""``elastic-lm export``: one sub-network from a super-network folder, or a run's Pareto set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.cli.main import main
from elastic_lm.export import load_supernet
from elastic_lm.metrics.size import count_params
from export_cases import supernet
from space_cases import tiny


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved prune-small super-network with its space.json, as training leaves it."""
    path = tmp_path_factory.mktemp("sn") / "supernet"
    supernet("prune-small", "masked-lm").save_pretrained(path)
    (path / "space.json").write_text(json.dumps(tiny("prune-small").to_dict()))
    (path / "provenance.json").write_text(json.dumps({"source_model": "random tiny BERT", "license": "mit"}))
    return path


def arch_json(heads: int = 1, ffn: int = 2) -> str:
    layer = LayerArch("bert", heads=heads, ffn=ffn)
    return Architecture(hidden=32, layers=(layer, layer, LayerArch("identity"))).to_json()


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_export_one_architecture_from_json_or_file(supernet_dir: Path, tmp_path: Path) -> None:
    assert main(["export", str(supernet_dir), "--arch", arch_json(), "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "export.json").read_text())
    assert record["format"] == "elastic-lm"  # 1 head x 16 != hidden 32: no stock BERT form
    assert record["provenance"]["license"] == "mit"
    assert record["provenance"]["supernet"] == str(supernet_dir)
    file = tmp_path / "arch.json"
    file.write_text(arch_json(heads=2))
    assert main(["export", str(supernet_dir), "--arch", str(file), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "export.json").read_text())["model_class"] == "BertForMaskedLM"
    assert "license: mit" in (tmp_path / "b" / "README.md").read_text()


def test_errors_are_one_line_with_exit_code_2(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x")
    err = error_of(capsys, ["export", str(supernet_dir), "--arch", "{not json", "--out", out])
    assert "--arch is not valid JSON" in err
    err = error_of(capsys, ["export", str(supernet_dir), "--arch", "nope.json", "--out", out])
    assert "neither JSON text nor an existing file" in err
    err = error_of(capsys, ["export", str(supernet_dir), "--arch", arch_json(ffn=3), "--out", out])
    assert "outside the super-network's space.json" in err
    assert "ffn" in err
    err = error_of(capsys, ["export", str(tmp_path / "missing"), "--arch", arch_json(), "--out", out])
    assert "does not exist" in err
    assert not (tmp_path / "x").exists()


def test_checkpoint_shape_mismatch_names_the_first_tensor(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((supernet_dir / "model.safetensors").read_bytes())
    config = json.loads((supernet_dir / "config.json").read_text())
    config["intermediate_size"] = 6
    (broken / "config.json").write_text(json.dumps(config))
    err = error_of(capsys, ["export", str(broken), "--arch", arch_json(), "--out", str(tmp_path / "x")])
    assert (
        "tensor 'model.layers.0.bert.ffn.down.weight' has shape [32, 4] but config.json implies [32, 6]"
        in err
    )


def write_run(run_dir: Path, supernet_dir: Path) -> list[Architecture]:
    """A finished search: three trials, two on the (val_loss, params) front, one dominated."""
    archs = [
        Architecture(hidden=32, layers=(LayerArch("bert", heads=2, ffn=4),) * 3),
        Architecture(hidden=32, layers=(LayerArch("bert", heads=1, ffn=2), *(LayerArch("identity"),) * 2)),
        Architecture(
            hidden=32,
            layers=(
                LayerArch("bert", heads=1, ffn=4),
                LayerArch("bert", heads=1, ffn=4),
                LayerArch("identity"),
            ),
        ),
    ]
    config = supernet("prune-small", "masked-lm").config
    losses = [3.0, 4.0, 5.0]
    trials = [
        {
            "number": i,
            "architecture": a.to_dict(),
            "metrics": {"val_loss": v, "params": count_params(config, a)},
        }
        for i, (a, v) in enumerate(zip(archs, losses, strict=True))
    ]
    (run_dir / "search").mkdir(parents=True)
    (run_dir / "search" / "trials.json").write_text(json.dumps(trials))
    summary = {
        "objectives": [
            {"name": "val_loss", "direction": "minimize"},
            {"name": "params", "direction": "minimize"},
        ],
        "strategy": "nsga2",
    }
    (run_dir / "search" / "summary.json").write_text(json.dumps(summary))
    (run_dir / "train").mkdir()
    (run_dir / "train" / "supernet").symlink_to(supernet_dir, target_is_directory=True)
    return archs


def test_pareto_exports_the_front_and_writes_the_index(supernet_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    archs = write_run(run, supernet_dir)
    assert main(["export", str(run), "--pareto"]) == 0
    index = json.loads((run / "export" / "index.json").read_text())
    assert [e["name"] for e in index] == ["trial-0", "trial-1"]  # trial 2 is dominated by trial 1
    assert [e["format"] for e in index] == ["stock", "elastic-lm"]
    for entry, arch in zip(index, archs, strict=False):
        assert entry["path"] == f"export/{entry['name']}"
        assert (
            Architecture.from_dict(json.loads((run / entry["path"] / "architecture.json").read_text()))
            == arch
        )
        card = (run / entry["path"] / "README.md").read_text()
        assert "nsga2" in card
        assert "| val_loss |" in card
    # a budget between the two: only the best member that fits is exported
    budget = int(index[1]["metrics"]["params"]) + 1
    assert main(["export", str(run), "--pareto", "--max-params", str(budget)]) == 0
    assert [e["name"] for e in json.loads((run / "export" / "index.json").read_text())] == ["trial-1"]


def test_pareto_budget_below_every_member_is_a_user_error(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    write_run(run, supernet_dir)
    err = error_of(capsys, ["export", str(run), "--pareto", "--max-params", "10"])
    assert "--max-params 10 is below every Pareto member" in err


def test_load_supernet_reads_space_and_provenance(supernet_dir: Path) -> None:
    loaded = load_supernet(supernet_dir)
    assert loaded.space == tiny("prune-small")
    assert loaded.provenance["license"] == "mit"
    assert not loaded.has_tokenizer


def test_pareto_export_json_lists_what_was_written(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    write_run(run, supernet_dir)
    assert main(["export", str(run), "--pareto", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    index = json.loads((run / "export" / "index.json").read_text())
    assert [Path(r["path"]) for r in rows] == [run / e["path"] for e in index]
    assert [r["format"] for r in rows] == ["stock", "elastic-lm"]
    assert all(
        r["params"] == json.loads((Path(r["path"]) / "export.json").read_text())["params"] for r in rows
    )


def test_pareto_from_a_recipe_with_budget_and_set(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CONFIG --budget names the run directory; the export section (max_models) and --set apply."""
    run = tmp_path / "runs" / "tiny-quick"
    write_run(run, supernet_dir)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        f"run_dir: {tmp_path / 'runs' / 'tiny'}\n"
        f"budgets:\n  quick:\n    run_dir: {run}\n    export: {{max_models: 2}}\n"
    )
    assert main(["export", str(recipe), "--budget", "quick", "--pareto", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert f"run_dir: {run}\n" in printed
    assert "max_models: 2" in printed
    assert not (run / "export").exists()  # --print-config writes nothing
    assert main(["export", str(recipe), "--budget", "quick", "--pareto", "--set", "export.max_models=1"]) == 0
    index = json.loads((run / "export" / "index.json").read_text())
    assert len(index) == 1  # of the two Pareto members, max_models=1 keeps one
    assert not (tmp_path / "runs" / "tiny").exists()  # the budget's run directory, not the file's


def test_set_without_a_config_is_a_one_line_error(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "bare"
    write_run(run, supernet_dir)  # a run folder without config.yaml
    err = error_of(capsys, ["export", str(run), "--pareto", "--set", "export.max_models=1"])
    assert "has no config.yaml, so --set / --budget have nothing to apply to" in err
    err = error_of(capsys, ["export", str(supernet_dir), "--arch", arch_json(), "--out", str(tmp_path / "o"),
                            "--budget", "quick"])  # fmt: skip
    assert "--set and --budget apply to a run's config, i.e. with --pareto" in err
    assert not (run / "export").exists()


def test_best_under_budget_takes_the_best_quality_not_the_largest() -> None:
    """On a front that also ranks decode time, the largest member that fits can be faster and worse;
    the budget's choice is the lowest perplexity among those that fit, counted as asked."""
    from elastic_lm.export.pareto import best_under_budget
    from elastic_lm.report.records import Trial

    def trial(number: int, ppl: float, params: float, ms: float) -> Trial:
        metrics = {"perplexity": ppl, "params_nonembedding": params, "decode_ms_per_token": ms}
        return Trial(number, None, metrics)

    names = ("perplexity", "params_nonembedding", "decode_ms_per_token")
    directions = dict.fromkeys(names, "minimize")
    front = [trial(0, 80.0, 100.0, 38.0), trial(3, 216.0, 58.0, 26.5), trial(10, 299.0, 59.9, 25.8)]
    chosen = best_under_budget(front, directions, 60, None, embeddings=False)  # type: ignore[arg-type]
    assert chosen is not None
    assert chosen.number == 3
    assert best_under_budget(front, directions, 57, None, embeddings=False) is None  # type: ignore[arg-type]
    # the quality objective is found wherever it sits among the objectives
    reordered = dict.fromkeys(names[1:] + names[:1], "minimize")
    full = best_under_budget(front, reordered, 100, None, embeddings=False)  # type: ignore[arg-type]
    assert full is not None
    assert full.number == 0
