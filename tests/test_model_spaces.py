"""Every preset search space fits the elastic model: each member selects, extracts and counts."""

from __future__ import annotations

import random

import pytest
import torch

from elastic_lm.metrics.size import count_params
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.space import preset

VOCAB = 29
SHAPES = {
    "elm": dict(layers=2, hidden=16, heads=4, ffn=32, ffn_step=8, ffn_stack=2),
    "nasbert": dict(layers=4, block_size=2, hidden=16, hidden_choices=(8, 16), head_dim=4),
    "prune-small": dict(layers=2, hidden=16, heads=4, ffn=16, ffn_step=4),
    "prune-medium": dict(layers=2, hidden=16, heads=4, ffn=16, ffn_step=4),
    "prune-layer": dict(layers=3, hidden=16, heads=4, ffn=16),
    "prune-large": dict(layers=2, hidden=16, heads=4, ffn=8),
    "llama": dict(layers=2, hidden=12, heads=6, kv_heads=2, ffn=16, ffn_step=4),
}
LLAMA_SHAPE = dict(
    positions="rope",
    norm="rmsnorm",
    norm_eps=1e-6,
    hidden_act="silu",
    use_bias=False,
    type_vocab_size=0,
    embedding_norm=False,
    final_norm=True,
    tie_word_embeddings=False,
)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_preset_member_extracts_exactly(name: str) -> None:
    space = preset(name, **SHAPES[name])
    extra = LLAMA_SHAPE if name == "llama" else {}
    config = ElasticConfig.from_space(
        space,
        vocab_size=VOCAB,
        task="causal-lm" if name == "llama" else "masked-lm",
        head_dim=4,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **extra,
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    model.set_architecture(space.largest())  # the super-network holds its largest member
    rng = random.Random(0)
    archs = [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(4))]
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    for arch in archs:
        with torch.no_grad(), model.using(arch):
            expected = model(ids).logits
            sub = model.extract(arch)
            got = sub(ids).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert count_params(config, arch) == sum(p.numel() for p in sub.parameters())
