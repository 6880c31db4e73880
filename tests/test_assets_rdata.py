"""The R lazy-load reader, on a hand-built database and on the real Austen novels."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import pytest

from elastic_lm.assets import austen_novels, get_asset
from elastic_lm.assets.corpora import AUSTEN_NOVELS, austen_paragraphs
from elastic_lm.assets.rdata import read_lazyload, unserialize
from elastic_lm.errors import DataError

# Minimal XDR writer for the test data (the format R's serialize(version = 2) produces).
_STR, _VEC, _INT, _CHAR, _LIST, _SYM, _NIL = 16, 19, 13, 9, 2, 1, 254


def _i(n: int) -> bytes:
    return struct.pack(">i", n)


def _char(s: str | None) -> bytes:
    if s is None:
        return _i(_CHAR) + _i(-1)
    raw = s.encode()
    return _i(_CHAR | (1 << 15)) + _i(len(raw)) + raw  # 1<<15: UTF-8 flag in levels


def _strsxp(values: list[str | None]) -> bytes:
    return _i(_STR) + _i(len(values)) + b"".join(_char(v) for v in values)


def _intsxp(values: list[int]) -> bytes:
    return _i(_INT) + _i(len(values)) + b"".join(_i(v) for v in values)


def _named_list(items: dict[str, bytes]) -> bytes:
    body = _i(_VEC | (1 << 9)) + _i(len(items)) + b"".join(items.values())
    names = _strsxp(list(items))
    attr = _i(_LIST | (1 << 10)) + _i(_SYM) + _char("names") + names + _i(_NIL)
    return body + attr


def _serialise(payload: bytes) -> bytes:
    return b"X\n" + _i(2) + _i(0x040201) + _i(0x020300) + payload


def _record(obj: bytes) -> bytes:
    data = _serialise(obj)
    return struct.pack(">I", len(data)) + zlib.compress(data)


def test_unserialise_strings_with_na() -> None:
    assert unserialize(_serialise(_strsxp(["a", None, "ß"]))) == ["a", None, "ß"]


def test_lazyload_roundtrip(tmp_path: Path) -> None:
    a, b = _record(_strsxp(["one", "two"])), _record(_strsxp(["three"]))
    (tmp_path / "Rdata.rdb").write_bytes(a + b)
    index = _named_list(
        {
            "variables": _named_list({"x": _intsxp([0, len(a)]), "y": _intsxp([len(a), len(b)])}),
            "references": _named_list({}),
            "compressed": _intsxp([1]),
        }
    )
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_serialise(index)))
    assert read_lazyload(tmp_path / "Rdata") == {"x": ["one", "two"], "y": ["three"]}
    assert read_lazyload(tmp_path / "Rdata", ["y"]) == {"y": ["three"]}
    with pytest.raises(DataError, match="R objects \\['z'\\] not in"):
        read_lazyload(tmp_path / "Rdata", ["z"])


def test_missing_database_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_lazyload(tmp_path / "Rdata")


def test_truncated_stream_is_data_error() -> None:
    with pytest.raises(DataError, match="truncated"):
        unserialize(_serialise(_strsxp(["abc"]))[:-2])


@pytest.fixture
def austen(isolated_cache: Path) -> None:
    if not get_asset("austen").installed:
        pytest.skip("austen not unpacked into the cache (see ASSETS.md)")


@pytest.mark.assets
@pytest.mark.usefixtures("austen")
def test_austen_six_novels_four_million_characters() -> None:
    novels = austen_novels()
    assert list(novels) == list(AUSTEN_NOVELS)
    chars = sum(len(line) for lines in novels.values() for line in lines)
    assert 3_900_000 < chars < 4_100_000
    assert novels["prideprejudice"][0] == "PRIDE AND PREJUDICE"
    assert novels["prideprejudice"][9].startswith("It is a truth universally acknowledged")
    assert novels["emma"][0] == "EMMA"


@pytest.mark.assets
@pytest.mark.usefixtures("austen")
def test_austen_paragraphs_join_wrapped_lines() -> None:
    paragraphs = austen_paragraphs()
    assert 9_000 < len(paragraphs) < 12_000
    assert all(p.strip() == p and p for p in paragraphs)
    opening = next(p for p in paragraphs if p.startswith("It is a truth"))
    assert opening.endswith("must be in want of a wife.")
