"""Export-time healing of encoder members (heal/encoder.py): a member distilled alone moves towards
the teacher, the shared super-network is left as it was, and the same config gives the same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_lm.config import load_config
from elastic_lm.errors import ConfigError
from elastic_lm.heal.encoder import distil_member, member_tuner
from elastic_lm.pipeline.objectives import METRICS, MetricContext
from elastic_lm.train.build import build_training, fixed_batches
from prune_fixtures import sentiment_rows, tiny_bert
from test_distil_path import _job


def _cosine(model: Any, arch: Any, teacher: Any, batches: list[dict[str, Any]]) -> float:
    """Mean cosine of the member's sentence embeddings to the teacher's: the search's objective."""
    return METRICS["teacher_cosine"].make(MetricContext(model, batches, teacher=teacher))(arch)


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_member_distilled_alone_moves_towards_the_teacher(tmp_path: Path, isolated_cache: Path) -> None:
    source = tiny_bert(tmp_path / "tiny-bert")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(160)))
    config = load_config(_job(tmp_path, source, corpus, "heal"))
    parts = build_training(config, progress=False)
    parts.train()
    model, teacher = parts.model.eval(), parts.teacher.eval()
    arch = parts.space.smallest()
    batches = fixed_batches(parts.train_data, parts.settings.collate_fn, 4, 8, 0)
    shared = _state(model)
    before = _cosine(model, arch, teacher, batches)

    def distil() -> Any:
        return distil_member(
            config,
            model,
            arch,
            12,
            teacher=teacher,
            train_data=parts.train_data,
            collate=parts.settings.collate_fn,
        )

    healed = distil()
    after = _cosine(healed, arch, teacher, batches)
    assert 1 - after < 0.5 * (1 - before), (before, after)  # the gap to the teacher at least halves
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in shared.items())  # the super-network kept
    again = distil()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in healed.state_dict().items())


def test_member_tuner_is_off_by_default_and_needs_a_teacher(tmp_path: Path, isolated_cache: Path) -> None:
    source = tiny_bert(tmp_path / "tiny-bert")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(40)))
    config = load_config(_job(tmp_path, source, corpus, "off"))
    assert member_tuner(config) is None
    no_teacher = config.model_copy(
        update={
            "teacher": config.teacher.model_copy(update={"source": "none"}),
            "export": config.export.model_copy(update={"distil_steps": 5}),
        }
    )
    with pytest.raises(ConfigError, match=r"export\.distil_steps need a teacher"):
        member_tuner(no_teacher)
