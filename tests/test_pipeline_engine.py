"""The engine's guards: resumable work is never destroyed by a changed setting, and one command at a
time writes into a run directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from elastic_lm.cli.main import main
from elastic_lm.config import Config, load_config
from elastic_lm.errors import ConfigError
from elastic_lm.pipeline import STAGES, RunDirectory
from elastic_lm.pipeline.lock import LOCK_NAME, RunDirectoryLocked, lock_holder, locked
from elastic_lm.pipeline.run import run_pipeline
from prune_fixtures import sentiment_rows, tiny_bert


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- fake stages: the engine's rules in milliseconds ------------------------------------------------


def _config(tmp_path: Path, *overrides: str) -> Config:
    return load_config(None, [f"run_dir={tmp_path / 'run'}", *overrides])


def _stages(calls: list[str], *, crash_in_train: bool = False) -> dict[str, Any]:
    """Fake stages; train writes a checkpoint (and can crash after it, as a NaN loss would)."""

    def make(stage: str) -> Any:
        def function(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
            calls.append(stage)
            folder = run_dir.stage_dir(stage)
            folder.mkdir(parents=True, exist_ok=True)
            if stage == "train":
                step = folder / "checkpoints" / "step-00000002"
                existing = (step / "state.json").read_text() if (step / "state.json").is_file() else None
                calls.append(f"found checkpoint: {existing}")
                step.mkdir(parents=True, exist_ok=True)
                (step / "state.json").write_text(json.dumps({"lr": config.train.learning_rate}))
                if crash_in_train:
                    raise FloatingPointError("loss is nan")
            return {"made": stage}

        return function

    return {stage: make(stage) for stage in STAGES}


def test_a_changed_setting_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    calls: list[str] = []
    run_pipeline(_config(tmp_path, "train.steps=10"), stages=_stages(calls), log=None)
    run = tmp_path / "run"
    before = _snapshot(run)
    calls.clear()
    with pytest.raises(ConfigError) as refused:
        run_pipeline(_config(tmp_path, "train.steps=20"), stages=_stages(calls), log=None)
    message = str(refused.value)
    assert "train.steps was 10, now 20" in message
    assert str(run / "train" / "checkpoints") in message
    assert "--from train" in message
    assert calls == []  # no stage ran, not even the teacher before it
    assert _snapshot(run) == before  # config.yaml, records and checkpoints byte-identical
    assert not (run / LOCK_NAME).exists()


def test_after_a_nan_loss_a_lower_learning_rate_resumes_the_same_checkpoint(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(FloatingPointError):
        run_pipeline(_config(tmp_path), stages=_stages(calls, crash_in_train=True), log=None)
    calls.clear()
    outcomes = run_pipeline(_config(tmp_path, "train.learning_rate=1e-5"), stages=_stages(calls), log=None)
    assert [o.status for o in outcomes] == ["skipped"] + ["ran"] * (len(STAGES) - 1)
    assert calls[1] == 'found checkpoint: {"lr": 0.0005}'  # the checkpoint the advice named, intact
    # once training finished, the same change is no longer a resume: it would replace the result
    with pytest.raises(
        ConfigError, match=r"train\.learning_rate was 1e-05, now 0\.001.*after that stage finished"
    ):
        run_pipeline(_config(tmp_path, "train.learning_rate=1e-3"), stages=_stages(calls), log=None)


def test_from_redoes_the_stage_and_replaces_its_checkpoints_on_purpose(tmp_path: Path) -> None:
    calls: list[str] = []
    run_pipeline(_config(tmp_path), stages=_stages(calls), log=None)
    calls.clear()
    config = _config(tmp_path, "train.steps=20")
    run_pipeline(config, start="train", until="train", stages=_stages(calls), log=None)
    assert calls == ["train", "found checkpoint: None"]  # removed because the user asked
    record = json.loads((tmp_path / "run" / "train" / "started.json").read_text())
    assert record["inputs"]["train"]["steps"] == 20


def test_unchanged_settings_resume_and_search_settings_never_touch_training(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(FloatingPointError):
        run_pipeline(_config(tmp_path), stages=_stages(calls, crash_in_train=True), log=None)
    calls.clear()
    run_pipeline(_config(tmp_path, "search.trials=3"), stages=_stages(calls), log=None)
    assert calls[:2] == ["train", 'found checkpoint: {"lr": 0.0005}']


# --- the run-directory lock ---------------------------------------------------------------------------


def test_a_second_command_is_refused_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {
            "pid": holder.pid,
            "host": socket.gethostname(),
            "command": "elastic-lm run a.yaml",
            "since": 0,
        }
        (run / LOCK_NAME).write_text(json.dumps(record))
        capsys.readouterr()
        assert main(["train", "--run-dir", str(run), "--set", "train.steps=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith(f"elastic-lm train: error: run_dir {run} is in use by pid {holder.pid} on ")
        assert "(elastic-lm run a.yaml)" in err[0]
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing else written
        assert lock_holder(run) == record  # and the holder's lock left alone
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "x"}))
    seen: list[dict[str, Any]] = []

    def teacher(config: Config, run_dir: RunDirectory) -> dict[str, Any]:
        seen.append(lock_holder(run_dir.path) or {})
        return {}

    run_pipeline(_config(tmp_path), until="teacher", stages={"teacher": teacher}, log=None)
    assert seen[0]["pid"] == os.getpid()
    assert seen[0]["host"] == socket.gethostname()
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with locked(run, "outer"), locked(run, "inner"):  # a recipe calling another
        assert lock_holder(run)["command"] == "outer"
        code = f"import sys; from elastic_lm.pipeline.lock import locked\nwith locked({str(run)!r}): pass"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert child.returncode == 1
        assert RunDirectoryLocked.__name__ in child.stderr
        assert f"is in use by pid {os.getpid()}" in child.stderr
    assert not (run / LOCK_NAME).exists()


def test_commands_that_add_to_a_run_directory_never_create_one(tmp_path: Path) -> None:
    with locked(tmp_path / "typo", create=False) as file:
        assert file is None
    assert not (tmp_path / "typo").exists()
    with locked(tmp_path, create=False) as file:
        assert file == (tmp_path / LOCK_NAME).resolve()
        assert lock_holder(tmp_path)["pid"] == os.getpid()


def test_a_lock_on_another_host_is_never_taken(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "elastic-lm run"}))
    with pytest.raises(RunDirectoryLocked, match="in use by pid 1 on elsewhere"), locked(run):
        pass


# --- the real training stage: `train --resume` with a changed setting ---------------------------------


def _train_config(tmp_path: Path) -> Path:
    source = tiny_bert(tmp_path / "tiny-bert")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(120)))
    job = {
        "run_dir": str(tmp_path / "run"),
        "device": "cpu",
        "model": {"source": str(source), "task": "masked-lm"},
        "space": {"preset": "elm", "options": {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64,
                                               "head_step": 2, "ffn_step": 32, "hidden_choices": [32]}},
        "teacher": {"source": "none"},
        "data": {"source": str(corpus), "task": "mlm", "max_length": 16},
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "eval_every": 2, "eval_batches": 1,
                  "strategy": "sandwich", "losses": [{"name": "mlm"}]},
    }  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_train_resume_with_a_changed_setting_keeps_every_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = str(_train_config(tmp_path))
    assert main(["train", job, "--no-progress"]) == 0
    train = tmp_path / "run" / "train"
    before = _snapshot(tmp_path / "run")
    checkpoints = _snapshot(train / "checkpoints")
    assert sorted(p.name for p in (train / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    capsys.readouterr()
    assert main(["train", job, "--resume", "--no-progress", "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "train.steps was 2, now 3" in err[0]
    assert _snapshot(tmp_path / "run") == before  # checkpoints, supernet, records: byte-identical
    assert main(["train", job, "--no-progress"]) == 0  # resumes by default: nothing left to do
    assert "trained to step 2 (already finished: no step left)" in capsys.readouterr().err
    assert _snapshot(train / "checkpoints") == checkpoints  # resumed at the end: none rewritten
    assert main(["train", job, "--resume", "--no-progress"]) == 0  # the old flag still works
    assert _snapshot(train / "checkpoints") == checkpoints


def test_train_restart_sets_the_old_training_aside_only_when_confirmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = str(_train_config(tmp_path))
    assert main(["train", job, "--no-progress"]) == 0
    train = tmp_path / "run" / "train"
    before = _snapshot(train)
    capsys.readouterr()
    assert main(["train", job, "--no-progress", "--restart"]) == 2  # not a terminal, no --yes
    assert "--restart would move" in capsys.readouterr().err
    assert _snapshot(train) == before
    assert main(["train", job, "--no-progress", "--restart", "--yes", "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["steps"] == 2
    assert outcome["supernet"] == str(train / "supernet")
    [aside] = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("train.before-restart-")]
    assert _snapshot(aside) == before  # nothing deleted: the old training, byte for byte
    assert sorted(p.name for p in (train / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]


@pytest.mark.parametrize("command", [["report"], ["evaluate"], ["export", "--pareto"]])
def test_commands_that_add_to_a_run_directory_wait_for_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": holder.pid, "host": socket.gethostname(), "command": "elastic-lm run a.yaml"}
        (run / LOCK_NAME).write_text(json.dumps(record))
        capsys.readouterr()
        assert main([command[0], str(run), *command[1:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(
            f"elastic-lm {command[0]}: error: run_dir {run} is in use by pid {holder.pid}"
        )
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command", [["run", "--restart", "--yes"], ["search", "--restart", "--yes"]])
def test_restart_refuses_a_locked_run_directory_and_moves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    job = str(_train_config(tmp_path))
    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "search" / "trials.json").write_text("[]")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": holder.pid, "host": socket.gethostname(), "command": "elastic-lm run a.yaml"}
        (run / LOCK_NAME).write_text(json.dumps(record))
        before = _snapshot(run)
        capsys.readouterr()
        assert main([command[0], job, *command[1:]]) == 2
        assert f"is in use by pid {holder.pid}" in capsys.readouterr().err
        assert _snapshot(run) == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]
    finally:
        holder.kill()
        holder.wait()


def test_run_restart_sets_the_whole_run_directory_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = str(_train_config(tmp_path))
    assert main(["run", job, "--until", "train"]) == 0
    before = _snapshot(tmp_path / "run")
    capsys.readouterr()
    assert main(["run", job, "--until", "train", "--restart"]) == 2  # not a terminal, no --yes
    assert _snapshot(tmp_path / "run") == before
    assert main(["run", job, "--until", "train", "--restart", "--from", "train", "--yes"]) == 2
    assert main(["run", job, "--until", "train", "--restart", "--yes"]) == 0
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.before-restart-")]
    assert _snapshot(aside) == before  # the old run, byte for byte, without a lock file of ours
    assert (tmp_path / "run" / "train" / "supernet").is_dir()


def test_search_restart_refuses_a_shared_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = str(_train_config(tmp_path))
    storage = str(tmp_path / "shared.journal")
    assert main(["search", job, "--restart", "--yes", "--workers-storage", storage]) == 2
    assert "--workers-storage a new study URL" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
