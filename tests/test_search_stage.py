"""The search stage end to end on a tiny saved super-network: report files, resume, name errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from elastic_lm.cli.main import main
from elastic_lm.config import load_config
from elastic_lm.errors import ConfigError, DataError
from elastic_lm.export.supernet import load_supernet, save_supernet, supernet_folder
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.pipeline import RunDirectory
from elastic_lm.pipeline.objectives import METRICS, MetricContext, build_objectives
from elastic_lm.pipeline.search_stage import run_search_stage
from elastic_lm.profile.records import MIN_PREDICTED_MS
from elastic_lm.report import write_report
from elastic_lm.report.inputs import load_summary, load_trials
from elastic_lm.space import preset

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "good", "bad", "movie", "film", "was", "is"]


@pytest.fixture
def run_dir(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase, isolated_cache: Path) -> Path:
    """A run directory holding a tiny saved super-network and a tiny text corpus."""
    space = preset("elm", layers=2, hidden=16, heads=4, ffn=16, ffn_step=8, ffn_stack=1)
    config = ElasticConfig.from_space(
        space, vocab_size=len(tiny_tokenizer), task="masked-lm", head_dim=4, max_position_embeddings=16
    )
    torch.manual_seed(0)
    model = build_model(config)
    save_supernet(model, tiny_tokenizer, space, supernet_folder(tmp_path / "run"))
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(8)) + " ." for _ in range(60)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "run"


def config_args(run_dir: Path, trials: int, *extra: str) -> list[str]:
    corpus = run_dir.parent / "corpus.txt"
    return [
        "--run-dir", str(run_dir),
        "--set", f"data.source={corpus}", "--set", "data.max_length=12",
        "--set", "search.eval_batches=2", "--set", "search.eval_batch_size=4",
        "--set", "search.latency_seq_len=8", "--set", "device=cpu",
        "--trials", str(trials), "--strategy", "random", "--no-progress", *extra,
    ]  # fmt: skip


def test_supernet_round_trip(run_dir: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    saved = load_supernet(supernet_folder(run_dir))
    model, tokenizer, space = saved.model, saved.tokenizer(), saved.space
    assert (
        space.to_dict()
        == preset("elm", layers=2, hidden=16, heads=4, ffn=16, ffn_step=8, ffn_stack=1).to_dict()
    )
    assert tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    assert not model.training


def test_search_writes_report_files_and_resumes(run_dir: Path) -> None:
    assert main(["search", *config_args(run_dir, 4)]) == 0
    search = run_dir / "search"
    trials = load_trials(search / "trials.json")
    summary = load_summary(search / "summary.json")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [(o.name, o.direction, o.unit) for o in summary.objectives] == [
        ("val_loss", "minimize", "nats/token"),
        ("params", "minimize", "count"),
    ]
    assert summary.strategy == "random"
    assert all(t.state == "COMPLETE" and t.feasible for t in trials)
    assert all(set(t.metrics) == {"val_loss", "params"} for t in trials)
    assert len(summary.hypervolume) == 4
    assert summary.hypervolume[-1][0] == 4
    assert set(summary.reference_point) == {"val_loss", "params"}
    assert summary.pareto  # the smallest member (trial 0) is always on the front
    assert 0 in summary.pareto
    assert (search / "study.db").is_file()
    assert RunDirectory(run_dir).record("search") is not None
    csv_trials = load_trials(search / "trials.csv")
    assert [t.metrics for t in csv_trials] == [t.metrics for t in trials]
    page = write_report(run_dir)
    assert "summary.json lists Pareto trials" not in page.read_text()  # the search's front agrees

    first = json.loads((search / "trials.json").read_text())
    assert main(["search", *config_args(run_dir, 7)]) == 0
    second = json.loads((search / "trials.json").read_text())
    assert len(second) == 7
    assert second[:4] == first  # earlier trials untouched, the study continued


def test_trial_metrics_equal_direct_evaluation(run_dir: Path) -> None:
    """val_loss is evaluate_subnetwork on the config's fixed batches; params the analytic count."""
    from elastic_lm.architecture import Architecture
    from elastic_lm.evaluate import evaluate_subnetwork
    from elastic_lm.metrics.size import count_params
    from elastic_lm.pipeline.search_stage import eval_batches_from_config

    args = config_args(run_dir, 3)
    assert main(["search", *args]) == 0
    sets = [a for a, flag in zip(args[1:], args, strict=False) if flag == "--set"]
    config = load_config(None, [*sets, f"run_dir={run_dir}"])
    saved = load_supernet(supernet_folder(run_dir))
    model, tokenizer = saved.model, saved.tokenizer()
    batches = eval_batches_from_config(config, tokenizer)
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    for t in trials:
        arch = Architecture.from_dict(t["architecture"])
        assert t["metrics"]["params"] == count_params(model.config, arch)
        expected = evaluate_subnetwork(model, arch, batches, "masked-lm")["loss"]
        assert t["metrics"]["val_loss"] == pytest.approx(expected, rel=1e-6)
    assert trials[0]["metrics"]["params"] < trials[1]["metrics"]["params"]  # smallest, largest


def test_unknown_objective_is_one_line_config_error(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", *config_args(run_dir, 2, "--set", "search.objectives=[{name: val_los}]")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "'val_los' is unknown" in err
    assert "val_loss" in err
    assert "latency_pred_ms" in err
    config = load_config(None, ["search.constraints=[{name: speed, max: 3}]", f"run_dir={run_dir}"])
    with pytest.raises(ConfigError, match=r"search\.constraints: name 'speed' is unknown"):
        run_search_stage(config)


def test_directions_units_and_task_checks(run_dir: Path) -> None:
    saved = load_supernet(supernet_folder(run_dir))
    model, space = saved.model, saved.space
    ctx = MetricContext(model, run_dir=run_dir, latency_seq_len=8)
    config = load_config(None, ["search.objectives=[{name: params}, {name: flops, direction: maximize}]"])
    objectives = build_objectives(config.search.objectives, ctx, space)
    assert [(o.name, o.direction, o.cheap) for o in objectives] == [
        ("params", "minimize", True),
        ("flops", "maximize", True),
    ]
    assert objectives[0].bounds == (objectives[0].fn(space.smallest()), objectives[0].fn(space.largest()))
    assert METRICS["accuracy"].direction == "maximize"
    assert METRICS["f1"].direction == "maximize"
    with pytest.raises(ConfigError, match="'accuracy' needs a classification model"):
        build_objectives(load_config(None, ["search.objectives=[{name: accuracy}]"]).search.objectives, ctx)
    with pytest.raises(DataError, match="elastic-lm profile"):
        build_objectives(
            load_config(None, ["search.objectives=[{name: latency_pred_ms}]"]).search.objectives, ctx
        )


def test_latency_is_measured_on_the_extracted_model(run_dir: Path) -> None:
    saved = load_supernet(supernet_folder(run_dir))
    model, space = saved.model, saved.space
    ctx = MetricContext(model, run_dir=run_dir, latency_seq_len=8, latency_repeats=2)
    config = load_config(None, ["search.objectives=[{name: latency_ms}, {name: peak_memory_mb}]"])
    latency, memory = build_objectives(config.search.objectives, ctx, space)
    assert math.isfinite(latency.fn(space.smallest()))  # a value, not a speed: no bound on it
    assert memory.fn(space.smallest()) > 0
    assert not latency.cheap


def test_predicted_latency_search_rechecks_the_pareto_set(run_dir: Path) -> None:
    from elastic_lm.profile import ProfileSettings, fit_predictors
    from elastic_lm.report.inputs import load_latency_checks

    saved = load_supernet(supernet_folder(run_dir))
    model, space = saved.model, saved.space
    settings = ProfileSettings(seq_len=8, warmup=0, repeats=2)
    fit_predictors(model, space, settings, n_train=6, n_held_out=2, out_dir=run_dir / "profile")
    config = load_config(
        None,
        [
            f"run_dir={run_dir}",
            "device=cpu",
            "search.strategy=random",
            "search.trials=4",
            "search.objectives=[{name: params}, {name: latency_pred_ms}]",
        ],
    )
    result = run_search_stage(config, progress=False)
    assert result.latency_check == run_dir / "profile" / "latency_check.json"
    checks = load_latency_checks(result.latency_check)
    front = json.loads((run_dir / "search" / "summary.json").read_text())["pareto"]
    trials = {t["number"]: t for t in json.loads((run_dir / "search" / "trials.json").read_text())}
    assert len(checks) == len({json.dumps(trials[n]["architecture"]) for n in front})
    assert all(math.isfinite(c.measured_ms) for c in checks)
    assert all(c.predicted_ms >= MIN_PREDICTED_MS for c in checks)  # the predictors' clamp


def test_workers_storage_journal(run_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "shared" / "search.journal"
    args = config_args(run_dir, 3, "--set", "search.objectives=[{name: params}, {name: flops}]")
    assert main(["search", *args, "--workers-storage", str(journal)]) == 0
    assert journal.is_file()
    assert not (run_dir / "search" / "study.db").exists()
    assert len(json.loads((run_dir / "search" / "trials.json").read_text())) == 3


def test_a_finished_study_reads_back_through_optuna_with_real_values(run_dir: Path) -> None:
    """What optuna-dashboard shows: real parameter values, objective names, what the run is."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    assert main(["search", *config_args(run_dir, 4)]) == 0
    storage = f"sqlite:///{run_dir / 'search' / 'study.db'}"
    [name] = optuna.get_all_study_names(storage)
    assert name == "run elm: val_loss vs params"
    study = optuna.load_study(study_name=name, storage=storage)
    assert study.metric_names == ["val_loss", "params"]
    assert study.user_attrs["objectives"] == ["val_loss (minimize)", "params (minimize)"]
    assert study.user_attrs["space_preset"] == "elm"
    assert len(study.user_attrs["config_hash"]) >= 8
    space = load_supernet(supernet_folder(run_dir)).space
    choices = {d.name: d.choices for d in space.dimensions()}
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    for trial, record in zip(study.trials, trials, strict=True):
        arch = json.loads(record["architecture"]) if isinstance(record["architecture"], str) else None
        assert set(trial.params) == set(choices)
        for key, value in trial.params.items():
            assert value in choices[key]  # a real value, not an index
        assert trial.params["hidden"] == (arch or record["architecture"])["hidden"]
        dist = trial.distributions["hidden"]
        assert isinstance(dist, IntDistribution)
        assert list(range(dist.low, dist.high + 1, dist.step)) == list(choices["hidden"])  # (8, 12, 16)
        assert isinstance(trial.distributions["layer0.block"], CategoricalDistribution)
    assert trials[0]["metrics"]["params"] == study.trials[0].values[1]


def test_search_json_summary_matches_the_written_files(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", *config_args(run_dir, 3), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "search" / "summary.json").read_text())
    assert out["trials"] == 3
    assert out["pareto"] == summary["pareto"]
    assert out["hypervolume"] == pytest.approx(summary["hypervolume"][-1][1])
    assert out["search_dir"] == str(run_dir / "search")


def test_workers_from_their_own_run_directories_meet_in_one_shared_study(tmp_path: Path) -> None:
    from elastic_lm.config import Config
    from elastic_lm.pipeline.search_stage import study_name

    store = str(tmp_path / "shared.journal")

    def name(**changes: object) -> str:
        return study_name(Config.model_validate({"run_dir": "runs/w-0", **changes}), store, shared=True)

    first = name()
    assert name(run_dir="elsewhere/w-3") == first  # another worker's folder: the same study
    assert name(search={"trials": 500}) == first  # a longer search continues it
    assert name(seed=1) != first  # another super-network never joins it
    assert name(train={"steps": 7}) != first
    local = study_name(Config.model_validate({"run_dir": "runs/w-0"}), str(tmp_path / "s.db"))
    assert local.startswith("w-0 ")  # the run's own storage keeps naming the run


def test_enqueued_seeds_leave_the_search_seed_to_the_config(tmp_path: Path) -> None:
    """The decoder recipe enqueues its seeds before searching. Counted as existing trials, they
    mixed the process id into the seed, so one config searched differently on every run."""
    import optuna

    from elastic_lm.pipeline.search_stage import _existing_trials, worker_seed

    store = str(tmp_path / "study.db")
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{store}")
    assert _existing_trials(store, "s") == 0
    for _ in range(3):
        study.enqueue_trial({})
    assert _existing_trials(store, "s") == 0
    assert worker_seed(7, _existing_trials(store, "s")) == 7
    study.ask()  # a started trial: another run joins or resumes, and gets a fresh seed
    assert _existing_trials(store, "s") == 1


def test_the_search_first_spreads_members_over_size(run_dir: Path) -> None:
    """After the smallest, largest and middle members, the search evaluates the uniform members of
    ``search.uniform_shares`` and ``search.front_bins`` members spread over non-embedding size
    (prune/coverage.py); 0 turns the bins off."""
    from elastic_lm.architecture import Architecture
    from elastic_lm.metrics.size import count_params
    from elastic_lm.prune.coverage import size_design, uniform_design

    saved = load_supernet(supernet_folder(run_dir))

    def size(arch: Architecture) -> float:
        return float(count_params(saved.model.config, arch, include_embeddings=False))

    design = size_design(saved.space, size, 3, 12, seed=0)
    assert len(design) == 3
    uniform = uniform_design(saved.space, size, [0.75])
    assert len(uniform) == 1  # search.uniform_shares: the hand-made 75 % model comes first too
    args = ["--set", "search.front_bins=3", "--set", "search.uniform_shares=[0.75]"]
    assert main(["search", *config_args(run_dir, 12, *args)]) == 0
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    early = [Architecture.from_dict(t["architecture"]).key() for t in trials[:7]]
    assert all(a.key() in early for a in design + uniform)
    assert size_design(saved.space, size, 0, 12, seed=0) == []
    assert size_design(saved.space, size, 8, 6, seed=0) == []  # no room: at most half the trials


def test_a_changed_measurement_starts_a_new_study_beside_the_old(run_dir: Path) -> None:
    """A study whose trials were measured under other settings (here the initial design and the
    evaluation batches) is never continued: its trials would be stale. A longer search continues."""
    import optuna

    from elastic_lm.pipeline.search_stage import _storage

    store = str(run_dir / "search" / "study.db")
    assert main(["search", *config_args(run_dir, 4)]) == 0
    first = json.loads((run_dir / "search" / "trials.json").read_text())
    assert main(["search", *config_args(run_dir, 4, "--set", "search.eval_batches=1")]) == 0
    other = json.loads((run_dir / "search" / "trials.json").read_text())
    names = optuna.get_all_study_names(_storage(store))
    assert len(names) == 2  # the old study is kept beside the new one
    assert len(other) == 4
    assert other != first  # four fresh trials, measured on one batch
    assert main(["search", *config_args(run_dir, 6, "--set", "search.eval_batches=1")]) == 0
    longer = json.loads((run_dir / "search" / "trials.json").read_text())
    assert len(longer) == 6
    assert longer[:4] == other  # the same settings continue the new study
    assert main(["search", *config_args(run_dir, 4, "--set", "search.front_bins=2")]) == 0
    assert len(optuna.get_all_study_names(_storage(store))) == 3
    assert main(["search", *config_args(run_dir, 4)]) == 0  # back to the first settings: its study
    assert json.loads((run_dir / "search" / "trials.json").read_text()) == first
    assert len(optuna.get_all_study_names(_storage(store))) == 3
