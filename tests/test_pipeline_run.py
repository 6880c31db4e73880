"""``elastic-lm run`` orchestration: stage order, skipping finished stages, --from / --until, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from elastic_lm.config import Config, load_config
from elastic_lm.pipeline import STAGES, RunDirectory
from elastic_lm.pipeline.run import run_pipeline


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
    assert crashing.calls == ["teacher", "train", "search"]
    again = Recorder()
    outcomes = run_pipeline(_config(tmp_path), stages=again.stages(), log=lambda _: None)
    assert again.calls == ["search", "export", "evaluate", "report"]
    assert [o.status for o in outcomes[:2]] == ["skipped", "skipped"]


def test_changed_setting_reruns_its_stage_and_everything_after(tmp_path: Path) -> None:
    run_pipeline(_config(tmp_path), stages=Recorder().stages(), log=lambda _: None)
    recorder = Recorder()
    run_pipeline(_config(tmp_path, "search.trials=7"), stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["search", "export", "evaluate", "report"]


def test_from_and_until(tmp_path: Path) -> None:
    recorder = Recorder()
    run_pipeline(_config(tmp_path), until="train", stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["teacher", "train"]
    recorder = Recorder()
    run_pipeline(_config(tmp_path), start="train", stages=recorder.stages(), log=lambda _: None)
    assert recorder.calls == ["train", "search", "export", "evaluate", "report"]
