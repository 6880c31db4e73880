"""The hostile inputs of ``robustness.py``: configs, data, models, run directories, storages, CLI.

Each case is (description, argv); ``main(argv)`` must answer it with exit code 2 and one line.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SETS = [
    "device=cpu",
    "data.source=austen",
    "data.max_examples=64",
    "data.max_length=32",
    "space.options={layers: 2, blocks: [bert]}",
    "train.steps=6",
    "train.batch_size=4",
    "train.checkpoint_every=1",
    "train.eval_every=6",
    "train.eval_batches=1",
    "search.eval_batches=1",
    "search.eval_batch_size=4",
    "search.trials=8",
    "search.strategy=random",
    "evaluate.steps=2",
    "evaluate.max_examples=40",
    "evaluate.max_length=16",
    "evaluate.max_models=2",
    "evaluate.tasks=[{source: sms-spam}]",
    "evaluate.embedding.enabled=false",
]
OPTS = [x for s in SETS for x in ("--set", s)]


# ------------------------------------------------------------------------------------------ inputs


def schema_cases() -> Iterator[tuple[str, list[str]]]:
    """Every leaf field of the config given values it refuses (checked with load_config first)."""
    from pydantic import BaseModel

    from elastic_lm.config import Config, load_config
    from elastic_lm.errors import ConfigError

    def leaves(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from leaves(ann, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    for field in leaves(Config, ""):
        for bad in ("{nested: [1, {x: y}]}", "-7", "not-a-valid-choice"):
            try:
                load_config(None, [*SETS, f"{field}={bad}"])
            except ConfigError:
                yield f"config {field}={bad}", ["train", *OPTS, "--set", f"{field}={bad}"]
            except Exception:
                yield f"config {field}={bad}", ["train", *OPTS, "--set", f"{field}={bad}"]
    yield "config unknown key", ["train", *OPTS, "--set", "train.stepz=3"]
    yield "config unknown section", ["train", *OPTS, "--set", "nonsense.x=3"]
    yield "config unknown objective", ["train", *OPTS, "--set", "search.objectives=[{name: speed}]"]
    yield "config unknown constraint", ["train", *OPTS, "--set", "search.constraints=[{name: x, max: 1}]"]
    yield "bad override", ["train", *OPTS, "--set", "novalue"]
    yield "unknown budget", ["train", "configs/elm-mlm.yaml", "--budget", "galactic"]


def file_cases(tmp: Path, good: Path) -> Iterator[tuple[str, list[str]]]:
    def write(name: str, data: bytes) -> str:
        (tmp / name).write_bytes(data)
        return str(tmp / name)

    configs = {
        "latin-1 config": b"seed: 1\nname: caf\xe9\n",
        "duplicate keys": b"seed: 1\nseed: 2\n",
        "nested duplicate": b"train:\n  steps: 2\n  steps: 3\n",
        "yaml list": b"- a\n- b\n",
        "yaml scalar": b"42\n",
        "bad yaml": b"train: [1, 2\n",
        "tab yaml": b"train:\n\tsteps: 2\n",
        "binary config": bytes(range(256)),
        "utf-16 config": "seed: 1\n".encode("utf-16"),
        "unknown top key": b"wat: 1\n",
        "string for section": b"train: fast\n",
    }
    for what, data in configs.items():
        yield what, ["train", write(what.replace(" ", "_") + ".yaml", data)]
    yield "config is a folder", ["train", str(tmp)]
    yield "missing config", ["train", str(tmp / "nope.yaml")]
    binary = write("weights.txt", os.urandom(5000))
    yield (
        "binary .txt data",
        ["train", *OPTS, "--run-dir", str(tmp / "r-bin"), "--set", f"data.source={binary}"],
    )
    yield "missing data", ["train", *OPTS, "--run-dir", str(tmp / "r-miss"), "--set", "data.source=/nope.txt"]
    (tmp / "emptydir").mkdir()
    yield (
        "empty data folder",
        ["train", *OPTS, "--run-dir", str(tmp / "r-e"), "--set", f"data.source={tmp / 'emptydir'}"],
    )
    yield (
        "unknown asset",
        ["train", *OPTS, "--run-dir", str(tmp / "r-a"), "--set", "data.source=no-such-corpus"],
    )

    sn = good / "train" / "supernet"
    arch = json.dumps(json.loads((good / "search" / "trials.json").read_text())[0]["architecture"])
    damages: dict[str, Callable[[Path], None]] = {
        "truncated safetensors": lambda d: _cut(d / "model.safetensors"),
        "garbage safetensors": lambda d: (d / "model.safetensors").write_bytes(os.urandom(3000)),
        "empty safetensors": lambda d: (d / "model.safetensors").write_bytes(b""),
        "malformed config.json": lambda d: (d / "config.json").write_text('{"hidden_size": '),
        "config.json a list": lambda d: (d / "config.json").write_text("[1, 2]"),
        "missing config.json": lambda d: (d / "config.json").unlink(),
        "missing weights": lambda d: (d / "model.safetensors").unlink(),
        "malformed space.json": lambda d: (d / "space.json").write_text("{"),
        "latin-1 config.json": lambda d: (d / "config.json").write_bytes(b'{"a": "\xe9"}'),
    }
    for what, damage in damages.items():
        copy = tmp / f"sn-{len(list(tmp.iterdir()))}"
        shutil.copytree(sn, copy)
        damage(copy)
        yield f"model: {what}", ["export", str(copy), "--arch", arch, "--out", str(tmp / "o" / what)]
    yield "model is a file", ["export", binary, "--arch", arch, "--out", str(tmp / "o2")]
    yield "arch not json", ["export", str(sn), "--arch", "{nope", "--out", str(tmp / "o3")]
    yield (
        "arch not in space",
        ["export", str(sn), "--arch", '{"hidden": 7, "layers": []}', "--out", str(tmp / "o4")],
    )
    yield "export onto existing file", ["export", str(sn), "--arch", arch, "--out", binary]
    yield "export onto good run", ["export", str(sn), "--arch", arch, "--out", str(good)]

    afile = write("run-is-a-file", b"x")
    for command in ("train", "search", "report", "evaluate"):
        extra = OPTS if command in ("train", "search") else []
        target = ["--run-dir", afile] if command in ("train", "search") else [afile]
        yield f"run dir is a file ({command})", [command, *target, *extra]
    run_damages: dict[str, Callable[[Path], None]] = {
        "truncated trials.json": lambda d: _cut(d / "search" / "trials.json"),
        "truncated summary.json": lambda d: _cut(d / "search" / "summary.json"),
        "truncated stage.json": lambda d: _cut(d / "train" / "stage.json"),
        "truncated export index": lambda d: _cut(d / "export" / "index.json"),
        "truncated checkpoint state": lambda d: [
            _cut(c / "state.json") for c in (d / "train" / "checkpoints").iterdir()
        ],
        "refused pickle": lambda d: [
            _evil(c / "trainer.pt") for c in (d / "train" / "checkpoints").iterdir()
        ],
        "truncated trainer.pt": lambda d: [
            _cut(c / "trainer.pt") for c in (d / "train" / "checkpoints").iterdir()
        ],
        "corrupt study.db": lambda d: (d / "search" / "study.db").write_bytes(os.urandom(4096)),
        "binary metrics.csv": lambda d: (d / "train" / "metrics.csv").write_bytes(os.urandom(2000)),
    }
    for what, damage in run_damages.items():
        copy = tmp / f"run-{len(list(tmp.iterdir()))}"
        shutil.copytree(good, copy)
        damage(copy)
        for command in (
            ["report", str(copy), "--open-browser", "no"],
            ["export", str(copy), "--pareto"],
            ["evaluate", str(copy)],
        ):
            yield f"run: {what} ({command[0]})", command
        yield (
            f"run: {what} (train --resume)",
            ["train", *OPTS, "--run-dir", str(copy), "--resume"],
        )
        yield f"run: {what} (search)", ["search", *OPTS, "--run-dir", str(copy), "--set", "search.trials=9"]
        shutil.rmtree(copy)  # its commands have run (a generator resumes after them): free the space
    for url in (
        "foo://bar",
        "postgresql://u:pw@127.0.0.1:1/x",
        "mysql://a@b/c",
        "sqlite:////nonexistent/x.db",
        str(tmp),
    ):
        yield f"storage {url}", ["search", *OPTS, "--run-dir", str(tmp / "st"), "--workers-storage", url]
    for argv in (
        ["frobnicate"],
        ["train", "--no-such-flag"],
        ["search", "--trials", "many"],
        ["export", str(sn)],
        ["export", str(good), "--pareto", "--out", str(tmp / "x")],
        ["export", str(sn), "--arch", arch],
        ["evaluate", str(tmp / "missing")],
        ["report", str(tmp / "missing")],
        ["report", str(good), "--compare", str(tmp / "missing")],
        ["run", "configs/elm-mlm.yaml", "--from", "nowhere"],
        ["profile", "--set", "profile.repeats=0"],
        ["assets", "no-such-asset"],
        ["train", *OPTS, "--run-dir", str(tmp / "r-steps"), "--set", "train.steps=0"],
    ):
        yield "cli " + " ".join(a for a in argv if len(a) < 30)[:60], argv


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _evil(path: Path) -> None:
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned > /tmp/elastic-lm-pwned",))

    path.write_bytes(pickle.dumps({"optimizer": Payload()}))
