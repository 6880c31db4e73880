"""Decoder importance on a tiny random Llama (and GPT-2): reordering by every score is a permutation that
leaves the model's output unchanged, puts the most important first, keeps KV groups whole, and the scores
see what was planted (a dead layer, a dead unit, a silent head)."""

from __future__ import annotations

import math

import pytest
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import ConfigError
from elastic_lm.importance.decoder import (
    DecoderScores,
    decoder_blocks,
    decoder_importance,
    head_order,
    keep_layers,
    layer_scores,
    permute_heads,
    reorder_decoder,
)
from elastic_lm.model import ElasticConfig, ElasticForCausalLM, build_model
from test_generation import GPT2, LLAMA, VOCAB

ALL = ("ffn", "heads", "hidden", "block", "removal_perplexity")
SHAPES = {
    "llama": {**LLAMA, "num_layers": 4, "block_candidates": [["llama", "identity"]] * 4,
              "num_attention_heads": 6, "num_key_value_heads": 2, "hidden_size": 16},
    "gpt2": {**GPT2, "num_layers": 3},
}  # fmt: skip


def make(name: str) -> ElasticForCausalLM:
    torch.manual_seed(0)
    return build_model(ElasticConfig(**SHAPES[name])).eval()


def text(n: int = 3, length: int = 10) -> list[dict[str, torch.Tensor]]:
    """Batches of random tokens, the last row of each padded at the end."""
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        ids = torch.randint(3, VOCAB, (2, length), generator=g)
        mask = torch.ones_like(ids)
        mask[1, -3:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def logits(model: ElasticForCausalLM, arch: Architecture | None = None) -> torch.Tensor:
    batch = text(1)[0]
    with torch.inference_mode(), model.using(arch or model.architecture):
        out = model(**batch).logits
    return out[batch["attention_mask"].bool()]


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_reordering_by_every_score_leaves_the_output_unchanged(name: str) -> None:
    model = make(name)
    before = logits(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    scores = decoder_importance(model, text(), ALL)
    n = model.config.num_layers
    assert reorder_decoder(model, scores) == {"ffn": n, "heads": n, "hidden": 1}
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, weights[k])]
    assert any("ffn.up" in k for k in moved)
    assert any("attention.q" in k for k in moved)
    assert any("embeddings.word" in k for k in moved)
    after = decoder_importance(model, text(), ("ffn", "heads", "hidden"))
    for i, s in after.ffn.items():  # scored again: most important first everywhere
        assert torch.all(s[:-1] >= s[1:] - 1e-6), i
    assert torch.all(after.hidden[:-1] >= after.hidden[1:] - 1e-6)
    assert after.perplexity == pytest.approx(scores.perplexity, rel=1e-5)


def test_reordering_keeps_kv_groups_whole_and_sorts_groups_then_heads() -> None:
    model = make("llama")  # 6 heads on 2 KV heads: groups {0,1,2} and {3,4,5}
    att = decoder_blocks(model)[0].attention
    score = torch.tensor([0.1, 0.2, 0.3, 5.0, 0.0, 1.0])
    q, kv = head_order(att, score)
    assert kv.tolist() == [1, 0]
    assert q.tolist() == [3, 5, 4, 2, 1, 0]
    with pytest.raises(Exception, match="keep every query head with its own KV head"):
        permute_heads(att, torch.tensor([0, 3, 1, 2, 4, 5]), torch.tensor([0, 1]))
    old_q, old_k = att.q.weight.detach().clone(), att.k.weight.detach().clone()
    before = logits(model)
    reorder_decoder(model, DecoderScores(heads={0: score}), dims=["heads"])
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)
    d = att.head_dim
    assert torch.equal(att.k.weight[:d], old_k[d:])  # KV head 1 is now group 0
    assert torch.equal(att.q.weight[:d], old_q[3 * d : 4 * d])  # and its best head comes first
    assert torch.equal(att.q.weight[3 * d : 4 * d], old_q[2 * d : 3 * d])  # group 1 = old group 0, sorted
    scores = decoder_importance(model, text(), ["heads"])  # measured scores, applied to every layer
    reorder_decoder(model, scores, dims=["heads"])
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)
    for heads in decoder_importance(model, text(), ["heads"]).heads.values():
        groups = heads.reshape(2, 3)
        assert groups[0].sum() >= groups[1].sum() - 1e-6  # the group kept by kv_heads=1 is the best
        assert torch.all(groups[:, :-1] >= groups[:, 1:] - 1e-6)


def test_scores_see_a_dead_layer_a_dead_unit_and_a_silent_head() -> None:
    model = make("llama")
    blocks = decoder_blocks(model)
    with torch.no_grad():
        blocks[2].attention.o.weight.zero_()  # layer 2 adds nothing to the residual stream
        blocks[2].ffn.down.weight.zero_()
        blocks[1].ffn.up.weight[4].zero_()  # unit 4 of layer 1 never fires
        blocks[0].attention.v.weight[:4].zero_()  # KV head 0 carries nothing: heads 0, 1, 2 are silent
    scores = decoder_importance(model, text(), ALL)
    assert scores.block is not None
    assert scores.removal_perplexity is not None
    assert float(scores.block[2]) == pytest.approx(0.0, abs=1e-6)
    assert int(scores.block.argmin()) == 2
    assert float(scores.removal_perplexity[2]) == pytest.approx(scores.perplexity, rel=1e-5)
    others = [float(scores.removal_perplexity[i]) for i in (0, 1, 3)]
    assert all(not math.isclose(p, scores.perplexity, rel_tol=1e-4) for p in others)
    assert float(scores.ffn[1][4]) == 0.0
    assert float(scores.ffn[1].min()) == 0.0
    assert torch.all(scores.heads[0][:3] == 0)
    assert torch.all(scores.heads[0][3:] > 0)
    assert scores.hidden is not None
    assert scores.hidden.shape == (16,)
    three = keep_layers(model.architecture, layer_scores(scores, "block"), 3)
    assert [la.is_identity for la in three.layers] == [False, False, True, False]
    by_ppl = keep_layers(model.architecture, layer_scores(scores, "removal_perplexity"), 3)
    weakest = int(scores.removal_perplexity.argmin())  # random layers may even hurt: removal lowers ppl
    assert [la.is_identity for la in by_ppl.layers] == [i == weakest for i in range(4)]


def test_a_dropped_position_gets_no_layer_score() -> None:
    model = make("llama")
    arch = Architecture(hidden=16, layers=(LayerArch("identity"), *model.architecture.layers[1:]))
    extracted = model.extract(arch)
    scores = decoder_importance(extracted, text(), ["block", "removal_perplexity"])
    assert scores.block is not None
    assert scores.block.shape == (3,)
    assert not torch.isnan(scores.block).any()


def test_names_are_checked() -> None:
    model = make("llama")
    with pytest.raises(ConfigError, match="'fisher' is unknown"):
        decoder_importance(model, text(), ["fisher"])
    with pytest.raises(ConfigError, match="'block' is unknown"):
        reorder_decoder(model, DecoderScores(), dims=["block"])
    with pytest.raises(ConfigError, match="was not computed"):
        layer_scores(decoder_importance(model, text(1), ["ffn"]), "block")
    with pytest.raises(ConfigError, match="keep=0"):
        keep_layers(model.architecture, torch.zeros(4), 0)
