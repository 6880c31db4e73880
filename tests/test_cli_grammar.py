"""One CLI grammar: CONFIG may be a run directory, --print-config shows the resolved config, the
option tables of docs/cli.md are the parser's, run --json is a machine-readable summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from elastic_lm.cli.docs import documented_commands, options_table, render
from elastic_lm.cli.main import COMMANDS, main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_option_tables_are_generated_from_the_parser() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render(text) == text, "stale: run python -m elastic_lm.cli.docs docs/cli.md"
    assert sorted(documented_commands(text)) == sorted(COMMANDS)
    table = options_table("run")
    assert "| `--print-config` |" in table
    assert "| `--json` |" in table
    assert "| `-q, --quiet` |" in table


def test_print_config_shows_budget_and_overrides_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "elm-mlm", "--budget", "quick", "--set", "train.steps=7", "--print-config"])
    assert code == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["steps"] == 7
    assert shown["train"]["batch_size"] == 32  # from the quick budget (the recipe says 64)
    assert shown["run_dir"] == "runs/elm-mlm-quick"
    assert shown["budget"] == "quick"


def test_a_run_directory_stands_for_its_saved_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "moved-run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"run_dir": "runs/old-place", "train": {"steps": 11}}))
    assert main(["search", str(run), "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["steps"] == 11
    assert Path(shown["run_dir"]) == run  # the folder itself, wherever it is now
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["search", str(empty), "--print-config"]) == 2
    assert "without config.yaml" in capsys.readouterr().err


def test_run_json_is_a_machine_readable_summary(tmp_path: Path) -> None:
    from elastic_lm.cli.cmd_run import summary_dict

    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "index.json").write_text(
        json.dumps([{"name": "trial-3", "path": "export/trial-3"}])
    )
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "pareto.csv").write_text("trial,val_loss,params\n3,6.5,1200\n")
    out = summary_dict(tmp_path, [("train", "done", 1.23456), ("search", "skipped", 0.0)])
    assert json.loads(json.dumps(out)) == {
        "run_dir": str(tmp_path),
        "stages": [
            {"stage": "train", "status": "done", "seconds": 1.235},
            {"stage": "search", "status": "skipped", "seconds": 0.0},
        ],
        "report": None,
        "pareto": [{"trial": "3", "val_loss": "6.5", "params": "1200"}],
        "exported": [{"name": "trial-3", "path": "export/trial-3"}],
    }


def test_evaluate_takes_the_same_grammar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"evaluate": {"steps": 9}}))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"evaluate": {"steps": 4}}))
    assert main(["evaluate", str(run), "--set", "evaluate.batch_size=3", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["evaluate"]["steps"], shown["evaluate"]["batch_size"]) == (9, 3)
    assert Path(shown["run_dir"]) == run
    assert main(["evaluate", str(run), "--config", str(other), "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["evaluate"]["steps"] == 4
    assert Path(shown["run_dir"]) == run


def test_profile_takes_unset_options_from_the_config_profile_section(tmp_path: Path) -> None:
    import argparse

    from elastic_lm.cli.cmd_profile import fill_from_config, profile_section

    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"profile": {"samples": 20, "seq_len": 32, "repeats": 4, "held_out": 5}})
    )
    args = argparse.Namespace(
        config=str(config), overrides=["profile.threads=2"], run_dir=None, budget=None,
        samples=None, batch_size=None, seq_len=64, threads=None, device=None, backend=None,
        repeats=None, warmup=None, clock=None,
    )  # fmt: skip
    fill_from_config(args)
    assert (args.samples, args.seq_len, args.repeats, args.threads) == (20, 64, 4, 2)  # --seq-len wins
    assert (args.batch_size, args.device, args.backend, args.clock) == (1, "cpu", "torch", "wall")
    assert profile_section(args).held_out == 5
