"""Environment faults and foreign files as one-line errors: what went wrong, where, and the fix.

A user error we raise ourselves is a :class:`~elastic_lm.errors.UserError`. This module covers
what the machine or a file does to us: a full or read-only disk, a path that is a file, a file
that is truncated, not UTF-8, not JSON, not safetensors, or a pickle we refuse to run. The CLI
prints :func:`describe`'s line and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
from pathlib import Path
from types import TracebackType

# errno -> the fix we suggest
_FIXES = {
    errno.ENOSPC: "free some space, or write to another disk (--run-dir / --out)",
    errno.EDQUOT: "free some space within your quota, or write to another disk (--run-dir / --out)",
    errno.EROFS: "the file system is read-only; choose a writable --run-dir / --out",
    errno.EACCES: "you may not write or read there; fix its permissions or choose another path",
    errno.EPERM: "you may not write or read there; fix its permissions or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path or move the file",
    errno.EISDIR: "it is a folder, not a file; pass the file's path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "it exists already; choose a new path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or close other programs",
}


def describe(error: BaseException) -> str | None:
    """The one-line message for a known fault, or None for anything else (a bug: traceback)."""
    if isinstance(error, OSError) and error.errno in _FIXES:
        where = error.filename or _file_in(error.__traceback__)
        return _os_fault(error.errno, where, error.strerror)
    file = _file_in(error.__traceback__)
    at = f"{file}: " if file else ""
    if isinstance(error, UnicodeDecodeError):
        return f"{at}not UTF-8 text (byte at offset {error.start}); save it as UTF-8"
    if isinstance(error, json.JSONDecodeError):
        return (
            f"{at}malformed or truncated JSON ({error.msg} at line {error.lineno} column "
            f"{error.colno}); restore the file, or re-run the command that wrote it"
        )
    if isinstance(error, pickle.UnpicklingError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unpickling failed"
        return (
            f"{at}refused to load it ({first[:160]}); elastic-lm only loads plain tensors "
            "(torch.load weights_only=True): use a file elastic-lm wrote"
        )
    if type(error).__name__ == "SafetensorError" or "safetensors" in type(error).__module__:
        code = _os_error_code(str(error))
        if code in _FIXES:  # writing failed (full disk, read-only): the file is not to blame
            return _os_fault(code, file)
        return (
            f"{at}not a valid safetensors file ({str(error)[:160]}); it is truncated or corrupt: "
            "restore it or save the model again"
        )
    return None


def _os_fault(code: int, where: object, what: str | None = None) -> str:
    """What the system said, where, and the fix for that errno."""
    return f"{what or os.strerror(code)}{f': {where}' if where else ''}; {_FIXES[code]}"


def _os_error_code(message: str) -> int | None:
    """The errno a Rust library quotes as ``(os error N)`` (safetensors writing to a full disk)."""
    found = re.search(r"\(os error (\d+)\)", message)
    return int(found.group(1)) if found else None


def _file_in(tb: TracebackType | None) -> str | None:
    """The file being read or written where the error happened: the innermost path in scope.

    Library errors (json, safetensors, pickle) do not say which file they were reading; the
    frames that called them hold it in a local variable.
    """
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        found = [v for v in frame.f_locals.values() if isinstance(v, str | os.PathLike)]
        for value in found:
            try:
                path = Path(value)
                if len(str(value)) < 4096 and path.is_file():
                    return str(path)
            except (OSError, ValueError):
                continue
    return None
