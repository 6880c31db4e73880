"""Progress: periodic log lines off a terminal (step, rate, ETA), honest rates on resume, --quiet."""

from __future__ import annotations

import io
import logging

import pytest

from elastic_lm.progress import Progress, configure_logging


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def _default_verbosity() -> None:
    configure_logging(0)
    yield
    configure_logging(0)


def test_off_a_terminal_progress_logs_step_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="elastic_lm.progress")
    with Progress(100, "train", every_s=10, stream=io.StringIO(), clock=clock) as bar:
        for _ in range(40):
            clock.t += 0.5  # 2 steps/s
            bar.update()
    lines = [r.getMessage() for r in caplog.records if r.name == "elastic_lm.progress"]
    # a line every 10 s (20 steps), then one when closed
    assert lines[0] == "train: 20/100 steps (20%), 2 steps/s, ETA 0:40"
    assert lines[1] == "train: 40/100 steps (40%), 2 steps/s, ETA 0:30"
    assert len(lines) == 3


def test_a_resumed_job_reports_the_rate_of_this_process(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="elastic_lm.progress")
    bar = Progress(1000, "search", initial=900, unit="trial", every_s=5, stream=io.StringIO(), clock=clock)
    clock.t += 10
    bar.update(20)  # 20 trials in 10 s: 2 trials/s, not 92
    assert bar.rate() == pytest.approx(2.0)
    assert caplog.records[-1].getMessage() == "search: 920/1000 trials (92%), 2 trials/s, ETA 0:40"


def test_quiet_silences_progress_and_verbose_lets_optuna_speak(caplog: pytest.LogCaptureFixture) -> None:
    import optuna

    configure_logging(-1)
    clock = FakeClock()
    bar = Progress(10, "train", every_s=0, stream=io.StringIO(), clock=clock)
    clock.t += 1
    bar.update(5)
    bar.close()
    assert not [r for r in caplog.records if r.name == "elastic_lm.progress"]
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    configure_logging(1)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    configure_logging(0)
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING


def test_the_cli_takes_quiet_and_verbose_before_or_after_the_command() -> None:
    from elastic_lm.cli.main import build_parser

    assert build_parser("recipes").parse_args(["recipes", "-q"]).quiet is True
    assert build_parser("recipes").parse_args(["--verbose", "recipes"]).verbose is True
    with pytest.raises(SystemExit):
        build_parser("recipes").parse_args(["recipes", "-q", "-v"])
