"""Atomic file output: a crash or a full disk never leaves a half-written file over a good one.

Everything elastic-lm writes that a later stage reads (configs, JSON results, checkpoints, exported
models, the report) goes through these helpers: write into a temporary sibling, flush, then
``os.replace``. Temporary names carry the writer's process id (``.NAME.elmPID.XXXX.tmp``), so the
next write into the same folder can remove what a killed writer left behind without touching the
temporary files of a live one. Outputs get the usual modes (0644/0755 under umask 022), not the
0600/0700 of ``tempfile``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LEFTOVER = re.compile(r"^\..+\.elm(?P<pid>\d+)\.[^.]+\.tmp$")
_OLD_SUFFIX = ".elm-old"  # the previous copy while a directory is replaced


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(folder: str | Path) -> list[Path]:
    """Remove our temporary files and folders in ``folder`` whose writer process is gone.

    Also finishes an interrupted directory replace: if ``.NAME.elm-old`` exists but ``NAME`` does
    not, the old complete copy is put back. Returns what was removed.
    """
    root = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match and not _pid_alive(int(match["pid"])):
            _remove(entry)
            removed.append(entry)
        elif entry.name.startswith(".") and entry.name.endswith(_OLD_SUFFIX):
            target = root / entry.name[1 : -len(_OLD_SUFFIX)]
            if not target.exists():
                os.replace(entry, target)  # killed between the two renames: keep the old copy
            else:
                _remove(entry)
                removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.elm{os.getpid()}."


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """JSON version of :func:`atomic_write_text` (sorted keys, two-space indent, trailing newline)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only when the block finishes without error.

    Used for outputs made of several files (a checkpoint, an exported model folder): a crash midway
    leaves the previous complete directory in place.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        if target.exists():
            old = target.with_name(f".{target.name}{_OLD_SUFFIX}")
            _remove(old)
            os.replace(target, old)
            os.replace(staging, target)
            _remove(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
