"""ELM dynamic modules on a 2-layer, 16-wide super-network: PCA widening, CKA head pruning, the
space's choices, AdamW state, logs and resume. Every case is built so the expected decision is known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from elastic_lm.analysis import linear_cka, pca_components
from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.model.feedforward import ElasticFFN
from elastic_lm.space import SearchSpace, preset
from elastic_lm.train.dynamic import DynamicModules, DynamicSettings, dimension_choices, layer_dimension
from elastic_lm.train.resize import grow_ffn, layer_sizes, resize_optimizer_state

VOCAB = 37


def tiny_space() -> SearchSpace:
    return preset(
        "elm",
        layers=2,
        hidden=16,
        heads=4,
        ffn=8,
        ffn_step=4,
        head_step=1,
        blocks=("bert",),
        hidden_choices=(8, 16),
    )


def tiny_model(space: SearchSpace, seed: int = 1):
    config = ElasticConfig.for_supernet(
        space.largest(),
        [space.block_types(i) for i in range(space.num_layers)],
        VOCAB,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=16,
    )
    model = build_model(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # large weights: sharp attention, activations far from linear
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def batches(n: int = 4, seed: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mask = torch.ones(8, 12, dtype=torch.long)
        mask[0, 9:] = 0  # some padding: never sampled
        out.append({"input_ids": torch.randint(0, VOCAB, (8, 12), generator=g), "attention_mask": mask})
    return out


def make_ffn_low_rank(model, layer: int) -> None:
    """Every unit reads the same direction: the activations have rank 1."""
    ffn = model.model.layers[layer]["bert"].ffn
    with torch.no_grad():
        ffn.up.weight.copy_(ffn.up.weight[:1].expand_as(ffn.up.weight))
        ffn.up.bias.zero_()


def logits(model, arch: Architecture | None = None) -> torch.Tensor:
    model.eval()
    if arch is None:
        model.reset()
    else:
        model.set_architecture(arch)
    b = batches(1, seed=9)[0]
    with torch.no_grad():
        return model(**b).logits


WIDEN = {"prune_heads": False, "saturation": 0.8, "increment": 4, "every": 10}


# ---- statistics -----------------------------------------------------------------------------------
def test_pca_counts_components_of_constructed_data() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(10, 10, generator=g))[0]
    low = torch.randn(4000, 3, generator=g) @ basis[:3]  # three equal components in 10 dimensions
    assert pca_components(low, 0.99) == 3
    assert pca_components(torch.randn(4000, 8, generator=g), 0.99) == 8
    assert pca_components(torch.ones(50, 6), 0.99) == 0
    scaled = torch.randn(4000, 2, generator=g) * torch.tensor([10.0, 0.1])  # 99.99% in one direction
    assert pca_components(scaled, 0.99) == 1


def test_linear_cka_hand_value_and_invariances() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])
    # centred: x = (-1, 0, 1), y = (0, -1, 1); CKA = (x.y)^2 / (|x|^2 |y|^2) = 1 / (2 * 2)
    assert linear_cka(x, y) == pytest.approx(0.25)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 5, generator=g), torch.randn(200, 4, generator=g)
    q = torch.linalg.qr(torch.randn(5, 5, generator=g))[0]
    assert linear_cka(a, a @ q * 3.7) == pytest.approx(1.0)
    assert linear_cka(a @ q * 0.2, b) == pytest.approx(linear_cka(a, b))
    assert linear_cka(a, b) < 0.2
    assert linear_cka(a, torch.ones(200, 3)) == 0.0


# ---- widening -------------------------------------------------------------------------------------
def test_saturated_layer_is_widened_low_rank_is_not_and_function_is_unchanged() -> None:
    space = tiny_space()
    model = tiny_model(space)
    make_ffn_low_rank(model, 0)
    full_before = logits(model)
    sub = space.largest()
    sub_before = logits(model, sub)
    dm = DynamicModules(DynamicSettings(**WIDEN))
    adj = dm.maybe_adjust(0, model, space, batches())
    assert adj is not None
    assert [(c.layer, c.what, c.before, c.after) for c in adj.changes] == [(1, "widen-ffn", 8, 12)]
    assert adj.changes[0].value >= 0.8
    assert model.model.layers[0]["bert"].ffn.inner == 8
    ffn1 = model.model.layers[1]["bert"].ffn
    assert ffn1.inner == 12
    assert ffn1.up.weight.shape == (12, 16)
    assert ffn1.down.weight.shape == (16, 12)
    assert torch.count_nonzero(ffn1.down.weight[:, 8:]) == 0
    assert torch.count_nonzero(ffn1.up.weight[8:]) > 0
    assert model.config.intermediate_size == 12
    assert model.config.layer_sizes[0]["bert"]["intermediate_size"] == 8
    assert model.config.layer_sizes[1]["bert"]["intermediate_size"] == 12
    new = adj.space
    assert dimension_choices(new, "layer1.ffn") == (4, 8, 12)
    assert dimension_choices(new, "layer0.ffn") == (4, 8)
    assert new.largest().layers[1].ffn == 12
    torch.testing.assert_close(logits(model), full_before, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits(model, sub), sub_before, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits(model, new.largest()), full_before, rtol=0, atol=1e-5)
    assert dm.maybe_adjust(0, model, new, batches()) is None  # not due twice at one step


def test_budget_stops_growth() -> None:
    space = tiny_space()
    model = tiny_model(space)
    params = sum(p.numel() for p in model.parameters())
    per_layer = 4 * (16 + 1 + 16)  # increment x (up row + bias + down column)
    settings = DynamicSettings(**{**WIDEN, "saturation": 0.7}, max_params=params + per_layer)
    dm = DynamicModules(settings)  # both layers saturated (8/8 and 6/8 components); one fits
    adj = dm.maybe_adjust(0, model, space, batches())
    assert adj is not None
    assert [(c.what, c.layer) for c in adj.changes] == [("widen-ffn", 0), ("widen-skipped", 1)]
    assert sum(p.numel() for p in model.parameters()) == params + per_layer
    grown = next(c for c in adj.changes if c.what == "widen-ffn")
    skipped = next(c for c in adj.changes if c.what == "widen-skipped")
    assert grown.value >= skipped.value  # the most saturated grows first
    assert skipped.before == skipped.after == 8


# ---- head pruning ---------------------------------------------------------------------------------
def copy_head(att, src: int, dst: int) -> None:
    d = att.head_dim
    with torch.no_grad():
        for lin in (att.q, att.k, att.v):
            lin.weight[dst * d : (dst + 1) * d] = lin.weight[src * d : (src + 1) * d]
            lin.bias[dst * d : (dst + 1) * d] = lin.bias[src * d : (src + 1) * d]


def test_duplicate_head_is_removed_distinct_heads_are_kept() -> None:
    space = tiny_space()
    model = tiny_model(space)
    att = model.model.layers[0]["bert"].attention
    copy_head(att, 0, 2)
    one_head = space.decode([0] * len(space.dimensions())).replace_layer(
        0, space.largest().layers[0].__class__("bert", heads=2, ffn=8)
    )
    one_before = logits(model, one_head)  # heads 0, 1: not the removed head 2
    full_before = logits(model)
    dm = DynamicModules(DynamicSettings(widen=False, every=5))
    adj = dm.maybe_adjust(5, model, space, batches())
    assert adj is not None
    assert [
        (c.layer, c.what, c.before, c.after, c.detail["head"], c.detail["same_as"]) for c in adj.changes
    ] == [(0, "remove-head", 4, 3, 2, 0)]
    assert adj.changes[0].value == pytest.approx(1.0, abs=1e-6)
    assert att.max_heads == 3
    assert att.q.weight.shape == (12, 16)
    assert att.o.weight.shape == (16, 12)
    assert model.model.layers[1]["bert"].attention.max_heads == 4
    assert dimension_choices(adj.space, "layer0.heads") == (1, 2, 3)
    assert dimension_choices(adj.space, "layer1.heads") == (1, 2, 3, 4)
    torch.testing.assert_close(logits(model, one_head), one_before, rtol=0, atol=1e-5)
    assert not torch.allclose(logits(model), full_before)  # the full model did use head 2


def test_gqa_head_pruning_is_refused_clearly() -> None:
    space = preset("llama", layers=1, hidden=16, heads=4, kv_heads=2, ffn=8, ffn_step=4)
    config = ElasticConfig.for_supernet(
        space.largest(), [space.block_types(0)], VOCAB, task="causal-lm", head_dim=4, positions="rope"
    )
    model = build_model(config)
    with pytest.raises(ConfigError, match="grouped-query"):
        DynamicModules(DynamicSettings(widen=False)).maybe_adjust(0, model, space, batches(1))


def test_layer_dimension_asks_the_space() -> None:
    space = tiny_space()
    assert layer_dimension(space, 1, "ffn") == "layer1.ffn"
    shared = preset("prune-small", layers=2, hidden=16, heads=4, ffn=8, ffn_step=4)
    assert layer_dimension(shared, 1, "ffn") == layer_dimension(shared, 0, "ffn")
    assert layer_dimension(preset("prune-layer", layers=2, hidden=16, heads=4, ffn=8), 0, "ffn") is None


# ---- optimiser ------------------------------------------------------------------------------------
def test_adamw_state_resize_keeps_old_moments() -> None:
    torch.manual_seed(0)
    ffn = ElasticFFN(6, 4, "gelu", gated=False)
    opt = torch.optim.AdamW(ffn.parameters(), lr=1e-2)
    for _ in range(2):
        ffn(torch.randn(3, 6)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    old_up, old_down = ffn.up.weight, ffn.down.weight
    m_up, v_down = opt.state[old_up]["exp_avg"].clone(), opt.state[old_down]["exp_avg_sq"].clone()
    step = opt.state[old_up]["step"].clone()
    changes = grow_ffn(ffn, 3)
    resize_optimizer_state(opt, changes)
    params = opt.param_groups[0]["params"]
    assert any(p is ffn.up.weight for p in params)
    assert not any(p is old_up for p in params)
    state = opt.state[ffn.up.weight]
    assert torch.equal(state["exp_avg"][:4], m_up)
    assert torch.count_nonzero(state["exp_avg"][4:]) == 0
    down = opt.state[ffn.down.weight]["exp_avg_sq"]
    assert torch.equal(down[:, :4], v_down)
    assert torch.count_nonzero(down[:, 4:]) == 0
    assert torch.equal(state["step"], step)
    ffn(torch.randn(3, 6)).pow(2).sum().backward()
    opt.step()  # shapes agree: no error
    assert torch.count_nonzero(ffn.down.weight[:, 4:]) > 0  # new units learn


# ---- schedule, log, resume ------------------------------------------------------------------------
def test_schedule() -> None:
    dm = DynamicModules(DynamicSettings(every=10, start=20, stop=50))
    assert [s for s in range(70) if dm.due(s)] == [20, 30, 40, 50]
    with pytest.raises(ConfigError, match="unknown"):
        DynamicSettings.from_dict({"evry": 3})


def test_log_state_and_checkpoint_round_trip(tmp_path) -> None:
    space = tiny_space()
    model = tiny_model(space)
    copy_head(model.model.layers[1]["bert"].attention, 1, 3)
    log = tmp_path / "train" / "dynamic.jsonl"
    dm = DynamicModules(DynamicSettings(saturation=0.8, increment=4, every=10), log_path=log)
    opt = torch.optim.AdamW(model.parameters())
    adj = dm.maybe_adjust(10, model, space, batches(), optimizer=opt)
    assert adj is not None
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == len(adj.changes) >= 2
    assert {x["what"] for x in lines} == {"widen-ffn", "remove-head"}
    for x in lines:
        assert x["step"] == 10
        assert {"layer", "block", "before", "after", "value", "choices"} <= set(x)
        assert math.isfinite(x["value"])
    widen = next(x for x in lines if x["what"] == "widen-ffn")
    assert widen["choices"] == [[4, 8], [4, 8, 12]]
    ids = {id(p) for p in model.parameters()}
    assert all(id(p) in ids for g in opt.param_groups for p in g["params"])

    # resume: config + safetensors -> same shapes and outputs; the adjusted space comes back
    arch = adj.space.largest()
    expected = logits(model, arch)
    model.save_pretrained(tmp_path / "ckpt")
    state = json.loads(json.dumps(dm.state_dict()))
    config = ElasticConfig.from_pretrained(tmp_path / "ckpt")
    again = build_model(config)
    missing, unexpected = again.load_state_dict(
        load_file(tmp_path / "ckpt" / "model.safetensors"), strict=False
    )
    assert not unexpected
    assert all("decoder" in k or "tied" in k for k in missing)
    torch.testing.assert_close(logits(again, arch), expected, rtol=0, atol=1e-5)
    with log.open("a") as handle:  # a line written after the checkpoint, before a crash
        handle.write(json.dumps({**lines[0], "step": 20}) + "\n")
    resumed = DynamicModules(dm.settings, log_path=log)
    resumed.load_state_dict(state)
    assert resumed.space == adj.space
    assert resumed.history == dm.history
    assert not resumed.due(10)
    assert len(log.read_text().splitlines()) == len(lines)


def test_checkpoint_loads_without_conform(tmp_path) -> None:
    space = tiny_space()
    model = tiny_model(space)
    DynamicModules(DynamicSettings(**WIDEN)).maybe_adjust(0, model, space, batches())
    model.save_pretrained(tmp_path)
    again = build_model(ElasticConfig.from_pretrained(tmp_path))
    assert layer_sizes(again) == layer_sizes(model)


def test_mobilebert_stack_grows_together_and_keeps_its_function() -> None:
    space = preset(
        "elm", layers=2, hidden=16, heads=4, ffn=8, ffn_step=4, ffn_stack=2, hidden_choices=(8, 16)
    )
    model = tiny_model(space)
    mobile = space.largest()
    mobile = mobile.replace_layer(
        0, mobile.layers[0].__class__("mobilebert", heads=4, ffn=8, bottleneck=8, ffn_stack=2)
    )
    before = logits(model, mobile)
    settings = DynamicSettings(**{**WIDEN, "saturation": 0.01})  # every FFN counts as saturated
    adj = DynamicModules(settings).maybe_adjust(0, model, space, batches(2))
    assert adj is not None
    assert sorted((c.layer, c.block) for c in adj.changes) == [
        (0, "bert"),
        (0, "mobilebert"),
        (1, "bert"),
        (1, "mobilebert"),
    ]
    stack = model.model.layers[0]["mobilebert"].ffns
    assert [f.inner for f in stack] == [12, 12]
    assert model.config.layer_sizes[0]["mobilebert"]["intermediate_size"] == 12
    torch.testing.assert_close(logits(model, mobile), before, rtol=0, atol=1e-5)
    assert dimension_choices(adj.space, "layer0.ffn") == (4, 8, 12)


def test_heads_removed_from_mobilebert_do_not_cap_the_bert_block() -> None:
    """Each block type has its own head dimension: losing MobileBERT heads (random-init blocks often
    look redundant) leaves the inherited BERT block's head choices whole."""
    from elastic_lm.train.dynamic import _adjust_space
    from elastic_lm.train.resize import attentions_at, remove_heads

    space = preset("elm", layers=2, hidden=16, heads=4, ffn=8, ffn_step=4, head_step=1, hidden_choices=(16,))
    model = tiny_model(space)
    assert layer_dimension(space, 0, "heads", "bert") == "layer0.heads"
    assert layer_dimension(space, 0, "heads", "mobilebert") == "layer0.mobile_heads"
    remove_heads(dict(attentions_at(model, 0))["mobilebert"], [1, 2, 3])
    adjusted = _adjust_space(space, model)
    assert dimension_choices(adjusted, "layer0.heads") == (1, 2, 3, 4)
    assert dimension_choices(adjusted, "layer0.mobile_heads") == (1,)
    assert dimension_choices(adjusted, "layer1.mobile_heads") == (1, 2, 3, 4)


def test_saturation_is_relative_to_what_the_sample_can_show() -> None:
    """A full-rank FFN probed with fewer tokens than units still reads as saturated."""
    from elastic_lm.train.dynamic_stats import ModuleStats

    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 300, generator=g)  # 100 tokens, 300 units: rank 99 after centring
    comps = pca_components(x, 0.99)
    few = ModuleStats(0, "bert", "ffn", 300, comps, samples=100)
    assert comps <= 99
    assert few.saturation >= 0.9
    assert ModuleStats(0, "bert", "ffn", 300, comps).saturation < 0.34  # the old reading
    many = ModuleStats(0, "bert", "ffn", 30, 15, samples=100)
    assert many.saturation == 0.5  # enough tokens: relative to the width, as before
