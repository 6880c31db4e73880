"""Nothing destroyed, one error path, no silent nonsense (issue 16).

Every failure here is what a user or the machine does: a path that exists, a full or read-only
disk, a file that is truncated, foreign or binary, a config with a duplicate key or an unknown
objective, a learning rate that makes the loss explode. Each must end in one line on stderr and
exit code 2, with every good output byte-identical afterwards.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_lm.cli.faults import describe
from elastic_lm.cli.main import main
from elastic_lm.errors import CheckpointError, DataError
from elastic_lm.io import atomic_directory, atomic_write_text, clean_leftovers
from export_cases import supernet
from space_cases import tiny

ARCH = json.dumps(
    {
        "hidden": 32,
        "layers": [
            {"block": "bert", "heads": 1, "ffn": 2},
            {"block": "bert", "heads": 1, "ffn": 2},
            {"block": "identity"},
        ],
    }
)


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sn") / "supernet"
    supernet("prune-small", "masked-lm").save_pretrained(path)
    (path / "space.json").write_text(json.dumps(tiny("prune-small").to_dict()))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------ nothing destroyed


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_export_never_replaces_an_existing_out_unless_asked(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    out = tmp_path / "mine"
    if kind == "file":
        out.write_bytes(b"my thesis")
    else:
        out.mkdir()
        (out / "notes.txt").write_bytes(b"my notes")
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    err = one_line_error(capsys, ["export", str(supernet_dir), "--arch", ARCH, "--out", str(out)])
    assert f"--out {out} is an existing {kind}" in err
    assert "--overwrite" in err
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before
    argv = ["export", str(supernet_dir), "--arch", ARCH, "--out", str(out), "--overwrite"]
    assert main(argv) == 0
    assert json.loads((out / "export.json").read_text())["architecture"]["hidden"] == 32


def test_outputs_get_normal_modes_and_killed_writers_leftovers_are_cleaned(tmp_path: Path) -> None:
    old_mask = os.umask(0o022)
    try:
        file = atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_directory(tmp_path / "model") as staging:
            (staging / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(file.stat().st_mode) == 0o644  # mkstemp alone gives 0600
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755  # mkdtemp alone gives 0700

    dead = tmp_path / f".model.elm{_dead_pid()}.abcd1234.tmp"  # a writer killed mid-way
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"half")
    alive = tmp_path / f".model.elm{os.getpid()}.efgh5678.tmp"  # a live writer's: untouched
    alive.mkdir()
    user = tmp_path / ".model.123.tmp"  # not ours
    user.write_text("keep")
    atomic_write_text(tmp_path / "b.json", "{}")
    assert not dead.exists()
    assert alive.exists()
    assert user.read_text() == "keep"

    # killed between the two renames of a directory replace: the old copy comes back
    (tmp_path / "model").rename(tmp_path / ".model.elm-old")
    assert clean_leftovers(tmp_path) == []
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"x"


def _dead_pid() -> int:
    pid = 2**22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


class _DiskFull(io.RawIOBase):
    """A file whose writes stop half-way with ENOSPC, as on a full disk."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: Any) -> int:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.real.close()
        super().close()

    def fileno(self) -> int:
        return self.real.fileno()


def _full_disk_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file opened for writing under ``folder`` fails half-way (reads are untouched)."""
    real_open = io.open

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else str(file)
        if any(m in mode for m in "wax") and str(folder) in os.path.abspath(name):
            return _DiskFull(handle) if "b" in mode else io.TextIOWrapper(_DiskFull(handle))
        return handle

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: fake_open(fd, mode, *a, **k))


def test_report_on_a_full_disk_keeps_the_previous_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_report import OBJ_LOSS, OBJ_PARAMS, _synthetic_trials, make_run

    run = make_run(tmp_path / "run", _synthetic_trials(10), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    assert main(["report", str(run), "--open-browser", "no"]) == 0
    capsys.readouterr()
    report = run / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    assert "index.html" in before
    with monkeypatch.context() as patch:
        _full_disk_under(report, patch)
        err = one_line_error(capsys, ["report", str(run), "--open-browser", "no"])
    assert "No space left on device" in err
    assert "free some space" in err
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before  # no .tmp left either


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_faults_while_exporting_are_one_line_and_destroy_nothing(
    supernet_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
) -> None:
    out = tmp_path / "model"
    assert main(["export", str(supernet_dir), "--arch", ARCH, "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code), str(tmp_path / ".staging"))

    monkeypatch.setattr("elastic_lm.io.tempfile.mkdtemp", refuse)
    argv = ["export", str(supernet_dir), "--arch", ARCH, "--out", str(out), "--overwrite"]
    err = one_line_error(capsys, argv)
    assert os.strerror(code) in err
    assert str(tmp_path) in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ------------------------------------------------------------------------------------ one error path


def test_foreign_and_broken_inputs_are_one_line_errors_naming_the_file(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 1\nname: caf\xe9\n")
    err = one_line_error(capsys, ["train", str(latin)])
    assert "latin.yaml" in err
    assert "not UTF-8" in err

    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 1\ntrain:\n  steps: 3\n  steps: 4\n")
    err = one_line_error(capsys, ["train", str(dup)])
    assert "key 'steps' appears twice" in err
    assert "line 4" in err

    err = one_line_error(capsys, ["train", "--set", "search.objectives=[{name: speed}]"])
    assert "search.objectives: name 'speed' is unknown" in err  # before any stage runs

    for name, damage in (("truncated", lambda b: b[: len(b) // 2]), ("garbage", lambda b: os.urandom(4000))):
        broken = tmp_path / name
        broken.mkdir()
        for f in supernet_dir.iterdir():
            (broken / f.name).write_bytes(f.read_bytes())
        weights = broken / "model.safetensors"
        weights.write_bytes(damage(weights.read_bytes()))
        err = one_line_error(capsys, ["export", str(broken), "--arch", ARCH, "--out", str(tmp_path / "o")])
        assert f"{weights}: not a valid safetensors file" in err

    as_file = tmp_path / "run-is-a-file"
    as_file.write_text("not a folder")
    err = one_line_error(capsys, ["train", "--run-dir", str(as_file)])
    assert str(as_file) in err
    assert "is a file" in err
    assert as_file.read_text() == "not a folder"


def test_debug_shows_the_traceback_instead(tmp_path: Path) -> None:
    from elastic_lm.errors import ConfigError

    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        main(["train", str(latin), "--debug"])


def test_truncated_json_and_refused_pickle_name_their_file(tmp_path: Path) -> None:
    from elastic_lm.train.checkpoint import load_checkpoint

    state = tmp_path / "stage.json"
    state.write_text('{"stage": "train", "outp')

    def read_state(path: Path) -> Any:
        return json.loads(path.read_text())

    with pytest.raises(json.JSONDecodeError) as info:
        read_state(state)
    message = describe(info.value)
    assert message is not None
    assert message.startswith(f"{state}: malformed or truncated JSON")

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("this must never run",))

    folder = tmp_path / "ckpt"
    folder.mkdir()
    model = torch.nn.Linear(2, 2)
    from safetensors.torch import save_model

    save_model(model, str(folder / "model.safetensors"))
    (folder / "state.json").write_text(json.dumps({"step": 1}))
    (folder / "strategy.json").write_text("{}")
    (folder / "trainer.pt").write_bytes(pickle.dumps({"optimizer": Payload()}))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(folder, model)
    assert str(refused.value).startswith(f"checkpoint {folder / 'trainer.pt'} is not one elastic-lm wrote")
    # any other refused pickle (not a checkpoint) still gets describe()'s line naming its file
    with pytest.raises(pickle.UnpicklingError) as other:
        torch.load(folder / "trainer.pt", weights_only=True)
    message = describe(other.value)
    assert message is not None
    assert "refused to load it" in message


def test_bad_storage_url_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    from elastic_lm.errors import ConfigError
    from elastic_lm.search import resolve_storage

    with pytest.raises(ConfigError, match=r"study storage 'nosuchdb://x' cannot be opened"):
        resolve_storage("nosuchdb://x")
    with pytest.raises(ConfigError) as info:
        resolve_storage("postgresql://me:hunter2@127.0.0.1:1/db")  # nothing listens on port 1
    assert "hunter2" not in str(info.value)
    assert "postgresql://me:***@127.0.0.1:1/db" in str(info.value)


def test_train_resume_at_the_final_step_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import elastic_lm.pipeline.stages as stages

    folder = str(tmp_path / "train" / "supernet")
    outputs = {"steps": 5, "final_loss": None, "supernet": folder, "validation": {}}
    monkeypatch.setattr(stages, "train_stage", lambda *a, **k: outputs)  # nothing left to train
    assert main(["train", "--run-dir", str(tmp_path), "--resume", "--no-progress"]) == 0
    assert "trained to step 5 (already finished: no step left)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ silent nonsense


def test_a_binary_file_named_txt_is_refused_as_data(tmp_path: Path) -> None:
    from elastic_lm.data.sources import load_text_corpus

    weights = tmp_path / "corpus.txt"
    weights.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match=r"corpus\.txt is not text"):
        load_text_corpus(str(weights))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 au lait.\n\nUne phrase de plus.\n".encode("latin-1"))
    assert "Café" in " ".join(load_text_corpus(str(latin))["text"])  # old text still reads


def test_exploding_loss_stops_keeps_the_good_checkpoint_and_resumes(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from elastic_lm.train.checkpoint import list_checkpoints
    from elastic_lm.train.loop import TrainingDiverged, train_supernet
    from elastic_lm.train.losses import CombinedLoss
    from elastic_lm.train.strategies import make_strategy
    from test_trainer import settings
    from toy_supernet import ToyElastic, ToySpace, toy_data

    def run(lr: float, resume: bool = False) -> Any:
        return train_supernet(
            ToyElastic(),
            make_strategy("standard", ToySpace()),
            CombinedLoss([{"name": "mlm"}]),
            toy_data(8),
            settings=settings(steps=6, checkpoint_every=1, learning_rate=lr, resume=resume),
            run_dir=tmp_path,
        )

    with pytest.raises(TrainingDiverged, match=r"training loss exploded to .* lower train\.learning_rate"):
        run(30.0)
    folder = tmp_path / "train" / "checkpoints"
    good = list_checkpoints(folder)
    assert good, "no checkpoint before the explosion"
    saved = {p.name: load_file(p / "model.safetensors") for p in good}
    assert all(torch.isfinite(v).all() for s in saved.values() for v in s.values())
    result = run(1e-2, resume=True)  # the advice works: same run, lower rate
    assert result.start_step == int(good[-1].name.split("-")[1])
    assert len(result.losses) == 6 - result.start_step
    assert max(result.losses) < 10 * result.losses[0]
    with pytest.raises(CheckpointError):
        run(1e-2)  # a fresh run still refuses to mix with these checkpoints


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_no_half_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import elastic_lm.train.checkpoint as ckpt

    model = torch.nn.Linear(3, 2)
    common = {"model": model, "trainer": {"x": torch.ones(2)}, "strategy": {}, "state": {}}
    first = ckpt.save_checkpoint(tmp_path, 1, **common)
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def full(obj: Any, path: Any) -> None:
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(OSError, match="No space left") as info:
        ckpt.save_checkpoint(tmp_path, 2, **common)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no step 2, no .tmp folder
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    message = describe(info.value)
    assert message is not None
    assert "No space left on device" in message
    assert "trainer.pt" in message


def test_a_config_json_that_is_not_an_object_is_one_line(
    supernet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "sn"
    broken.mkdir()
    for f in supernet_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text("[1, 2]")  # found by benchmarks/robustness.py
    err = one_line_error(capsys, ["export", str(broken), "--arch", ARCH, "--out", str(tmp_path / "o")])
    assert "config.json holds a JSON list, not an object" in err


def test_a_truncated_trainer_pt_is_a_checkpoint_error_naming_it(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    from elastic_lm.train.checkpoint import load_checkpoint

    folder = tmp_path / "ckpt"
    folder.mkdir()
    model = torch.nn.Linear(2, 2)
    save_model(model, str(folder / "model.safetensors"))
    (folder / "state.json").write_text(json.dumps({"step": 1}))
    (folder / "strategy.json").write_text("{}")
    buffer = io.BytesIO()
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}}, buffer)
    (folder / "trainer.pt").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder, model)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {folder / 'trainer.pt'} is truncated")
    assert "remove that checkpoint folder" in message


def test_a_full_disk_under_safetensors_is_not_called_a_corrupt_file() -> None:
    """safetensors wraps a failed write in its own error; the fix is disk space, not the file."""
    from safetensors import SafetensorError

    full = describe(
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    assert full is not None
    assert "No space left on device" in full
    assert "free some space" in full
    assert "corrupt" not in full
    corrupt = describe(SafetensorError("Error while deserializing header: HeaderTooLarge"))
    assert corrupt is not None
    assert "not a valid safetensors file" in corrupt
