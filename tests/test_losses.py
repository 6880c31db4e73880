from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses import (
    LOSSES,
    CombinedLoss,
    blockwise_loss,
    make_loss,
    standardise_tokens,
    uniform_layer_map,
)
from elastic_lm.train.teacher_cache import TopKLogitCache

B, T, V, H = 2, 5, 11, 6


def out(logits=None, hidden=None, attn=None):
    return SimpleNamespace(logits=logits, hidden_states=hidden, attentions=attn)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed))


def attn_maps(heads, seed=0):
    return rand(B, heads, T, T, seed=seed).softmax(-1)


@pytest.fixture
def batch():
    labels = torch.full((B, T), -100)
    labels[:, 1] = 3
    labels[0, 3] = 7
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, -2:] = 0
    return {"labels": labels, "attention_mask": mask}


def confident(labels, num_classes):
    """Logits that put (almost) all mass on the label: a perfect student."""
    logits = torch.zeros(*labels.shape, num_classes)
    return logits.scatter(-1, labels.clamp_min(0).unsqueeze(-1), 50.0)


def test_uniform_layer_map():
    assert uniform_layer_map(2, 6) == [2, 5]
    assert uniform_layer_map(3, 3) == [0, 1, 2]
    assert uniform_layer_map(4, 2) == [0, 0, 1, 1]


def test_label_losses_zero_for_perfect_student(batch):
    assert make_loss("mlm")(out(confident(batch["labels"], V)), batch) < 1e-6
    clm_batch = {"labels": torch.randint(0, V, (B, T), generator=gen())}
    shifted = confident(torch.roll(clm_batch["labels"], -1, dims=1), V)
    assert make_loss("clm")(out(shifted), clm_batch) < 1e-6
    assert make_loss("clm")(out(confident(clm_batch["labels"], V)), clm_batch) > 1.0  # unshifted
    cls = {"labels": torch.tensor([1, 0])}
    assert make_loss("classification")(out(confident(cls["labels"], 3)), cls) < 1e-6
    reg = {"labels": torch.tensor([0.5, -1.0])}
    assert make_loss("regression")(out(torch.tensor([[0.5], [-1.0]])), reg) == 0.0


def test_mlm_ignores_unlabelled_positions(batch):
    logits = rand(B, T, V)
    changed = logits.clone()
    changed[:, 0] += 10 * rand(B, V, seed=1)  # position 0 carries no label
    loss = make_loss("mlm")
    assert torch.allclose(loss(out(logits), batch), loss(out(changed), batch))


def test_label_losses_are_zero_not_nan_without_labels():
    logits = rand(B, T, V).requires_grad_()
    empty = {"labels": torch.full((B, T), -100)}
    value = make_loss("mlm")(out(logits), empty)
    assert value.item() == 0.0
    value.backward()
    assert torch.all(logits.grad == 0)


def teacher_outputs(heads=4, n_layers=4, width=H):
    hidden = tuple(rand(B, T, width, seed=10 + i) for i in range(n_layers))
    attn = tuple(attn_maps(heads, seed=20 + i) for i in range(n_layers))
    return out(rand(B, T, V, seed=5), hidden, attn)


@pytest.mark.parametrize("name", ["logit-kd", "hidden", "attention", "relational"])
def test_distillation_zero_when_student_equals_teacher(name, batch):
    teacher = teacher_outputs()
    assert make_loss(name)(teacher, batch, teacher).abs() < 1e-4


def test_topk_kd_zero_when_equal_and_full_kl_when_k_is_vocab(batch, tmp_path):
    logits = rand(B, T, V, seed=5)
    cache = TopKLogitCache(tmp_path, k=V)
    cache.write(0, logits)
    cached = cache.attach(0, batch)
    topk = make_loss("topk-kd", temperature=2.0)
    assert topk(out(logits), cached) < 1e-5
    student = out(rand(B, T, V, seed=6))
    full = make_loss("logit-kd", temperature=2.0)(student, batch, out(logits))
    assert torch.allclose(topk(student, cached), full, atol=1e-5)
    with pytest.raises(DataError, match="teacher_topk_values"):
        topk(student, batch)


def test_logit_kd_is_mask_aware_and_scaled_by_t_squared(batch):
    teacher, student = out(rand(B, T, V, seed=5)), out(rand(B, T, V, seed=6))
    changed = student.logits.clone()
    changed[1, -1] += 100.0  # a padded position
    kd = make_loss("logit-kd")
    assert torch.allclose(kd(student, batch, teacher), kd(out(changed), batch, teacher))
    hot = make_loss("logit-kd", temperature=4.0)
    soft = torch.nn.functional.kl_div(
        (student.logits / 4).log_softmax(-1),
        (teacher.logits / 4).log_softmax(-1),
        log_target=True,
        reduction="none",
    ).sum(-1)
    m = batch["attention_mask"].float()
    expected = (soft * m).sum() / m.sum() * 16
    assert torch.allclose(hot(student, batch, teacher), expected, atol=1e-5)


def test_relational_invariant_to_per_channel_scale_and_shift(batch):
    teacher = teacher_outputs()
    student = out(hidden=tuple(rand(B, T, H, seed=30 + i) for i in range(4)))
    scale = torch.rand(H, generator=gen(1)) * 5 + 0.1
    shift = rand(H, seed=2) * 10
    moved = out(hidden=tuple(h * scale + shift for h in student.hidden_states))
    rel = make_loss("relational")
    a, b = rel(student, batch, teacher), rel(moved, batch, teacher)
    assert a > 0.5
    assert torch.allclose(a, b, atol=1e-4)
    assert rel(out(hidden=tuple(-h for h in teacher.hidden_states)), batch, teacher) > 1.9


def test_standardise_tokens_ignores_padding(batch):
    x = rand(B, T, H)
    z = standardise_tokens(x, batch["attention_mask"].float(), eps=0.0)
    valid = z[1, :-2]
    assert torch.allclose(valid.mean(0), torch.zeros(H), atol=1e-5)
    assert torch.allclose(valid.pow(2).mean(0), torch.ones(H), atol=1e-4)
    assert torch.all(z[1, -2:] == 0)


class ToyStudent(nn.Module):
    """Two 'layers' of width ``width``, logits over V, and attention maps with 2 heads."""

    def __init__(self, width):
        super().__init__()
        self.inputs = rand(B, T, 4, seed=40)
        self.layers = nn.ModuleList([nn.Linear(4, width), nn.Linear(width, width)])
        self.head = nn.Linear(width, V)
        self.attn = nn.Parameter(torch.zeros(2, 2, T, T))

    def forward(self):
        h1 = self.layers[0](self.inputs)
        h2 = self.layers[1](torch.tanh(h1))
        attn = tuple(a.expand(B, -1, -1, -1).softmax(-1) for a in self.attn)
        return out(self.head(h2), (h1, h2), attn)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "mlm"},
        {"name": "logit-kd", "temperature": 2.0},
        {"name": "hidden"},
        {"name": "attention"},
        {"name": "relational"},
    ],
)
def test_losses_decrease_under_optimisation(spec, batch):
    torch.manual_seed(0)
    student = ToyStudent(width=4)  # narrower and shallower than the teacher: projections + map
    target = "labels" if spec["name"] == "mlm" else "teacher"
    loss = CombinedLoss([spec | {"when": [target]}], n_student_layers=2, student_width=4, teacher_width=H)
    params = list(student.parameters()) + list(loss.parameters())
    if spec["name"] in ("hidden", "relational"):
        assert len(list(loss.parameters())) == 4  # one projection (weight, bias) per student layer
    optimiser = torch.optim.Adam(params, lr=0.05)
    teacher = teacher_outputs()
    values = []
    for _ in range(30):
        total, _ = loss(student(), batch, teacher, target=target)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        values.append(total.item())
    assert values[-1] < 0.7 * values[0]


def test_narrow_student_without_projection_meets_teacher_first_channels(batch):
    teacher = teacher_outputs()
    student = out(hidden=tuple(h[..., :3] for h in teacher.hidden_states))
    assert make_loss("hidden")(student, batch, teacher) < 1e-6
    wide = out(hidden=tuple(torch.cat([h, h], -1) for h in teacher.hidden_states))
    with pytest.raises(ConfigError, match="student width 12"):
        make_loss("hidden")(wide, batch, teacher)


def test_attention_averages_heads_when_counts_differ(batch):
    teacher = teacher_outputs(heads=4)
    mean_maps = tuple(a.mean(1, keepdim=True).expand(-1, 2, -1, -1) for a in teacher.attentions)
    assert make_loss("attention")(out(attn=mean_maps), batch, teacher) < 1e-5
    other = tuple(attn_maps(2, seed=3) for _ in teacher.attentions)
    assert make_loss("attention")(out(attn=other), batch, teacher) > 1e-3


def test_dropped_layers_are_skipped(batch):
    teacher = teacher_outputs(n_layers=2)
    student = out(hidden=(None, teacher.hidden_states[1]))
    assert make_loss("hidden")(student, batch, teacher) < 1e-6
    with pytest.raises(DataError, match="all layers dropped"):
        make_loss("hidden")(out(hidden=(None, None)), batch, teacher)


def test_blockwise_gradients_stay_in_their_block():
    # teacher states that carry grad, so a missing detach would show
    teacher_hidden = [rand(B, T, H, seed=50 + i).requires_grad_() for i in range(4)]
    blocks = nn.ModuleList([nn.Linear(H, H) for _ in range(3)])
    seen = []

    def student_layer(i, hidden, mask):
        seen.append((i, hidden))
        return blocks[i](hidden)

    total, parts = blockwise_loss(student_layer, teacher_hidden)
    assert len(parts) == 3
    assert torch.allclose(total, torch.stack(parts).mean())
    for i, hidden in seen:
        assert torch.equal(hidden, teacher_hidden[i])
        assert not hidden.requires_grad
    for i, part in enumerate(parts):
        grads = torch.autograd.grad(part, list(blocks.parameters()), allow_unused=True)
        for j in range(3):
            w, b = grads[2 * j], grads[2 * j + 1]
            touched = w is not None and bool(w.abs().sum() > 0)
            assert touched == (i == j)
            assert (b is not None and bool(b.abs().sum() > 0)) == (i == j)


def test_blockwise_with_shallower_student_uses_layer_map():
    teacher_hidden = [rand(B, T, H, seed=60 + i) for i in range(5)]  # embeddings + 4 blocks
    pairs = []

    def student_layer(i, hidden, mask):
        pairs.append(hidden)
        return hidden  # identity student: loss = distance from input to target

    _, parts = blockwise_loss(student_layer, teacher_hidden, n_student_blocks=2)
    assert torch.equal(pairs[0], teacher_hidden[0])
    assert torch.equal(pairs[1], teacher_hidden[2])  # block 0 covered teacher blocks 0..1
    expected = (teacher_hidden[2] - teacher_hidden[0]).pow(2).mean()
    assert torch.allclose(parts[0], expected)


def test_combined_weights_and_parts(batch):
    teacher = teacher_outputs()
    student = out(
        rand(B, T, V, seed=7).requires_grad_(),
        tuple(rand(B, T, H, seed=70 + i) for i in range(4)),
    )
    spec = [
        {"name": "mlm", "weight": 0.5},
        {"name": "relational", "weight": 2.0},
        {"name": "logit-kd", "weight": 3.0, "temperature": 2.0, "label": "kd"},
    ]
    loss = CombinedLoss(spec)
    total, parts = loss(student, batch, teacher, target="teacher")
    assert set(parts) == {"mlm", "relational", "kd"}
    expected = 0.5 * parts["mlm"] + 2.0 * parts["relational"] + 3.0 * parts["kd"]
    assert torch.allclose(total, expected)
    assert total.requires_grad
    assert not parts["mlm"].requires_grad
    total, parts = loss(student, batch, None, target="labels")  # no teacher: label losses only
    assert set(parts) == {"mlm"}
    assert torch.allclose(total, 0.5 * parts["mlm"])


def test_combined_config_errors(batch):
    with pytest.raises(ConfigError, match="'mlmm'"):
        CombinedLoss([{"name": "mlmm"}])
    with pytest.raises(ConfigError, match="temprature"):
        CombinedLoss([{"name": "logit-kd", "temprature": 2}])
    with pytest.raises(ConfigError, match="used twice"):
        CombinedLoss([{"name": "mlm"}, {"name": "mlm"}])
    with pytest.raises(ConfigError, match="needs a teacher"):
        CombinedLoss([{"name": "hidden", "when": ["labels"]}])
    with pytest.raises(ConfigError, match="no loss applies"):
        CombinedLoss([{"name": "hidden"}])(out(), batch, None, target="labels")
    with pytest.raises(DataError, match="output_hidden_states"):
        make_loss("hidden")(out(), batch, out())
    assert set(LOSSES) >= {"mlm", "clm", "classification", "regression", "relational"}


def test_cache_round_trip_and_resume(tmp_path):
    logits = rand(3, T, V)
    cache = TopKLogitCache(tmp_path / "c", k=4)
    ran = cache.fill(lambda b: b["logits"], [{"logits": logits, "example_ids": torch.arange(3)}])
    assert ran == 1
    reopened = TopKLogitCache(tmp_path / "c")
    assert reopened.k == 4
    got = reopened.read(0)
    values, indices = logits.topk(4, dim=-1)
    assert torch.equal(got["values"], values)
    assert torch.equal(got["indices"], indices)
    assert got["indices"].dtype == torch.int64
    assert torch.equal(got["example_ids"], torch.arange(3))
    assert reopened.fill(lambda b: 1 / 0, [{"logits": logits}]) == 0  # cached: teacher not run
    assert reopened.indices() == [0]
    with pytest.raises(ConfigError, match="k=4"):
        TopKLogitCache(tmp_path / "c", k=8)


def test_cache_half_precision_is_close(tmp_path):
    logits = rand(2, T, V)
    cache = TopKLogitCache(tmp_path, k=3)
    cache.write(5, logits, dtype=torch.float16)
    assert 5 in cache
    assert torch.allclose(cache.read(5)["values"], logits.topk(3, dim=-1).values, atol=1e-2)


def test_blockwise_loss_of_a_subnetwork_without_layers_is_zero() -> None:
    states = [torch.randn(2, 3, 4) for _ in range(3)]
    total, parts = blockwise_loss(lambda i, h, m: h, states, n_student_blocks=0)
    assert float(total) == 0.0
    assert parts == []
