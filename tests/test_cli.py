"""The command line: every command answers --help with an example, and user mistakes exit 2 in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from elastic_lm.cli.main import COMMANDS, main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"elastic-lm {command}" in out
    assert "example:" in out


def test_top_level_help_lists_all_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_config_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  steps: many\n")
    result = subprocess.run(
        [sys.executable, "-m", "elastic_lm.cli.main", "train", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "elastic-lm train: error: config field 'train.steps' has bad value 'many': "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
