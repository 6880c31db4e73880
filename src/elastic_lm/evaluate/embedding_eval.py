"""Score encoders as sentence-embedding models: retrieval, fidelity to the teacher, linear probes.

Every model (the teacher, each exported member, any reference) embeds the same held-out texts with the
same pooling, so a row differs from the teacher's only by the model. Models are loaded one at a time
(a factory per row) and freed after their row, so evaluating many members needs the memory of one.

```python
from elastic_lm.evaluate.embedding_eval import Candidate, evaluate_embeddings
results = evaluate_embeddings([member], teacher, pairs, tasks)   # see docs/evaluate.md
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from elastic_lm.evaluate.embedding import TextEmbedder
from elastic_lm.evaluate.probe import ProbeScore, ProbeTask, fit_probe
from elastic_lm.evaluate.retrieval import DialogPairs, mean_cosine, reciprocal_ranks, summarise_ranks
from elastic_lm.io import atomic_write_json

RECALL_K = 10


@dataclass(frozen=True)
class Candidate:
    """A model to score: ``load()`` returns its embedder and non-embedding parameter count."""

    name: str
    origin: str  # "teacher", "export", "reference"
    load: Callable[[], tuple[TextEmbedder, int]]
    path: str | None = None


@dataclass(frozen=True)
class EmbeddingRow:
    """One model's scores; ``cos_to_teacher`` is None when its embedding width differs."""

    name: str
    origin: str
    path: str | None
    params_nonembedding: int
    dim: int
    retrieval_mrr: float
    retrieval_recall_at_10: float
    cos_to_teacher: float | None
    probes: dict[str, ProbeScore]
    seconds: float
    retrieval_mrr_standard_error: float | None = None
    # per pair, for paired comparisons between models (not written to JSON: 2,000 numbers a row)
    reciprocal_ranks: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def probe_avg(self) -> float | None:
        """Mean probe accuracy over tasks (unweighted, as GLUE averages)."""
        return sum(p.accuracy for p in self.probes.values()) / len(self.probes) if self.probes else None

    @property
    def probe_macro_f1_avg(self) -> float | None:
        return sum(p.macro_f1 for p in self.probes.values()) / len(self.probes) if self.probes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "path": self.path,
            "params_nonembedding": self.params_nonembedding,
            "dim": self.dim,
            "retrieval_mrr": self.retrieval_mrr,
            "retrieval_mrr_standard_error": self.retrieval_mrr_standard_error,
            "retrieval_recall_at_10": self.retrieval_recall_at_10,
            "cos_to_teacher": self.cos_to_teacher,
            "probes": {k: v.to_dict() for k, v in self.probes.items()},
            "probe_avg": self.probe_avg,
            "probe_macro_f1_avg": self.probe_macro_f1_avg,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class EmbeddingResults:
    """Everything ``evaluate/embedding.json`` holds."""

    rows: list[EmbeddingRow]
    retrieval: dict[str, Any]
    probe_tasks: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "retrieval": self.retrieval,
            "tasks": list(self.probe_tasks),  # the config's order (the JSON's keys are sorted)
            "probe_tasks": self.probe_tasks,
            "rows": [r.to_dict() for r in self.rows],
        }


def score_candidate(
    candidate: Candidate,
    pairs: DialogPairs,
    tasks: Sequence[ProbeTask],
    teacher_texts: torch.Tensor | None,
    *,
    probe_c: float = 1.0,
    seed: int = 0,
) -> tuple[EmbeddingRow, torch.Tensor]:
    """One row, plus the model's embedding of ``pairs.texts`` (the teacher's is the fidelity target)."""
    start = time.perf_counter()
    embedder, params = candidate.load()
    texts = embedder.embed(pairs.texts)
    n = len(pairs)
    rr = reciprocal_ranks(texts[:n], texts[n:])
    found = summarise_ranks(rr, RECALL_K)
    cos = None
    if teacher_texts is not None and teacher_texts.shape == texts.shape:
        cos = mean_cosine(texts, teacher_texts)
    probes = {}
    for task in tasks:
        train_x = embedder.embed(list(task.train_texts))
        test_x = embedder.embed(list(task.test_texts))
        probes[task.name] = fit_probe(
            train_x,
            task.train_labels,
            test_x,
            task.test_labels,
            len(task.label_names),
            c=probe_c,
            seed=seed,
        )
    row = EmbeddingRow(
        name=candidate.name,
        origin=candidate.origin,
        path=candidate.path,
        params_nonembedding=params,
        dim=int(texts.shape[1]),
        retrieval_mrr=found["mrr"],
        retrieval_recall_at_10=found[f"recall_at_{RECALL_K}"],
        cos_to_teacher=cos,
        probes=probes,
        seconds=time.perf_counter() - start,
        retrieval_mrr_standard_error=found["mrr_standard_error"],
        reciprocal_ranks=rr,
    )
    return row, texts


def evaluate_embeddings(
    candidates: Sequence[Candidate],
    teacher: Candidate | None,
    pairs: DialogPairs,
    tasks: Sequence[ProbeTask],
    *,
    probe_c: float = 1.0,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    on_row: Callable[[EmbeddingRow], None] | None = None,
) -> EmbeddingResults:
    """The teacher's row first (its fidelity is 1 by definition), then one row per candidate."""
    rows: list[EmbeddingRow] = []
    teacher_texts = None
    for i, candidate in enumerate(([teacher] if teacher else []) + list(candidates)):
        is_teacher = teacher is not None and i == 0
        row, texts = score_candidate(
            candidate, pairs, tasks, None if is_teacher else teacher_texts, probe_c=probe_c, seed=seed
        )
        if is_teacher:
            teacher_texts = texts
            row = replace(row, cos_to_teacher=mean_cosine(texts, texts))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    retrieval = {"source": "movie-dialogs", "pairs": len(pairs), "k": RECALL_K}
    probe_tasks = {
        t.name: {
            "train_examples": len(t.train_labels),
            "test_examples": len(t.test_labels),
            "labels": list(t.label_names),
            **t.baselines(),
        }
        for t in tasks
    }
    return EmbeddingResults(rows, retrieval, probe_tasks, dict(settings or {}))


def write_embedding_results(folder: str | Path, results: EmbeddingResults) -> Path:
    """``embedding.json`` in ``folder``, written atomically (the report reads it)."""
    return atomic_write_json(Path(folder) / "embedding.json", results.to_dict())


__all__ = [
    "RECALL_K",
    "Candidate",
    "EmbeddingResults",
    "EmbeddingRow",
    "evaluate_embeddings",
    "score_candidate",
    "write_embedding_results",
]
