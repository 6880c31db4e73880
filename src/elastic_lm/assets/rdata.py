"""A small standard-library reader for R lazy-load databases (``Rdata.rdx`` + ``Rdata.rdb``).

Why hand-written: the Jane Austen novels ship only in this format, and the one PyPI parser
(``rdata``) pulls pandas and xarray. We need character vectors and the index, so we read the XDR
serialisation of exactly the types those use (vectors, pairlists, symbols, attributes) and refuse
anything else.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path
from typing import Any

from elastic_lm.errors import DataError

# SEXP type codes (R Internals, "Serialization Formats").
_NILSXP, _SYMSXP, _LISTSXP, _CHARSXP, _LGLSXP = 0, 1, 2, 9, 10
_INTSXP, _REALSXP, _STRSXP, _VECSXP, _RAWSXP = 13, 14, 16, 19, 24
_REFSXP, _NILVALUE_SXP = 255, 254
# global env, unbound, missing arg, base namespace, empty env, base env
_ENV_PSEUDO = {253, 252, 251, 250, 242, 241}
_NA_INT = -(2**31)


class _Reader:
    """Cursor over an XDR (big-endian) R serialisation stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def _take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise DataError("R data stream ended early: the .rdb/.rdx file is truncated or corrupt")
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints, upper and lower 32 bits
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self) -> None:
        if self._take(2) != b"X\n":
            raise DataError("R data is not in XDR serialisation format: cannot read this file")
        version = self.int()
        self.int()  # R version that wrote it
        self.int()  # minimal R version to read it
        if version == 3:
            self._take(self.int())  # native encoding name
        elif version != 2:
            raise DataError(f"R serialisation version {version} is not supported (2 or 3 are)")

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (_NILVALUE_SXP, _NILSXP) or kind in _ENV_PSEUDO:
            return None
        if kind == _REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == _SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == _CHARSXP:
            n = self.int()
            return None if n == -1 else self._take(n).decode("utf-8", errors="replace")
        if kind == _LISTSXP:  # pairlist: attributes and named lists of arguments
            out: dict[str, Any] = {}
            while kind == _LISTSXP:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else str(len(out))
                out[str(tag)] = self.item()
                flags = self.int()
                kind = flags & 0xFF
                has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
            if kind not in (_NILVALUE_SXP, _NILSXP):
                raise DataError(f"unexpected R pairlist terminator type {kind}")
            return out
        value: Any
        if kind in (_LGLSXP, _INTSXP):
            n = self.length()
            ints = struct.unpack(f">{n}i", self._take(4 * n))
            value = [None if v == _NA_INT else v for v in ints]
        elif kind == _REALSXP:
            n = self.length()
            value = list(struct.unpack(f">{n}d", self._take(8 * n)))
        elif kind in (_STRSXP, _VECSXP):
            value = [self.item() for _ in range(self.length())]
        elif kind == _RAWSXP:
            value = self._take(self.length())
        else:
            raise DataError(f"R object type {kind} is not supported by elastic-lm's R data reader")
        if has_attr:
            attrs = self.item()
            names = attrs.get("names") if isinstance(attrs, dict) else None
            if kind == _VECSXP and names is not None:
                return dict(zip(names, value, strict=True))
        return value


def unserialize(data: bytes) -> Any:
    """Decode one R-serialised (XDR) object into Python lists, dicts, str, int and float."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def _decompress(blob: bytes) -> bytes:
    """One lazy-load record: 4-byte big-endian length, then a zlib (or typed bzip2/xz) stream."""
    expected = struct.unpack(">I", blob[:4])[0]
    body = blob[4:]
    kind = body[:1]
    if kind == b"Z":
        out = lzma.decompress(body[1:])
    elif kind == b"2":
        out = bz2.decompress(body[1:])
    elif kind == b"0":
        out = body[1:]
    else:
        out = zlib.decompress(body)
    if len(out) != expected:
        raise DataError("R lazy-load record has the wrong length: the .rdb file is corrupt")
    return out


def read_lazyload(base: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Read objects (all, or those named) from lazy-load database ``base.rdx`` / ``base.rdb``."""
    rdx, rdb = base.with_suffix(".rdx"), base.with_suffix(".rdb")
    for path in (rdx, rdb):
        if not path.is_file():
            raise DataError(f"R lazy-load file {path} does not exist: re-install the asset")
    raw = rdx.read_bytes()
    index = unserialize(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else _decompress(raw))
    variables: dict[str, list[int]] = index["variables"]
    wanted = list(variables) if names is None else names
    unknown = [n for n in wanted if n not in variables]
    if unknown:
        raise DataError(f"R objects {unknown} not in {rdx}; it has {sorted(variables)}")
    out: dict[str, Any] = {}
    with rdb.open("rb") as fh:
        for name in wanted:
            offset, length = variables[name]
            fh.seek(offset)
            out[name] = unserialize(_decompress(fh.read(length)))
    return out
