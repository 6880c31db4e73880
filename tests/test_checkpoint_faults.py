"""A damaged checkpoint or a head-less teacher: one clear line, no library chatter (issue 16).

``train --resume`` over a checkpoint that is truncated, corrupt or a foreign pickle must end in a
:class:`CheckpointError` that names the file and says what to do, with nothing else on stderr: no
torch warning about pickle protocols, no transformers load report.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from safetensors.torch import save_model

from elastic_lm.errors import CheckpointError
from elastic_lm.train.checkpoint import load_checkpoint


class Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


def checkpoint(folder: Path) -> torch.nn.Module:
    """A complete checkpoint of a tiny model in ``folder``, as ``save_checkpoint`` lays it out."""
    folder.mkdir()
    model = torch.nn.Linear(2, 2)
    save_model(model, str(folder / "model.safetensors"))
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}}, folder / "trainer.pt")
    (folder / "state.json").write_text(json.dumps({"step": 3, "position": 12}))
    (folder / "strategy.json").write_text(json.dumps({"pool": [1, 2]}))
    return model


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "refused pickle": (
        "trainer.pt",
        lambda f: f.write_bytes(pickle.dumps({"optimizer": Payload()})),
        "is not one elastic-lm wrote: torch refused to unpickle it (Unsupported",
    ),
    "truncated trainer.pt": ("trainer.pt", _cut, "is truncated or corrupt (PytorchStreamReader"),
    "garbage trainer.pt": ("trainer.pt", lambda f: f.write_bytes(b"\x00junk" * 50), "refused to unpickle it"),
    "truncated weights": ("model.safetensors", _cut, "is truncated or corrupt"),
    "truncated state.json": ("state.json", _cut, "is truncated or corrupt"),
    "state.json a list": ("state.json", lambda f: f.write_text("[3]"), "holds a JSON list"),
    "state.json without step": ("state.json", lambda f: f.write_text("{}"), "has no integer 'step'"),
    "truncated strategy.json": ("strategy.json", _cut, "is truncated or corrupt"),
    "missing strategy.json": ("strategy.json", lambda f: f.unlink(), "is missing"),
}


@pytest.mark.parametrize("what", list(DAMAGES))
def test_a_damaged_checkpoint_is_one_line_naming_the_file_without_warnings(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, damage, expected = DAMAGES[what]
    folder = tmp_path / "step-00000003"
    model = checkpoint(folder)
    assert load_checkpoint(folder, model).step == 3  # whole, it loads
    damage(folder / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(folder, model)
    message = str(info.value)
    assert message.startswith(f"checkpoint {folder / name} ")
    assert expected in message
    assert message.endswith("remove that checkpoint folder to resume from an earlier one")
    assert "\n" not in message
    assert len(message) < 400
    assert [str(w.message) for w in caught] == []  # torch's pickle-protocol warning stays inside
    assert "this must never run" not in capsys.readouterr().out


def _headless_bert(tmp_path: Path) -> Path:
    """A bare BERT folder (no MLM head), like MiniLM-L6: converting it to masked-lm draws the head."""
    cfg = transformers.BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=20,
    )
    folder = tmp_path / "bare"
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("verbose", [False, True])
def test_converting_a_headless_checkpoint_prints_no_load_report_unless_verbose(
    verbose: bool,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from transformers.utils import logging as hf_logging

    from elastic_lm.convert import from_hf

    folder = _headless_bert(tmp_path)
    package = logging.getLogger("elastic_lm")
    saved, before = package.level, hf_logging.get_verbosity()
    package.setLevel(logging.DEBUG if verbose else logging.INFO)
    hf_logging.set_verbosity_warning()  # what the CLI leaves it at
    try:
        capfd.readouterr()
        caplog.clear()
        model = from_hf(folder, task="masked-lm", seed=0)
        err = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
        assert hf_logging.get_verbosity() == hf_logging.WARNING  # restored after the load
    finally:
        package.setLevel(saved)
        hf_logging.set_verbosity(before)
    assert model.config.hidden_size == 16
    if verbose:
        assert "LOAD REPORT" in err  # --verbose still shows what transformers says
    else:
        assert "LOAD REPORT" not in err, err
        assert "MISSING" not in err


def test_an_intact_checkpoint_still_round_trips_its_states(tmp_path: Path) -> None:
    folder = tmp_path / "step-00000003"
    model = checkpoint(folder)
    loaded = load_checkpoint(folder, model)
    assert loaded.state == {"step": 3, "position": 12}
    assert loaded.strategy == {"pool": [1, 2]}
    assert torch.equal(loaded.trainer["optimizer"]["lr"], torch.tensor(1.0))
    buffer = io.BytesIO()
    torch.save(loaded.trainer, buffer)
    assert buffer.tell() > 0
