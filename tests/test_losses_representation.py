"""Representation distillation: pooled-embedding and MiniLM-v2 relation losses, and the inherited
super-network whose largest member is the teacher before any training."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertModel

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.convert import from_hf
from elastic_lm.errors import ConfigError
from elastic_lm.space import preset
from elastic_lm.teacher import load_teacher
from elastic_lm.train.losses import LOSSES, CombinedLoss, make_loss
from elastic_lm.train.representation import attention_relations, mean_pooled

B, T, H = 3, 7, 16


def states(seed: int, width: int = H) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, T, width, generator=g) for _ in range(3))


def mask() -> torch.Tensor:
    m = torch.ones(B, T, dtype=torch.long)
    m[1, 4:] = 0
    return m


def out(hidden):
    return SimpleNamespace(hidden_states=hidden, logits=None, attentions=None)


def test_registered():
    assert {"embedding", "minilm-relation"} <= set(LOSSES)


@pytest.mark.parametrize("metric", ["cosine", "mse"])
def test_embedding_zero_for_identical_positive_otherwise_and_grad_flows(metric):
    loss = make_loss("embedding", metric=metric)
    t = states(0)
    batch = {"attention_mask": mask()}
    assert float(loss(out(t), batch, out(t))) == pytest.approx(0.0, abs=1e-6)
    s = [x.clone().requires_grad_() for x in states(1)]
    value = loss(out(tuple(s)), batch, out(t))
    assert float(value.detach()) > 0.1
    value.backward()
    assert s[-1].grad is not None
    assert s[-1].grad.abs().sum() > 0
    assert s[0].grad is None  # only the last hidden state is pooled


def test_embedding_ignores_padding_and_scale():
    loss = make_loss("embedding")
    t = states(0)
    s = [x.clone() for x in t]
    s[-1][1, 5:] = 100.0  # padded positions of sequence 1
    s[-1] *= 3.0  # the pooled vector is normalised: scale does not matter
    assert float(loss(out(tuple(s)), {"attention_mask": mask()}, out(t))) == pytest.approx(0.0, abs=1e-6)
    # the same positions count when there is no mask
    assert float(loss(out(tuple(s)), {}, out(t))) > 1e-3


def test_embedding_narrow_student_meets_teacher_first_channels():
    loss = make_loss("embedding")
    t = states(0)
    s = tuple(x[..., :8] for x in t)
    assert float(loss(out(s), {}, out(t))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="exceeds"):
        loss(out(t), {}, out(s))


def test_embedding_unknown_metric():
    with pytest.raises(ConfigError, match="cosine"):
        make_loss("embedding", metric="l1")


def test_mean_pooled_matches_manual():
    h = states(2)[0]
    m = mask()
    manual = h[1, :4].mean(0)
    assert torch.allclose(mean_pooled(h, m)[1], manual / manual.norm(), atol=1e-6)


def test_relations_are_distributions_over_real_keys():
    x = states(3)[0]
    rel = attention_relations(x, mask(), 4).exp()
    assert rel.shape == (B, 4, T, T)
    assert torch.allclose(rel.sum(-1), torch.ones(B, 4, T), atol=1e-5)
    assert float(rel[1, :, :, 4:].abs().max()) == 0.0  # padded keys get no weight
    with pytest.raises(ConfigError, match="relation_heads"):
        attention_relations(x[..., :2], None, 4)


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=0.3,  # sharper relations than the default 0.02
    )  # fmt: skip
    return BertModel(cfg).eval()


def ids_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 50, (B, T), generator=g), "attention_mask": mask()}


def test_minilm_relation_zero_for_identical_positive_for_a_subnetwork_and_grad_flows():
    teacher = from_hf(tiny_bert(), task="masked-lm").eval()
    student = copy.deepcopy(teacher)
    losses = CombinedLoss([{"name": "minilm-relation", "relation_heads": 4}])
    losses.attach(student, teacher)
    batch = ids_batch()
    with torch.no_grad():
        t_out = teacher(**batch)
    s_out = student(**batch)
    total, _parts = losses(s_out, batch, t_out, target="teacher")
    assert float(total.detach()) == pytest.approx(0.0, abs=1e-6)
    # one layer, two heads: relations still compare (T x T), and differ from the teacher's
    first = dataclasses.replace(student.architecture.layers[0], heads=2, kv_heads=2)
    small = Architecture(hidden=16, layers=(first, LayerArch(block="identity")))
    student.set_architecture(small)
    total, _ = losses(student(**batch), batch, t_out, target="teacher")
    assert float(total.detach()) > 1e-3
    total.backward()
    grad = student.model.layers[0].bert.attention.q.weight.grad
    assert grad is not None
    assert grad.abs().sum() > 0


def test_minilm_relation_needs_attach():
    with pytest.raises(ConfigError, match="attach"):
        make_loss("minilm-relation")(None, {}, None)


def test_minilm_relation_ignores_layers_run_one_by_one():
    """Block-wise distillation runs layers outside the model's forward: relations keep the last full
    forward's projections."""
    teacher = from_hf(tiny_bert(), task="masked-lm").eval()
    student = copy.deepcopy(teacher)
    loss = make_loss("minilm-relation", relation_heads=4)
    loss.attach(student, teacher)
    batch = ids_batch()
    with torch.no_grad():
        t_out = teacher(**batch)
        s_out = student(**batch)
        student.backbone.forward_layer(0, torch.randn(B, T, 16), batch["attention_mask"])
    assert float(loss(s_out, batch, t_out)) == pytest.approx(0.0, abs=1e-6)


def test_inherited_supernet_largest_reproduces_the_teacher(tmp_path):
    """The representation path's premise: before any training the largest sub-network (BERT blocks
    last in the ELM space) is the shipped teacher, last hidden states within 1e-5."""
    tiny_bert(3).save_pretrained(tmp_path / "bert")
    space = preset("elm", layers=2, hidden=16, heads=4, ffn=32, head_step=2, ffn_step=16,
                   blocks=("mobilebert", "bert"), hidden_choices=[16])  # fmt: skip
    model = from_hf(tmp_path / "bert", task="masked-lm", space=space, seed=0).eval()
    teacher = load_teacher(tmp_path / "bert", "masked-lm")
    batch = ids_batch(1)
    with torch.no_grad(), model.using(space.largest()):
        ours = model(**batch, output_hidden_states=True).hidden_states[-1]
    with torch.no_grad():
        theirs = teacher(**batch, output_hidden_states=True).hidden_states[-1]
    keep = batch["attention_mask"].bool()
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-5)
    assert all(layer.block == "bert" for layer in space.largest().layers)


def test_shrinking_scores_by_embedding_agreement_on_the_representation_path(tmp_path):
    """Progressive shrinking scores sub-networks by 1 - cosine to the teacher when no head is
    trained: 0 for the largest (the teacher), more for a one-layer member."""
    from elastic_lm.train.build import subnet_score_fn

    tiny_bert(3).save_pretrained(tmp_path / "bert")
    space = preset("elm", layers=2, hidden=16, heads=4, ffn=32, head_step=2, ffn_step=16,
                   blocks=("mobilebert", "bert"), hidden_choices=[16])  # fmt: skip
    model = from_hf(tmp_path / "bert", task="masked-lm", space=space, seed=0)
    teacher = load_teacher(tmp_path / "bert", "masked-lm")
    batch = ids_batch(2)
    batch["labels"] = torch.full_like(batch["input_ids"], -100)
    score = subnet_score_fn(model, [batch], teacher)
    assert score(space.largest()) == pytest.approx(0.0, abs=1e-5)
    assert score(space.smallest()) > 1e-3
