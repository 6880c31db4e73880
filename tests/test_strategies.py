from __future__ import annotations

import json

import pytest

from dummy_train_space import DummySpace, size
from elastic_lm.errors import ConfigError
from elastic_lm.train.strategies import (
    STRATEGIES,
    ProgressiveShrinkingStrategy,
    make_strategy,
    step_rng,
)


@pytest.fixture
def space() -> DummySpace:
    return DummySpace(n_layers=3)


def keys(tasks):
    return [t.arch.key() for t in tasks]


def test_standard_runs_only_largest(space):
    tasks = make_strategy("standard", space)(5)
    assert keys(tasks) == [space.largest().key()]
    assert tasks[0].target == "labels"


def test_random_differs_across_steps_and_repeats_per_step(space):
    s = make_strategy("random", space, seed=3)
    picks = {s(step)[0].arch.key() for step in range(20)}
    assert len(picks) > 5
    assert keys(s(7)) == keys(make_strategy("random", space, seed=3)(7))
    other = make_strategy("random", space, seed=4)
    assert [keys(s(k)) for k in range(5)] != [keys(other(k)) for k in range(5)]


def test_sandwich_runs_largest_random_and_smallest(space):
    tasks = make_strategy("sandwich", space, n_random=2, seed=1)(0)
    assert [t.role for t in tasks] == ["largest", "random", "random", "smallest"]
    assert tasks[0].arch == space.largest()
    assert tasks[-1].arch == space.smallest()
    assert all(t.target == "labels" for t in tasks)


def test_sandwich_random_members_change_across_steps(space):
    s = make_strategy("sandwich", space, n_random=1, seed=2)
    middles = {s(step)[1].arch.key() for step in range(20)}
    assert len(middles) > 5
    assert {s(step)[0].arch for step in range(20)} == {space.largest()}


def test_sandwich_can_sample_uniformly_narrower_members_and_is_unchanged_when_off():
    from elastic_lm.space import preset

    elm = preset("elm", layers=3, hidden=16, heads=4, ffn=16, ffn_step=4, blocks=["bert"])
    uniform = make_strategy("sandwich", elm, n_random=1, uniform_random=1.0, seed=5)
    middles = [uniform(step)[1].arch for step in range(30)]
    for arch in middles:  # every layer kept, all alike, never the largest itself
        assert all(layer.block == "bert" for layer in arch.layers)
        assert len({(layer.heads, layer.ffn) for layer in arch.layers}) == 1
        assert arch != elm.largest()
    assert len({a.key() for a in middles}) > 3
    assert keys(uniform(7)) == keys(make_strategy("sandwich", elm, n_random=1, uniform_random=1.0, seed=5)(7))
    plain = make_strategy("sandwich", elm, n_random=1, seed=5)
    off = make_strategy("sandwich", elm, n_random=1, uniform_random=0.0, seed=5)
    assert [keys(plain(k)) for k in range(10)] == [keys(off(k)) for k in range(10)]
    with pytest.raises(ConfigError, match=r"uniform_random=1\.5"):
        make_strategy("sandwich", elm, uniform_random=1.5)


def test_inplace_distill_teaches_from_largest(space):
    tasks = make_strategy("inplace-distill", space, n_random=1)(4)
    assert tasks[0].arch == space.largest()
    assert tasks[0].keep_outputs
    assert tasks[0].target == "labels"
    assert [t.target for t in tasks[1:]] == ["largest", "largest"]
    assert tasks[-1].arch == space.smallest()
    assert not any(t.keep_outputs for t in tasks[1:])


def test_binned_covers_all_size_bins(space):
    s = make_strategy("binned", space, size_fn=size, n_bins=3, n_per_step=2, seed=0)
    sizes = sorted(size(t.arch) for step in range(30) for t in s(step))
    assert len(s(0)) == 2
    assert sizes[0] < sizes[len(sizes) // 2] < sizes[-1]


def test_same_seed_gives_same_tasks_like_ddp_ranks(space):
    for name in ("random", "sandwich", "inplace-distill"):
        rank0, rank1 = make_strategy(name, space, seed=11), make_strategy(name, space, seed=11)
        assert [keys(rank0(s)) for s in range(5)] == [keys(rank1(s)) for s in range(5)]


def test_step_rng_is_pure():
    assert step_rng(1, 2).random() == step_rng(1, 2).random()
    assert step_rng(1, 2).random() != step_rng(1, 3).random()


def make_ps(space, scores=None, **kw):
    def score(arch):
        return scores[arch.key()] if scores is not None else -size(arch)

    defaults = {"size_fn": size, "score_fn": score, "n_candidates": 16, "n_bins": 2}
    return ProgressiveShrinkingStrategy(space, **(defaults | kw))


def test_progressive_shrinking_drops_worse_half_per_bin(space):
    ps = make_ps(space, shrink_at=[10])
    before = [list(b) for b in ps.bins]
    assert sum(map(len, before)) == 18  # 16 sampled + smallest + largest
    ps(9)
    assert ps.bins == before  # nothing dropped before the shrink step
    ps(10)
    for old, new in zip(before, ps.bins, strict=True):
        assert len(new) == len(old) - len(old) // 2
        # score = -size: the larger half of each bin is the better half
        best = sorted(old, key=size, reverse=True)[: len(new)]
        assert {a.key() for a in new} == {a.key() for a in best}
    survivors = {a.key() for a in ps.candidates}
    assert all(t.arch.key() in survivors for s in range(11, 40) for t in ps(s))


def test_progressive_shrinking_stops_at_floor(space):
    ps = make_ps(space, shrink_at=[1, 2, 3, 4, 5, 6, 7], min_per_bin=2)
    ps(7)
    assert [len(b) for b in ps.bins] == [2, 2]
    assert ps.done == [1, 2, 3, 4, 5, 6, 7]


def test_progressive_shrinking_state_round_trip(space):
    ps = make_ps(space, shrink_at=[3])
    for s in range(5):
        ps(s)
    state = json.loads(json.dumps(ps.state_dict()))  # checkpoints may store it as JSON
    fresh = make_ps(space, shrink_at=[3], seed=99)
    fresh.load_state_dict(state)
    assert fresh.bins == ps.bins
    assert [keys(fresh(s)) for s in range(5, 12)] == [keys(ps(s)) for s in range(5, 12)]


@pytest.mark.parametrize("name", ["random", "sandwich", "binned"])
def test_state_round_trip_reproduces_next_choices(space, name):
    kw = {"size_fn": size} if name == "binned" else {}
    a = make_strategy(name, space, seed=5, **kw)
    b = make_strategy(name, space, seed=0, **kw)
    b.load_state_dict(a.state_dict())
    assert [keys(a(s)) for s in range(3, 8)] == [keys(b(s)) for s in range(3, 8)]


def test_registry_names_and_errors(space):
    assert set(STRATEGIES) == {
        "standard",
        "random",
        "sandwich",
        "inplace-distill",
        "progressive-shrinking",
        "binned",
    }
    with pytest.raises(ConfigError, match=r"train\.strategy='sandwhich'"):
        make_strategy("sandwhich", space)
    with pytest.raises(ConfigError, match="n_randm"):
        make_strategy("sandwich", space, n_randm=2)
    with pytest.raises(ConfigError, match="size_fn"):
        make_strategy("binned", space)
    with pytest.raises(ConfigError, match=r"target='teachr'"):
        make_strategy("random", space, target="teachr")
    with pytest.raises(ConfigError, match="does not match"):
        make_strategy("random", space).load_state_dict({"strategy": "sandwich", "seed": 0})
