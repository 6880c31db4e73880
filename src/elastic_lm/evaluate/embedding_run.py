"""The embedding half of the evaluate stage: a config and a run directory -> ``evaluate/embedding.json``.

Which models: the teacher as it ships (``evaluate.embedding.teacher``, else ``teacher.source``, else
``model.source``), every exported encoder of ``export/index.json`` and the ``evaluate.references``.
Which pooling: the source's sentence-transformers config (exports inherit the source's definition;
a reference folder with its own config keeps its own), unless the section names one.
Which texts: retrieval pairs held out from the run's training split (see :mod:`.retrieval`); probe
tasks split by the data pipeline with the config's seed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.evaluate.embedding import PoolingSpec, TextEmbedder, folder_embedder, pooling_spec_for
from elastic_lm.evaluate.embedding_eval import (
    Candidate,
    EmbeddingResults,
    EmbeddingRow,
    evaluate_embeddings,
    write_embedding_results,
)
from elastic_lm.evaluate.probe import ProbeTask, load_probe_task
from elastic_lm.evaluate.retrieval import DialogPairs, movie_dialog_pairs


def embedding_enabled(config: Config) -> bool:
    """An explicit ``evaluate.embedding.enabled``, else on for encoder runs (``model.task`` masked-lm)."""
    section = config.evaluate.embedding
    if not config.evaluate.enabled:
        return False
    if section.enabled is not None:
        return section.enabled
    return config.model.task == "masked-lm"


def teacher_name(config: Config) -> str:
    """The model every row's fidelity is measured against."""
    section = config.evaluate.embedding
    if section.teacher:
        return section.teacher
    if config.teacher.source != "none":
        return config.teacher.source
    return config.model.source


def resolve_spec(config: Config, folder: Path | None) -> PoolingSpec:
    """The section's pooling where it names one, else ``folder``'s sentence-transformers config."""
    section = config.evaluate.embedding
    spec = pooling_spec_for(folder)
    if section.pooling != "auto":
        spec = PoolingSpec(section.pooling, spec.normalize, spec.max_seq_length, "evaluate.embedding.pooling")
    if section.normalize is not None and section.normalize != spec.normalize:
        spec = PoolingSpec(spec.mode, section.normalize, spec.max_seq_length, f"{spec.origin}; normalize set")
    return spec


def training_texts(config: Config) -> set[str]:
    """Every text of the run's training split (what retrieval pairs must not come from)."""
    from elastic_lm.data.prepare import load_splits

    return set(load_splits(config.data)["train"]["text"])


def probe_tasks(config: Config) -> list[ProbeTask]:
    """The section's probe tasks, cut as the data pipeline cuts them with the section's budget."""
    section = config.evaluate.embedding
    tasks = [
        (t.display_name, t.data_config(section.max_length, section.probe_max_examples))
        for t in section.probe_tasks
    ]
    names = [name for name, _ in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"evaluate.embedding.probe_tasks has repeated names {names}; give each task its own 'name'"
        )
    return [load_probe_task(name, data) for name, data in tasks]


def _candidate(config: Config, name: str, origin: str, folder: Path, spec: PoolingSpec) -> Candidate:
    section = config.evaluate.embedding

    def load() -> tuple[TextEmbedder, int]:
        from elastic_lm.evaluate.downstream import load_tokenizer
        from elastic_lm.train.build import tokenizer_from_config

        tokenizer = load_tokenizer(folder, functools.partial(tokenizer_from_config, config))
        cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        device = "cuda" if cuda else "cpu"
        return folder_embedder(
            folder,
            tokenizer,
            spec,
            max_length=section.max_length,
            batch_size=section.batch_size,
            device=device,
        )

    return Candidate(name, origin, load, str(folder))


def candidates(config: Config, run_dir: Path) -> tuple[Candidate | None, list[Candidate]]:
    """The teacher (None for a run from scratch without one) and the exported encoders (+ references),
    each with the pooling it is scored with."""
    from elastic_lm.evaluate.downstream import exported_models, model_kind, reference_models
    from elastic_lm.train.build import model_folder

    section = config.evaluate.embedding
    source = config.model.source
    source_spec = resolve_spec(config, None if source == "scratch" else model_folder(source))
    teacher = None
    if teacher_name(config) != "scratch":
        folder = model_folder(teacher_name(config))
        name = f"teacher ({Path(teacher_name(config)).name})"
        teacher = _candidate(config, name, "teacher", folder, resolve_spec(config, folder))
    rows = []
    for entry in exported_models(run_dir, config.evaluate.models, section.max_models):
        if model_kind(entry.path) == "encoder":
            rows.append(_candidate(config, entry.name, "export", entry.path, source_spec))
    for entry in reference_models(config.evaluate.references):
        if model_kind(entry.path) == "encoder":
            spec = resolve_spec(config, entry.path)
            rows.append(_candidate(config, entry.name, "reference", entry.path, spec))
    return teacher, rows


def run_embedding_evaluation(config: Config, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Score the teacher and every exported encoder; write and return ``RUN_DIR/evaluate/embedding.json``."""
    run_dir = Path(run_dir)
    section = config.evaluate.embedding
    teacher, models = candidates(config, run_dir)
    if progress:
        count = len(models) + (teacher is not None)
        print(f"sentence-embedding evaluation of {count} models (retrieval, fidelity, probes)", flush=True)
    pairs: DialogPairs = movie_dialog_pairs(section.retrieval_pairs, config.seed, training_texts(config))
    tasks = probe_tasks(config)

    def report(row: EmbeddingRow) -> None:
        if progress:
            print(f"  {describe_row(row)}", flush=True)

    settings: dict[str, Any] = section.model_dump(mode="json")
    settings.update(seed=config.seed, teacher=teacher_name(config))
    results = evaluate_embeddings(
        models,
        teacher,
        pairs,
        tasks,
        probe_c=section.probe_c,
        seed=config.seed,
        settings=settings,
        on_row=report,
    )
    return write_embedding_results(run_dir / "evaluate", results)


def describe_row(row: EmbeddingRow) -> str:
    """One line for the terminal: MRR, recall@10, fidelity, probe average, time."""
    cos = "–" if row.cos_to_teacher is None else f"{row.cos_to_teacher:.3f}"
    probe = "–" if row.probe_avg is None else f"{row.probe_avg:.3f}"
    return (
        f"{row.name}: {row.params_nonembedding:,} non-embedding params, retrieval MRR "
        f"{row.retrieval_mrr:.3f}, recall@10 {row.retrieval_recall_at_10:.3f}, cos to teacher {cos}, "
        f"probe accuracy {probe} ({row.seconds:.0f} s)"
    )


__all__ = [
    "EmbeddingResults",
    "candidates",
    "describe_row",
    "embedding_enabled",
    "probe_tasks",
    "resolve_spec",
    "run_embedding_evaluation",
    "teacher_name",
    "training_texts",
]
