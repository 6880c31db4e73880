"""Rooms a newcomer can hold in their head: no module in ``src/`` over 450 lines.

Split a module that grows past it by reason to change (see docs/architecture.md), not by cutting it
in half.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LIMIT = 450


def long_modules(root: Path, limit: int = LIMIT) -> dict[str, int]:
    """Modules under ``root`` longer than ``limit`` lines, with their length."""
    out = {}
    for file in sorted(root.rglob("*.py")):
        n = len(file.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out[str(file.relative_to(root))] = n
    return out


def test_the_check_counts_lines(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "small.py").write_text("x = 1\n" * 450)
    (tmp_path / "pkg" / "large.py").write_text("x = 1\n" * 451)
    assert long_modules(tmp_path) == {"pkg/large.py": 451}


def test_no_module_in_src_is_over_450_lines() -> None:
    found = long_modules(SRC)
    if found:
        pytest.fail("split by reason to change: " + ", ".join(f"{k} ({v} lines)" for k, v in found.items()))
