"""Importance scores by name and reordering by activation: a permutation that sorts."""

from __future__ import annotations

import pytest
import torch

from elastic_lm.errors import ConfigError
from elastic_lm.importance import SCORES, importance_scores, reorder_by_importance
from elastic_lm.model import ElasticConfig, ElasticForMaskedLM
from elastic_lm.model.attention import ElasticAttention
from elastic_lm.model.feedforward import ElasticFFN


def model() -> ElasticForMaskedLM:
    torch.manual_seed(0)
    cfg = ElasticConfig(
        vocab_size=40, hidden_size=16, num_layers=2, num_attention_heads=4, intermediate_size=24,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        block_candidates=[["bert"]] * 2, task="masked-lm",
    )  # fmt: skip
    m = ElasticForMaskedLM(cfg).eval()
    with torch.no_grad():  # spread the weights so units differ clearly in importance
        for p in m.parameters():
            p.mul_(torch.rand_like(p) * 4)
    return m


def batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        mask = torch.ones(3, 8, dtype=torch.long)
        mask[2, 5:] = 0
        out.append({"input_ids": torch.randint(3, 40, (3, 8), generator=g), "attention_mask": mask})
    return out


def test_activation_reordering_keeps_the_function_and_sorts():
    m = model()
    data = batches()
    with torch.no_grad():
        before = m.model(**data[0]).last_hidden_state
    scores = importance_scores("activation", m, data)
    assert set(scores) == {n for n, x in m.named_modules() if isinstance(x, ElasticAttention | ElasticFFN)}
    assert all(float(s.min()) >= 0 and float(s.max()) > 0 for s in scores.values())
    assert any(not torch.all(s[:-1] >= s[1:]) for s in scores.values())  # not sorted before
    reorder_by_importance(m, scores)
    with torch.no_grad():
        after = m.model(**data[0]).last_hidden_state
    keep = data[0]["attention_mask"].bool()
    torch.testing.assert_close(after[keep], before[keep], atol=1e-5, rtol=1e-5)
    rescored = importance_scores("activation", m, data)
    for name, s in rescored.items():
        assert torch.all(s[:-1] >= s[1:] - 1e-5), name
        torch.testing.assert_close(s.sort(descending=True).values, scores[name].sort(descending=True).values)


def test_activation_ignores_padding():
    m = model()
    data = batches(1)
    changed = {k: v.clone() for k, v in data[0].items()}
    changed["input_ids"][2, 5:] = 7  # only padded positions differ
    a = importance_scores("activation", m, data)
    b = importance_scores("activation", m, [changed])
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_scores_by_name():
    assert set(SCORES) == {"activation", "magnitude", "gradient", "fisher"}
    with pytest.raises(ConfigError, match="activation"):
        importance_scores("bogus", model(), [])
    with pytest.raises(ConfigError, match="classification model"):
        importance_scores("fisher", model(), [])
