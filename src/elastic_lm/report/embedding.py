"""The report's sentence-embedding table: each model's retrieval, fidelity and probe scores beside the
teacher's, with the probes' majority-class and chance lines (``evaluate/embedding.json``)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elastic_lm.errors import DataError

PRODUCER = "elastic-lm evaluate RUN_DIR"


@dataclass(frozen=True)
class EmbeddingTableRow:
    """One model as the table shows it."""

    name: str
    origin: str
    params_nonembedding: float | None
    mrr: float
    recall_at_10: float
    cos_to_teacher: float | None
    probes: dict[str, tuple[float, float]]  # task -> (accuracy, macro F1)
    probe_avg: float | None


@dataclass(frozen=True)
class EmbeddingTable:
    pairs: int
    tasks: tuple[str, ...]
    baselines: dict[str, dict[str, float]]  # task -> majority_accuracy, majority_macro_f1, chance_accuracy
    rows: tuple[EmbeddingTableRow, ...]
    max_length: int | None = None  # tokens per text (the evaluation's setting), when recorded


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where} is {value!r}, not a number; re-run '{PRODUCER}'")
    return float(value)


def _opt(value: Any, where: str) -> float | None:
    return None if value is None else _num(value, where)


def load_embedding_table(path: Path) -> EmbeddingTable | None:
    """``evaluate/embedding.json``; None when the run has none (not an encoder run, or not evaluated)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        tasks = tuple(str(t) for t in raw.get("tasks") or raw.get("probe_tasks", {}))
        baselines = {t: dict(v) for t, v in raw.get("probe_tasks", {}).items()}
        items = raw["rows"]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path} is not an embedding evaluation ({error}); re-run '{PRODUCER}'") from None
    rows = []
    for i, item in enumerate(items):
        where = f"{path} row {i}"
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(f"{where} lacks a 'name'; re-run '{PRODUCER}'")
        probes = {
            str(t): (
                _num(p.get("accuracy"), f"{where} {t} accuracy"),
                _num(p.get("macro_f1"), f"{where} {t} F1"),
            )
            for t, p in (item.get("probes") or {}).items()
        }
        rows.append(
            EmbeddingTableRow(
                name=str(item["name"]),
                origin=str(item.get("origin", "")),
                params_nonembedding=_opt(item.get("params_nonembedding"), f"{where} params_nonembedding"),
                mrr=_num(item.get("retrieval_mrr"), f"{where} retrieval_mrr"),
                recall_at_10=_num(item.get("retrieval_recall_at_10"), f"{where} retrieval_recall_at_10"),
                cos_to_teacher=_opt(item.get("cos_to_teacher"), f"{where} cos_to_teacher"),
                probes=probes,
                probe_avg=_opt(item.get("probe_avg"), f"{where} probe_avg"),
            )
        )
    pairs = int((raw.get("retrieval") or {}).get("pairs", 0))
    length = (raw.get("settings") or {}).get("max_length")
    max_length = length if isinstance(length, int) and not isinstance(length, bool) else None
    return EmbeddingTable(pairs, tasks, baselines, tuple(rows), max_length)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _td(text: str) -> str:
    return f'<td class="num">{_e(text)}</td>'


def render_embedding_section(table: EmbeddingTable) -> str:
    """The HTML section: one row per model (teacher first), then the probes' trivial lines."""
    teacher = next((r for r in table.rows if r.origin == "teacher"), None)
    headers = [
        "model",
        "non-embedding params",
        "retrieval MRR ↑ (kept)",
        "recall@10 ↑",
        "cos to teacher ↑",
        *(f"{t} acc / F1 ↑" for t in table.tasks),
        "probe avg acc ↑",
    ]
    body = []
    for row in table.rows:
        kept = ""
        if teacher is not None and row is not teacher and teacher.mrr > 0:
            kept = f" ({row.mrr / teacher.mrr:.0%})"
        params = "–" if row.params_nonembedding is None else f"{row.params_nonembedding / 1e6:.2f}M"
        probes = [
            f"{_f(row.probes[t][0])} / {_f(row.probes[t][1])}" if t in row.probes else "–"
            for t in table.tasks
        ]
        label = f"{row.name}" + (f" [{row.origin}]" if row.origin not in ("", "export", "teacher") else "")
        cls = " class='front'" if row is teacher else ""
        cells = [params, _f(row.mrr) + kept, _f(row.recall_at_10), _f(row.cos_to_teacher), *probes]
        body.append(
            f"<tr{cls}><td>{_e(label)}</td>" + "".join(_td(c) for c in [*cells, _f(row.probe_avg)]) + "</tr>"
        )
    for line, acc_key, f1_key in (
        ("majority class", "majority_accuracy", "majority_macro_f1"),
        ("chance", "chance_accuracy", None),
    ):
        cells = []
        for t in table.tasks:
            base = table.baselines.get(t, {})
            f1 = _f(base.get(f1_key)) if f1_key else "–"
            cells.append(f"{_f(base.get(acc_key))} / {f1}")
        accs = [table.baselines.get(t, {}).get(acc_key) for t in table.tasks]
        known = [a for a in accs if a is not None]
        avg = sum(known) / len(known) if known and len(known) == len(accs) else None
        body.append(
            f"<tr class='muted'><td>{_e(line)}</td>"
            + "".join(_td(c) for c in ["", "", "", "", *cells, _f(avg)])
            + "</tr>"
        )
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    sizes = [
        f"{t} {int(b['train_examples']):,} / {int(b['test_examples']):,}"
        for t in table.tasks
        if "train_examples" in (b := table.baselines.get(t, {})) and "test_examples" in b
    ]
    size_note = f" (train / held-out examples: {', '.join(sizes)})" if sizes else ""
    length_note = f" Texts are cut at {table.max_length} tokens." if table.max_length else ""
    return (
        "<h2>Sentence embeddings</h2>"
        f"<p class='muted'>Each model's pooled sentence embedding, as its source defines it. Retrieval: each "
        f"of {table.pairs:,} held-out movie-dialog statements ranks its own reply among all replies (MRR; "
        "kept = share of the teacher's). Cos to teacher: mean cosine to the teacher's embedding of the same "
        "held-out texts (– where the widths differ). Probes: logistic regression on the frozen embedding, "
        f"held-out accuracy / macro F1{_e(size_note)}.{_e(length_note)} Also in "
        "<code>evaluate/embedding.json</code>.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def embedding_section(run_dir: Path) -> str:
    """The section for ``run_dir``, or an empty string when it has no embedding evaluation."""
    table = load_embedding_table(Path(run_dir) / "evaluate" / "embedding.json")
    return "" if table is None else render_embedding_section(table)


__all__ = [
    "EmbeddingTable",
    "EmbeddingTableRow",
    "embedding_section",
    "load_embedding_table",
    "render_embedding_section",
]
