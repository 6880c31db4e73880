"""A hostile user and a hostile machine, through the CLI (issue 16); prints JSON.

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/robustness.py [--kills 20] [--out FILE]``
(about 30 minutes on 2 cores). PostgreSQL workers run on ``ELASTIC_LM_TEST_POSTGRES`` when it names
a server, else on a throw-away one from ``.ci/postgres.sh`` (skipped, and said so, when none starts).

1. A good run directory is made with the CLI (train, search, export --pareto, evaluate, report;
   tiny MiniLM).
2. ``bad_inputs``: configs (every schema field given a value it refuses, broken files), data,
   models, run directories, storages and CLI arguments, each run through ``main()``. A clear error
   is exit code 2 with one line on stderr and no traceback; the good run directory must be
   byte-identical after every one (``destructive`` counts those that changed it).
3. ``disk_faults``: every stage (train, search, export, evaluate, report) on a copy, with writes under it
   failing with ENOSPC or EROFS (``io.open``/``os.open``/``os.mkdir`` patched; Rust and SQLite
   writes are not covered). A clear error, and no byte of the copy's earlier outputs changed.
4. ``kills``: SIGKILL at a random moment of train, search, export, evaluate and report
   (subprocesses), then the same command again (train with ``--resume``). Train, export, evaluate
   and report must then equal an uninterrupted run
   (``resumed_identical``); search must hold its full budget (``lost``) with no architecture
   evaluated twice (``duplicated``). A command that outlives its timeout is a ``hang``.
5. ``workers``: 4 CLI ``search`` workers on one journal file (and 4 on PostgreSQL), started
   together on a new study: duplicate evaluations across them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elastic_lm.cli.main import main
from robustness_cases import OPTS, file_cases, schema_cases

TIMEOUT_S = 300
ROOT = Path(__file__).resolve().parents[1]


def _start_postgres() -> tuple[str | None, Path | None]:
    """A throw-away server from ``.ci/postgres.sh`` (its URL and folder), or (None, None)."""
    folder = Path(tempfile.mkdtemp(prefix="elastic-lm-pg-"))
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "postgres.sh"), "start", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    url = done.stdout.strip()
    if done.returncode != 0 or not url:
        shutil.rmtree(folder, ignore_errors=True)
        return None, None
    return url, folder


def cli(argv: list[str]) -> tuple[int, str, bool]:
    """(exit code, stderr, whether a traceback escaped) of one in-process CLI call."""
    err = io.StringIO()
    tb = False
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exit_:  # argparse
            rc = int(exit_.code or 0)
        except BaseException:
            traceback.print_exc()
            rc, tb = 1, True
    text = err.getvalue()
    return rc, text, tb or "Traceback (most recent call last)" in text


def copy_run(good: Path, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the good run without its training checkpoints (about 60 % of its bytes, read only
    by ``train --resume``) and without the stage folders in ``drop``: 20 kills and 8 workers of full
    copies filled the disk under the worker pools of the first full run."""

    def skipped(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == good
        return {n for n in names if n == "checkpoints" or (top and n in drop)}

    shutil.copytree(good, dest, ignore=skipped)
    return dest


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "tensorboard" not in p.parts
    }


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, kind: str, what: str, detail: str) -> None:
        self.add(kind)
        if len(self.failures) < 40:
            self.failures.append(
                f"{kind}: {what}: {detail.strip().splitlines()[-1][:200] if detail.strip() else ''}"
            )

    def judge(self, what: str, rc: int, err: str, tb: bool) -> None:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        if tb:
            self.fail("tracebacks", what, err)
        elif rc == 0:
            self.add("accepted")  # not an error after all (e.g. a file the command does not read)
        elif rc == 2 and (len(lines) == 1 or (lines and lines[0].startswith("usage:"))):
            self.add("clear_errors")
        else:
            self.fail("unclear", what, f"rc={rc} {err}")


# ------------------------------------------------------------------------------------ disk faults


@contextlib.contextmanager
def failing_writes(root: Path, code: int) -> Iterator[None]:
    """Writes (and new folders) under ``root`` fail with ``code``; reads work."""
    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir
    prefix = str(root.resolve())

    def under(path: Any) -> bool:
        return not isinstance(path, int) and os.path.abspath(os.fspath(path)).startswith(prefix)

    def fake_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if under(file) and any(m in mode for m in "wax+"):
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *a, **k)

    def fake_os_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_os_open(path, flags, *a, **k)

    def fake_mkdir(path: Any, *a: Any, **k: Any) -> None:
        if under(path):
            raise OSError(code, os.strerror(code), str(path))
        real_mkdir(path, *a, **k)

    import builtins

    saved = (builtins.open, io.open, os.open, os.mkdir)
    builtins.open = io.open = fake_open  # type: ignore[assignment]
    os.open, os.mkdir = fake_os_open, fake_mkdir  # type: ignore[assignment]
    try:
        yield
    finally:
        builtins.open, io.open, os.open, os.mkdir = saved  # type: ignore[assignment]


def disk_faults(tmp: Path, good: Path, tally: Tally) -> None:
    for code in (errno.ENOSPC, errno.EROFS):
        for stage in ("train", "search", "export", "evaluate", "report"):
            copy = tmp / f"fault-{stage}-{code}"
            if stage == "train":
                copy.mkdir()
                argv = ["train", *OPTS, "--run-dir", str(copy), "--no-progress"]
            else:
                copy_run(good, copy)
                argv = {
                    "search": [
                        "search",
                        *OPTS,
                        "--run-dir",
                        str(copy),
                        "--set",
                        "search.trials=9",
                        "--no-progress",
                    ],
                    "export": ["export", str(copy), "--pareto"],
                    "evaluate": ["evaluate", str(copy)],
                    "report": ["report", str(copy), "--open-browser", "no"],
                }[stage]
            before = snapshot(copy)
            with failing_writes(copy, code):
                rc, err, tb = cli(argv)
            tally.add("disk_faults_tried")
            tally.judge(f"{errno.errorcode[code]} at {stage}", rc, err, tb)
            after = snapshot(copy)
            # the study database may gain trials (progress, not damage); every other file must stay
            if any(after.get(k) != v for k, v in before.items() if not k.endswith("study.db")):
                tally.fail("destructive", f"{errno.errorcode[code]} at {stage}", "outputs changed")
            shutil.rmtree(copy)  # copies of the good run fill a disk otherwise


# ------------------------------------------------------------------------------------------ kills


def subprocess_cli(argv: list[str], kill_after: float | None = None) -> tuple[int, bool]:
    """Run the CLI in a process; SIGKILL it after ``kill_after`` s. Returns (rc, hung)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "elastic_lm.cli.main", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if kill_after is not None:
            try:
                return proc.wait(timeout=kill_after), False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                return proc.wait(), False
        return proc.wait(timeout=TIMEOUT_S), False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9, True


def _evaluated(run: Path) -> str:
    """The evaluation's results with the run's own path taken out (copies live in other folders)."""
    return (run / "evaluate" / "downstream.json").read_text().replace(str(run), "RUN")


def kills(tmp: Path, good: Path, n: int, rng: random.Random, tally: Tally) -> None:
    reference = {
        "train": {
            k: v for k, v in snapshot(good / "train" / "supernet").items() if k.endswith(".safetensors")
        },
        "export": {k: v for k, v in snapshot(good / "export").items() if k.endswith(".safetensors")},
        "report": {k: v for k, v in snapshot(good / "report").items() if not k.endswith(".html")},
    }
    evaluated = _evaluated(good)
    stages = ["train", "search", "export", "evaluate", "report"]
    for i in range(n):
        stage = stages[i % len(stages)]
        copy = tmp / f"kill-{i}"
        if stage == "train":
            copy.mkdir()
            argv, again = ["train", *OPTS, "--run-dir", str(copy), "--no-progress"], ["--resume"]
            delay = rng.uniform(3, 12)
        else:
            later = ("export", "evaluate") if stage == "search" else ()
            copy_run(good, copy, drop=(stage, *later))
            argv = {
                "search": ["search", *OPTS, "--run-dir", str(copy), "--no-progress"],
                "export": ["export", str(copy), "--pareto"],
                "evaluate": ["evaluate", str(copy)],
                "report": ["report", str(copy), "--open-browser", "no"],
            }[stage]
            again, delay = [], rng.uniform(2, 10 if stage != "report" else 4)
        try:
            _kill_and_resume(copy, stage, argv, again, delay, reference, evaluated, tally)
        finally:
            shutil.rmtree(copy, ignore_errors=True)  # whatever happened: the next kill needs the space


def _kill_and_resume(
    copy: Path,
    stage: str,
    argv: list[str],
    again: list[str],
    delay: float,
    reference: dict[str, dict[str, str]],
    evaluated: str,
    tally: Tally,
) -> None:
    subprocess_cli(argv, kill_after=delay)
    tally.add("kills")
    rc, hung = subprocess_cli(argv + again)
    if hung:
        tally.fail("hangs", f"{stage} after kill", "")
        return
    if rc != 0:
        tally.fail("lost", f"{stage} resume after kill at {delay:.1f}s", f"rc={rc}")
        return
    if stage == "search":
        trials = json.loads((copy / "search" / "trials.json").read_text())
        keys = [json.dumps(t["architecture"], sort_keys=True) for t in trials if not t.get("cached_from")]
        tally.add("lost", max(0, 8 - len(trials)))
        tally.add("duplicated", len(keys) - len(set(keys)))
        return
    if stage == "evaluate":
        same = _evaluated(copy) == evaluated
    else:
        got = snapshot(copy / ("train/supernet" if stage == "train" else stage))
        same = {k: v for k, v in got.items() if k in reference[stage]} == reference[stage]
    if same:
        tally.add("resumed_identical")
    else:
        tally.fail("resumed_different", f"{stage} killed at {delay:.1f}s", "")


# ---------------------------------------------------------------------------------------- workers


def workers(tmp: Path, good: Path, storage: str, label: str) -> dict[str, Any] | str:
    """:func:`_workers`, or the error that stopped it (the rest of the JSON still counts)."""
    try:
        return _workers(tmp, good, storage, label)
    except Exception as err:  # reported in the JSON, not hidden
        return f"failed: {type(err).__name__}: {err}"[:400]


def _workers(tmp: Path, good: Path, storage: str, label: str) -> dict[str, Any]:
    """4 CLI search workers, each in its own run directory, on one new study; duplicate evaluations."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = []
    for w in range(4):
        run = tmp / f"w-{label}-{w}"
        copy_run(good, run, drop=("search", "export", "evaluate", "report"))
        argv = ["search", *OPTS, "--run-dir", str(run), "--set", "search.trials=16", "--no-progress"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "elastic_lm.cli.main", *argv, "--workers-storage", storage],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    codes, hung = [], 0
    for p in procs:
        try:
            codes.append(p.wait(timeout=TIMEOUT_S))
        except subprocess.TimeoutExpired:
            p.kill()
            hung += 1
    import optuna

    from elastic_lm.search.study import resolve_storage

    # the study's name comes from the run directory (pipeline/search_stage.study_name); workers that
    # start together may each create their own: count the studies and look at every trial
    names = optuna.get_all_study_names(resolve_storage(storage))
    done = [
        t
        for name in names
        for t in optuna.load_study(study_name=name, storage=resolve_storage(storage)).get_trials()
        if t.state.is_finished() and "arch_key" in t.user_attrs
    ]
    evaluated = [t.user_attrs["arch_key"] for t in done if "cached_from" not in t.user_attrs]
    return {
        "workers": 4,
        "studies": len(names),
        "exit_codes": codes,
        "hangs": hung,
        "finished_trials": sum(t.state.name in ("COMPLETE", "PRUNED") for t in done),
        "duplicates": len(evaluated) - len(set(evaluated)),
        "owners": len({t.user_attrs.get("worker") for t in done}),
    }


# ------------------------------------------------------------------------------------------- main


def run(kill_count: int, seed: int, workers_only: bool = False) -> dict[str, Any]:
    started = time.time()
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="elastic-lm-robustness-"))
    good = tmp / "good"
    tally = Tally()
    for argv in (
        ["train", *OPTS, "--run-dir", str(good), "--no-progress"],
        ["search", *OPTS, "--run-dir", str(good), "--no-progress"],
        ["export", str(good), "--pareto"],
        ["evaluate", str(good)],
        ["report", str(good), "--open-browser", "no"],
    ):
        rc, err, _ = cli(argv)
        if rc != 0:
            raise SystemExit(f"could not build the good run ({argv[0]}): {err[-2000:]}")
    reference = snapshot(good)
    cases = tmp / "cases"
    cases.mkdir()
    all_cases = [] if workers_only else [*schema_cases(), *file_cases(cases, good)]
    for what, argv in all_cases:
        rc, err, tb = cli(argv)
        tally.add("bad_inputs_tried")
        tally.judge(what, rc, err, tb)
        if snapshot(good) != reference:
            tally.fail("destructive", what, "the good run directory changed")
            shutil.rmtree(good)
            raise SystemExit(f"{what} changed the good run directory; stopping")
    pwned = Path("/tmp/elastic-lm-pwned").exists()
    shutil.rmtree(cases)  # the damaged copies: a full disk would fail the later parts
    cases.mkdir()
    if not workers_only:
        disk_faults(tmp / "cases", good, tally)
        kills(tmp / "cases", good, kill_count, rng, tally)
    result: dict[str, Any] = {
        "bad_inputs_tried": tally.counts.get("bad_inputs_tried", 0),
        "disk_faults_tried": tally.counts.get("disk_faults_tried", 0),
        "clear_errors": tally.counts.get("clear_errors", 0),
        "unclear_errors": tally.counts.get("unclear", 0),
        "accepted": tally.counts.get("accepted", 0),
        "tracebacks": tally.counts.get("tracebacks", 0),
        "destructive": tally.counts.get("destructive", 0),
        "pickle_executed": pwned,
        "kills": tally.counts.get("kills", 0),
        "resumed_identical": tally.counts.get("resumed_identical", 0),
        "resumed_different": tally.counts.get("resumed_different", 0),
        "lost": tally.counts.get("lost", 0),
        "duplicated": tally.counts.get("duplicated", 0),
        "hangs": tally.counts.get("hangs", 0),
        "workers": {"journal": workers(tmp / "cases", good, str(tmp / "shared.log"), "journal")},
        "failures": tally.failures,
    }
    server, pg_dir = os.environ.get("ELASTIC_LM_TEST_POSTGRES"), None
    if not server:
        server, pg_dir = _start_postgres()
    if server:
        import psycopg

        name = f"elm_bench_{os.getpid()}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        result["workers"]["postgres"] = workers(
            tmp / "cases", good, server.rsplit("/", 1)[0] + f"/{name}", "pg"
        )
    else:
        result["workers"]["postgres"] = "skipped: no server (.ci/postgres.sh could not start one)"
    if pg_dir is not None:
        subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop", str(pg_dir)], check=False)
    result["seconds"] = round(time.time() - started)
    shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers-only", action="store_true", help="only the good run and the workers")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    report = run(args.kills, args.seed, args.workers_only)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
