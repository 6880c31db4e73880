"""The run-directory lock: one command writes into a run directory at a time.

Two commands writing into one run directory silently lose each other's results (both write
``stage.json``, both train into the same checkpoints). A command that writes takes
``RUN_DIR/.lock`` (created exclusively, holding the pid, host and command line); a second command is
refused with a one-line error that says who holds it. A lock left by a process that died on this host
is stale and taken over; one held on another host is never guessed at (the error says how to remove
it). The same process may take its own lock again (a recipe that calls another), and under
``torchrun`` only rank 0 locks, since every rank runs the same command on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elastic_lm.errors import UserError

LOCK_NAME = ".lock"
_HELD: dict[Path, int] = {}  # lock files this process holds -> how many times


class RunDirectoryLocked(UserError):  # noqa: N818 (reads as the state it reports)
    """Another live command writes into this run directory."""


def is_main_process() -> bool:
    """False on the non-zero ranks of a ``torchrun`` job (they run the same command as rank 0)."""
    return os.environ.get("RANK", "0") in ("", "0")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """What ``RUN_DIR/.lock`` says (pid, host, command, since), or None when there is no lock."""
    file = Path(run_dir) / LOCK_NAME
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written or foreign: treated as stale below


def _is_stale(holder: dict[str, Any]) -> bool:
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or host is None:
        return True  # unreadable: no live process can be named, so none is protected
    return host == socket.gethostname() and not _pid_alive(pid)


def _describe(holder: dict[str, Any]) -> str:
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')!s}){when}"


def _try_create(file: Path, command: str) -> bool:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
    try:
        fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:  # read-only or full disk, no permission
        raise UserError(
            f"cannot write {file}: {error.strerror}; give a writable run_dir (--run-dir)"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    return True


def acquire(run_dir: str | Path, command: str | None = None, *, create: bool = True) -> Path | None:
    """Take the lock of ``run_dir``; returns the lock file (None: not locked here).

    ``create=False`` (commands that only add to an existing run directory) locks nothing when the
    folder does not exist, so a mistyped path is reported by the command, not created.

    Raises :class:`RunDirectoryLocked` (exit code 2) naming the holder when another live process has it.
    """
    if not is_main_process():
        return None
    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"run_dir {root} is a file; give a folder (--run-dir) or remove the file")
    if not create and not root.is_dir():
        return None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create run_dir {root}: {error.strerror}; give a writable --run-dir"
        ) from None
    file = (root / LOCK_NAME).resolve()
    if file in _HELD:
        _HELD[file] += 1
        return file
    command = command or " ".join(["elastic-lm", *sys.argv[1:]])
    for _ in range(3):  # a stale lock removed by a racing process: try again
        if _try_create(file, command):
            _HELD[file] = 1
            return file
        holder = lock_holder(root)
        if holder is None:
            continue
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            _HELD[file] = 1  # ours, from an earlier call that was not released (e.g. a forked test)
            return file
        if not _is_stale(holder):
            raise RunDirectoryLocked(
                f"run_dir {root} is in use by {_describe(holder)}; wait for it to finish or use another "
                f"run_dir (if that process is gone, remove {file})"
            )
        with contextlib.suppress(FileNotFoundError):
            file.unlink()  # a dead process's lock: take it over
    raise RunDirectoryLocked(f"run_dir {root}: could not take {file}; try again")


def release(file: Path | None) -> None:
    """Give back a lock taken by :func:`acquire` (the file goes when the last holder in this process ends)."""
    if file is None or file not in _HELD:
        return
    _HELD[file] -= 1
    if _HELD[file] == 0:
        del _HELD[file]
        with contextlib.suppress(FileNotFoundError):
            file.unlink()


@contextlib.contextmanager
def locked(run_dir: str | Path, command: str | None = None, *, create: bool = True) -> Iterator[Path | None]:
    """``with locked(run_dir):`` hold the run directory's lock for the block."""
    file = acquire(run_dir, command, create=create)
    try:
        yield file
    finally:
        release(file)


__all__ = [
    "LOCK_NAME",
    "RunDirectoryLocked",
    "acquire",
    "is_main_process",
    "lock_holder",
    "locked",
    "release",
]
