"""Refining the chosen members: each fine-tuned alone before the test evaluation (``prune.refine_steps``).

Every member of the super-network shares its weights with all the others, so each is a compromise
between them, and the super-network's training moves even its largest member away from the fine-tuned
model (BBC News, cpu budget, seed 1: the full architecture scored 95.0 % on test in one run and 96.4 %
in another, against the fine-tuned model's 96.8 %). The hand-designed baselines are each trained alone. With
``refine_steps: N`` every member the export will write is extracted from the super-network and trained
alone for N steps on the labels and the fine-tuned model's outputs (the uniform baseline's recipe,
:meth:`~elastic_lm.prune.parts.PruneParts.train_alone`), at ``prune.finetune_learning_rate``. The
super-network is never changed; the test evaluation scores, and the export writes, the refined models.
``prune.refine_max_epochs`` skips refining where the super-network has fit the training set already
(:func:`refine_skipped`), ``prune.refine_max_share`` refines only the smaller members
(:func:`members_to_refine`).

Each refined model is kept in ``evaluate/refined/trial-N/`` (written whole, then renamed), its
training checkpoints in ``evaluate/refine/trial-N/``, so an interrupted evaluate stage resumes with
the member it was refining.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from elastic_lm.architecture import Architecture
from elastic_lm.io import atomic_directory
from elastic_lm.model import ElasticForSequenceClassification
from elastic_lm.prune.source import ensure_label_maps

if TYPE_CHECKING:
    from elastic_lm.config import Config
    from elastic_lm.prune.parts import PruneParts


def refined_folder(run_root: Path, name: str) -> Path:
    """Where the evaluate stage keeps member ``name`` after refining it."""
    return Path(run_root) / "evaluate" / "refined" / name


def load_refined(run_root: Path, name: str) -> ElasticForSequenceClassification | None:
    """Member ``name`` as refined by this run (None when the run did not refine it)."""
    folder = refined_folder(run_root, name)
    if not (folder / "config.json").is_file():
        return None
    return ElasticForSequenceClassification.from_pretrained(folder).eval()


def refine_member(
    parts: PruneParts,
    supernet: ElasticForSequenceClassification,
    arch: Architecture,
    teacher: ElasticForSequenceClassification,
    work_dir: Path,
) -> ElasticForSequenceClassification:
    """Sub-network ``arch`` extracted and trained alone for ``prune.refine_steps`` steps (checkpoints in
    ``work_dir``, resumable); the super-network is not touched."""
    model = supernet.extract(arch).eval()
    ensure_label_maps(model.config)
    parts.train_alone(model, work_dir, parts.config.prune.refine_steps, teacher=teacher)
    return model


def supernet_epochs(config: Config, train_rows: int) -> float:
    """How many times the super-network's training saw each training row, on average."""
    t = config.train
    return t.steps * t.batch_size * t.grad_accumulation / max(train_rows, 1)


def refine_skipped(config: Config, train_rows: int) -> str | None:
    """Why ``prune.refine_max_epochs`` turns refining off for this set (None: it does not).

    Refining pays where the shared weights are still under-trained on the set, and much less where
    they have fit it already; docs/pruning.md has the measurements (movie sentiment against BBC News).
    """
    limit = config.prune.refine_max_epochs
    if not config.prune.refine_steps or limit is None:
        return None
    epochs = supernet_epochs(config, train_rows)
    if epochs <= limit:
        return None
    return (
        f"refining skipped: the super-network's training saw each of the {train_rows:,} training rows "
        f"{epochs:.1f} times, more than prune.refine_max_epochs {limit:g}"
    )


def members_to_refine(
    config: Config, supernet: ElasticForSequenceClassification, members: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The members with at most ``prune.refine_max_share`` of the full model's non-embedding
    parameters: the sandwich rule trains the largest sub-network every step, so the large members
    gain little from refining and cost the most."""
    from elastic_lm.metrics.size import count_params

    limit = config.prune.refine_max_share
    if limit >= 1.0:
        return list(members)
    full = count_params(supernet.config, supernet.model.largest(), include_embeddings=False)

    def share(trial: dict[str, Any]) -> float:
        arch = Architecture.from_dict(trial["architecture"])
        return count_params(supernet.config, arch, include_embeddings=False) / full

    return [t for t in members if share(t) <= limit]


def refine_members(
    parts: PruneParts, supernet: ElasticForSequenceClassification, members: list[dict[str, Any]]
) -> dict[str, ElasticForSequenceClassification]:
    """``{trial-N: refined model}`` for every member :func:`members_to_refine` keeps (none when
    ``prune.refine_steps`` is 0 or :func:`refine_skipped` says so); members refined by an earlier
    attempt of this stage are read back, not trained again."""
    rows = len(parts.data.train)  # first: on a tiny set this adapts parts.config (train.steps)
    steps = parts.config.prune.refine_steps
    if not steps:
        return {}
    skipped = refine_skipped(parts.config, rows)
    if skipped is not None:
        if parts.log is not None:
            parts.log(skipped)
        return {}
    chosen = members_to_refine(parts.config, supernet, members)
    teacher = parts.finetuned()
    out: dict[str, ElasticForSequenceClassification] = {}
    for position, trial in enumerate(chosen, 1):
        name = f"trial-{trial['number']}"
        done = load_refined(parts.root, name)
        if done is not None:
            out[name] = done
            continue
        if parts.log is not None:
            parts.log(f"refining {name} ({position} of {len(chosen)}): {steps} steps alone")
        arch = Architecture.from_dict(trial["architecture"])
        model = refine_member(parts, supernet, arch, teacher, parts.dir("evaluate") / "refine" / name)
        with atomic_directory(refined_folder(parts.root, name)) as staging:
            model.save_pretrained(staging)
        out[name] = model
    return out


__all__ = [
    "load_refined",
    "members_to_refine",
    "refine_member",
    "refine_members",
    "refine_skipped",
    "refined_folder",
    "supernet_epochs",
]
