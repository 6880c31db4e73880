"""Progress that works everywhere: a bar on a terminal, periodic log lines anywhere else.

Under ``nohup``, CI or a notebook's log a bar prints nothing useful for minutes, so when stderr is not
a terminal :class:`Progress` logs one line every ``ELASTIC_LM_PROGRESS_SECONDS`` (default 30) through
``logging`` (logger ``elastic_lm.progress``): step, rate and ETA. The rate counts only the steps done
by this process, so a resumed job reports its real speed. :func:`configure_logging` is what the CLI's
``--quiet`` / ``--verbose`` set; third-party INFO chatter (Optuna) stays off unless ``--verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TextIO

LOGGER = logging.getLogger("elastic_lm.progress")
_DEFAULT_EVERY_S = 30.0
_THIRD_PARTY = ("optuna", "transformers", "datasets", "urllib3", "filelock")


def configure_logging(verbosity: int = 0, stream: TextIO | None = None) -> None:
    """``verbosity`` -1 (``--quiet``: warnings only, no progress), 0 (default), 1 (``--verbose``).

    Sets the ``elastic_lm`` loggers, adds one plain handler if the root has none, and keeps Optuna,
    transformers and datasets at WARNING unless verbose.
    """
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    package = logging.getLogger("elastic_lm")
    package.setLevel(level)
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
        package.propagate = False
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbosity > 0 else logging.WARNING)
    quiet_optuna(verbosity > 0)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers at ERROR for one load whose warnings we answer ourselves, unless ``--verbose``.

    Converting a checkpoint that lacks a head (MiniLM has no MLM head) makes transformers print a
    load report and a "checkpoint seems corrupted" warning on every ``train``; elastic-lm draws
    those weights from the seed itself (``convert.hf_in``), so the report only alarms the user.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if logging.getLogger("elastic_lm").getEffectiveLevel() > logging.DEBUG:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (tests and notebooks replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def quiet_optuna(verbose: bool | None = None) -> None:
    """Optuna sets its own logger to INFO when first imported; set it again if it is loaded.

    ``verbose`` defaults to whether the ``elastic_lm`` loggers are at DEBUG (``--verbose``).
    """
    if verbose is None:
        verbose = logging.getLogger("elastic_lm").getEffectiveLevel() <= logging.DEBUG
    optuna = sys.modules.get("optuna")
    if optuna is not None and hasattr(optuna, "logging"):
        optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


def progress_enabled() -> bool:
    """False under ``--quiet`` (the package logs warnings only); on when nobody set a level (the
    Python API: bars on a terminal, lines through the application's logging elsewhere)."""
    package = logging.getLogger("elastic_lm")
    return package.level == logging.NOTSET or package.getEffectiveLevel() <= logging.INFO


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Count steps towards ``total``; draw a bar on a terminal, log a line every ``every_s`` otherwise.

    ``initial`` is where a resumed job starts: it counts towards the total but not the rate.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        unit: str = "step",
        enabled: bool = True,
        every_s: float | None = None,
        stream: Any = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self._start = int(initial)
        self.postfix = ""
        self._clock = clock
        self._t0 = self._last = clock()
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and progress_enabled()
        env = os.environ.get("ELASTIC_LM_PROGRESS_SECONDS")
        self.every_s = every_s if every_s is not None else float(env) if env else _DEFAULT_EVERY_S
        self._bar: Any = None
        if self.enabled and getattr(self._stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, file=self._stream)

    def rate(self) -> float:
        """Steps per second done by this process (0 before the first)."""
        elapsed = self._clock() - self._t0
        return (self.n - self._start) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``train: 40/80 steps (50%), 2.10 steps/s, ETA 0:19 | loss=3.2``"""
        rate = self.rate()
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = _clock((self.total - self.n) / rate) if rate > 0 else "?"
        extra = f" | {self.postfix}" if self.postfix else ""
        counts = f"{self.n}/{self.total} {self.unit}s{share}"
        return f"{self.desc}: {counts}, {rate:.3g} {self.unit}s/s, ETA {eta}{extra}"

    def update(self, n: int = 1) -> None:
        self.set(self.n + n)

    def set(self, n: int) -> None:
        """Move to step ``n`` (absolute)."""
        if self._bar is not None:
            self._bar.update(n - self.n)
        self.n = n
        if self._bar is None and self.enabled and self._clock() - self._last >= self.every_s:
            self._last = self._clock()
            LOGGER.info(self.line())

    def set_postfix(self, text: str = "", **values: object) -> None:
        """Text after the counts, e.g. ``set_postfix(loss="3.21")`` (tqdm's call works as is)."""
        text = " ".join([text] * bool(text) + [f"{k}={v}" for k, v in values.items()])
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n > self._start:
            LOGGER.info(self.line().replace(", ETA 0:00", ", done"))

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
