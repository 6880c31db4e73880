"""``elastic-lm run`` orchestration: stage order, skipping finished stages, --from / --until, resume;
a pruning recipe dispatched to the prune stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from elastic_lm.cli.main import main
from elastic_lm.config import Config, load_config
from elastic_lm.config.loading import validate_config
from elastic_lm.errors import ConfigError
from elastic_lm.pipeline import STAGES, RunDirectory
from elastic_lm.pipeline.run import run_pipeline
from prune_fixtures import prune_config


class Recorder:
    """Fake stages that record calls; one can be told to crash."""

    def __init__(self, crash_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.crash_at = crash_at

    def stages(self) -> dict[str, Any]:
        def make(stage: str):
            def stage_function(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
                self.calls.append(stage)
                if stage == self.crash_at:
                    raise RuntimeError(f"killed during {stage}")
                (run_dir.stage_dir(stage) / "out.txt").parent.mkdir(parents=True, exist_ok=True)
                (run_dir.stage_dir(stage) / "out.txt").write_text(stage)
                return {"made": stage}

            return stage_function

        return {stage: make(stage) for stage in STAGES}


def _config(tmp_path: Path, *overrides: str) -> Config:
    return load_config(None, [f"run_dir={tmp_path / 'run'}", *overrides])


def test_runs_every_stage_in_order_then_skips_them(tmp_path: Path) -> None:
    recorder = Recorder()
    first = run_pipeline(_config(tmp_path), stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == list(STAGES)
    assert [o.status for o in first] == ["ran"] * len(STAGES)
    second = run_pipeline(_config(tmp_path), stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == list(STAGES)  # nothing ran again
    assert [o.status for o in second] == ["skipped"] * len(STAGES)
    assert second[1].outputs == {"made": "train"}


def test_crash_midway_resumes_at_the_unfinished_stage(tmp_path: Path) -> None:
    crashing = Recorder(crash_at="search")
    with pytest.raises(RuntimeError, match="killed during search"):
        run_pipeline(_config(tmp_path), stages=crashing.stages(), log=lambda _: None)
    assert crashing.calls == ["teacher", "train", "profile", "search"]
    again = Recorder()
    outcomes = run_pipeline(_config(tmp_path), stages=again.stages(), log=lambda _: None)
    assert again.calls == ["search", "export", "evaluate", "report"]
    assert [o.status for o in outcomes[:3]] == ["skipped", "skipped", "skipped"]


def test_changed_setting_reruns_its_stage_and_everything_after(tmp_path: Path) -> None:
    run_pipeline(_config(tmp_path), stages=Recorder().stages(), log=lambda _: None)
    recorder = Recorder()
    run_pipeline(_config(tmp_path, "search.trials=7"), stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["profile", "search", "export", "evaluate", "report"]


def test_from_and_until(tmp_path: Path) -> None:
    recorder = Recorder()
    run_pipeline(_config(tmp_path), until="train", stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["teacher", "train"]
    recorder = Recorder()
    run_pipeline(_config(tmp_path), start="train", stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["train", "profile", "search", "export", "evaluate", "report"]


def test_profile_stage_runs_only_when_a_latency_predictor_is_needed(tmp_path: Path) -> None:
    from elastic_lm.pipeline.stages import needs_profile, profile_stage

    plain = _config(tmp_path)
    assert not needs_profile(plain)
    assert "skipped" in profile_stage(plain, RunDirectory(plain.run_dir))
    predicted = _config(tmp_path, "search.objectives=[{name: val_loss}, {name: latency_pred_ms}]")
    assert needs_profile(predicted)
    constrained = _config(tmp_path, "search.constraints=[{name: latency_pred_ms, max: 5}]")
    assert needs_profile(constrained)
    assert needs_profile(_config(tmp_path, "profile.enabled=true"))
    assert not needs_profile(
        _config(tmp_path, "profile.enabled=false", "search.constraints=[{name: latency_pred_ms, max: 5}]")
    )


# --- a pruning recipe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "nas"),
        ({"model": {"task": "sequence-classification"}}, "nas"),  # NAS over a classifier
        ({"prune": {}}, "nas"),  # a masked-LM job with a stray prune section
        ({"model": {"task": "sequence-classification"}, "prune": {"finetune_steps": 5}}, "prune"),
        ({"model": {"task": "sequence-classification"}, "prune": {}, "pipeline": "nas"}, "nas"),
        ({"pipeline": "prune"}, "prune"),
    ],
)
def test_pipeline_is_inferred_unless_given(raw: dict[str, Any], expected: str) -> None:
    assert validate_config(raw).pipeline == expected


def test_recipes_name_their_pipeline() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert load_config(configs / "prune-sentiment.yaml", budget="quick").pipeline == "prune"
    assert load_config(configs / "elm-mlm.yaml", budget="quick").pipeline == "nas"
    with pytest.raises(ConfigError, match="config field 'pipeline' has bad value 'pruning'"):
        load_config(None, ["pipeline=pruning"])


@pytest.mark.parametrize(
    ("options", "named"), [(["--from", "teacher"], "teacher"), (["--until", "profile"], "profile")]
)
def test_a_stage_of_another_recipe_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(prune_config(tmp_path)))
    capsys.readouterr()
    assert main(["run", str(path), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"elastic-lm run: error: stage {named!r} is not in the prune recipe; its stages: "
        "finetune, train, search, evaluate, export, report"
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written


def _stamps(run: Path) -> dict[str, float]:
    return {s.parent.name: json.loads(s.read_text())["finished_at"] for s in run.glob("*/stage.json")}


def test_run_on_a_pruning_recipe_prunes_exports_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
    raw = prune_config(tmp_path, prune__finetune_steps=10, search__trials=4)
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(raw))  # no 'pipeline' key: inferred from task + prune section
    run = tmp_path / "run"

    assert main(["run", str(path)]) == 0
    out = capsys.readouterr()
    prune_stages = ["finetune", "train", "search", "evaluate", "export", "report"]
    for stage in prune_stages:
        assert f"[{stage}] running" in out.out
        assert any(line.split()[:2] == [stage, "ran"] for line in out.out.splitlines())
    assert not (run / "teacher").exists()  # no NAS stage ran
    assert yaml.safe_load((run / "config.yaml").read_text())["pipeline"] == "prune"

    trials = json.loads((run / "search" / "trials.json").read_text())
    summary = json.loads((run / "search" / "summary.json").read_text())
    assert len(trials) == 4
    assert [o["name"] for o in summary["objectives"]] == ["params_nonembedding", "val_accuracy"]
    index = json.loads((run / "export" / "index.json").read_text())
    folders = sorted(p.name for p in (run / "export").glob("trial-*") if p.is_dir())
    covering = summary["exported"]  # the Pareto set, the full model and gap fillers (prune.coverage)
    assert set(summary["pareto"]) <= set(covering)
    assert len(folders) == len(index) == min(3, len(covering)) >= 1
    assert folders == sorted(item["name"] for item in index)
    tests = json.loads((run / "evaluate" / "test_metrics.json").read_text())
    assert set(tests) == {"unpruned", *folders}
    for item in index:
        assert item["name"].removeprefix("trial-").isdigit()
        assert int(item["name"].removeprefix("trial-")) in covering
        assert 0.0 <= item["metrics"]["test_accuracy"] <= 1.0
        assert item["metrics"]["test_accuracy"] == tests[item["name"]]["test_accuracy"]
        assert (run / item["path"] / "config.json").is_file()
    page = run / "report" / "index.html"
    html = page.read_text()
    assert all(name in html for name in folders)
    assert f"report: {page}" in out.out
    assert f"exported models: {run / 'export'}" in out.out
    assert out.err.count("unpruned model: test accuracy") == 1  # the lines 'elastic-lm prune' prints
    assert "elastic-lm report" not in out.err  # the report is written, not suggested

    stamps = _stamps(run)
    assert main(["run", str(path)]) == 0  # resumed: nothing is redone
    again = capsys.readouterr().out
    assert _stamps(run) == stamps
    for stage in prune_stages:
        assert f"[{stage}] done earlier" in again
        assert any(line.split()[:2] == [stage, "skipped"] for line in again.splitlines())

    # Baselines asked for later: only they run, and the report is rewritten to show them.
    assert main(["run", str(path), "--set", "prune.baselines=true"]) == 0
    third = capsys.readouterr().out
    now = _stamps(run)
    redone = sorted(s for s in now if now[s] != stamps.get(s))
    assert redone == ["baselines", "report"]
    assert "[baselines] running" in third
    points = json.loads((run / "search" / "baselines.json").read_text())
    assert "layer-drop k=1" in {p["name"] for p in points}
    assert "layer-drop k=1" in page.read_text()
