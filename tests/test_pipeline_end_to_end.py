"""``elastic-lm run`` on a tiny job: every stage for real, outputs checked; a kill mid-stage resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from elastic_lm.config import load_config
from elastic_lm.pipeline import STAGES, RunDirectory
from elastic_lm.pipeline.run import run_pipeline
from prune_fixtures import sentiment_rows, tiny_bert, write_csv


def _job(tmp_path: Path, *, steps: int = 4) -> Path:
    """A complete tiny job: random 2-layer BERT, a small ELM space, synthetic text and labels."""
    source = tiny_bert(tmp_path / "tiny-bert")
    rows = sentiment_rows(240)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in rows))
    labelled = write_csv(tmp_path / "labelled.csv", rows)
    job = {
        "run_dir": str(tmp_path / "run"),
        "model": {"source": str(source), "task": "masked-lm"},
        "space": {
            "preset": "elm",
            "options": {
                "layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "head_step": 2, "ffn_step": 32,
                "hidden_choices": [16, 32], "ffn_stack": 2,
            },
        },
        "teacher": {"source": str(source), "retrain_steps": 2, "batch_size": 8},
        "data": {"source": str(corpus), "task": "mlm", "max_length": 16},
        "train": {
            "steps": steps, "batch_size": 8, "checkpoint_every": 2, "eval_every": 2, "eval_batches": 1,
            "strategy": "sandwich", "strategy_options": {"n_random": 1, "target": "teacher"},
            "losses": [{"name": "mlm"}, {"name": "logit-kd"}, {"name": "relational"}],
        },
        "search": {"strategy": "random", "trials": 6, "eval_batches": 1, "eval_batch_size": 8},
        "export": {"max_models": 2},
        "evaluate": {"tasks": [{"source": str(labelled), "name": "synthetic"}], "steps": 3, "batch_size": 8,
                     "max_length": 16, "max_examples": 120, "max_models": 2,
                     "embedding": {"retrieval_pairs": 40, "probe_max_examples": 120, "max_length": 16,
                                   "probe_tasks": [{"source": str(labelled), "name": "synthetic"}]}},
    }  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.mark.slow
def test_every_stage_runs_and_leaves_its_output(tmp_path: Path, isolated_cache: Path) -> None:
    config = load_config(_job(tmp_path))
    outcomes = run_pipeline(config, log=lambda _: None)
    assert [o.stage for o in outcomes] == list(STAGES)
    run = Path(config.run_dir)
    assert (run / "config.yaml").is_file()
    assert (run / "train" / "supernet" / "space.json").is_file()
    assert outcomes[2].outputs["skipped"].startswith("no objective")  # profile: nothing needs it
    trials = json.loads((run / "search" / "trials.json").read_text())
    assert len(trials) == 6
    index = json.loads((run / "export" / "index.json").read_text())
    assert len(index) in (1, 2)  # export.max_models=2
    for entry in index:
        assert (run / entry["path"] / "config.json").is_file()
        assert (run / entry["path"] / "README.md").is_file()
    downstream = json.loads((run / "evaluate" / "downstream.json").read_text())
    assert downstream
    embedding = json.loads((run / "evaluate" / "embedding.json").read_text())
    assert [r["name"] for r in embedding["rows"]] == ["teacher (tiny-bert)", *(e["name"] for e in index)]
    page = (run / "report" / "index.html").read_text()
    assert "<h2>Sentence embeddings</h2>" in page
    for entry in index:
        assert entry["name"] in page
    for row in embedding["rows"]:
        assert f"{row['retrieval_mrr']:.3f}" in page
    again = run_pipeline(config, log=lambda _: None)
    assert [o.status for o in again] == ["skipped"] * len(STAGES)


@pytest.mark.slow
def test_killed_mid_training_resumes_without_redoing_finished_stages(
    tmp_path: Path, isolated_cache: Path
) -> None:
    job = _job(tmp_path, steps=150)
    env = {**os.environ, "ELASTIC_LM_CACHE": str(isolated_cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "elastic_lm.cli.main", "run", str(job), "--until", "train"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = tmp_path / "run" / "train" / "checkpoints"
    deadline = time.time() + 600  # a hang guard: the first checkpoint comes late on a loaded machine
    while time.time() < deadline and process.poll() is None and not any(checkpoints.glob("step-*")):
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()

    run = RunDirectory(tmp_path / "run")
    teacher_record = run.record("teacher")
    assert teacher_record is not None
    assert run.record("train") is None  # the killed stage never finished
    config = load_config(job)
    outcomes = run_pipeline(config, until="train", log=lambda _: None)
    assert [(o.stage, o.status) for o in outcomes] == [("teacher", "skipped"), ("train", "ran")]
    assert run.record("teacher").finished_at == teacher_record.finished_at
    assert outcomes[1].outputs["steps"] == 150
    state = json.loads(sorted(checkpoints.glob("step-*"))[-1].joinpath("state.json").read_text())
    assert state["step"] == 150
