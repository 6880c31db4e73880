"""A search worker in its own process, for the resume and shared-storage tests.

usage: search_worker.py STORAGE LOG N_TRIALS SEED [HANG_AT [RUN_SEED]]
Appends "start KEY" / "end KEY" lines to LOG around each expensive evaluation. With HANG_AT, the
HANG_AT-th evaluation writes LOG.hang and sleeps until the test kills the process. SEED names the
worker (LOG.readySEED); RUN_SEED, when given, is the seed passed to the search instead. Once imported,
the worker writes LOG.readySEED and waits for LOG.go, so that two workers really start together.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from elastic_lm.search import Objective, run_search
from search_dummy import DummySpace, error, size


def main() -> None:
    storage, log = sys.argv[1], Path(sys.argv[2])
    n_trials, seed = int(sys.argv[3]), int(sys.argv[4])
    hang_at = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    run_seed = int(sys.argv[6]) if len(sys.argv) > 6 else seed
    calls = 0

    def logged_error(arch):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        with log.open("a") as f:
            f.write(f"start {arch.key()}\n")
        if calls == hang_at:
            Path(f"{log}.hang").write_text(arch.key())
            time.sleep(120)
        time.sleep(0.01)  # let two workers interleave
        with log.open("a") as f:
            f.write(f"end {arch.key()}\n")
        return error(arch)

    Path(f"{log}.ready{seed}").touch()
    deadline = time.monotonic() + 300  # the others may still be importing on a loaded machine
    while not Path(f"{log}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    run_search(
        DummySpace(),
        [Objective("size", size, cheap=True), Objective("error", logged_error)],
        strategy="random",
        n_trials=n_trials,
        storage=storage,
        seed=run_seed,
        progress=False,
    )


if __name__ == "__main__":
    main()
