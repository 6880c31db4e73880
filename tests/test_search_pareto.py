"""Pareto sets, hypervolume and directions against hand-checked cases."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from elastic_lm.errors import ConfigError
from elastic_lm.search import (
    Constraint,
    Evaluation,
    Objective,
    SearchResult,
    hypervolume,
    make_sampler,
    normalise,
    pareto_mask,
    to_losses,
)
from elastic_lm.search.pareto import crowding_distance, front_mask, nondominated_ranks, spread, step_line
from search_dummy import DummySpace


def test_pareto_mask_2d_keeps_ties_and_drops_dominated() -> None:
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3]])
    assert pareto_mask(points).tolist() == [True, True, False, True, True]


def test_pareto_mask_3d() -> None:
    points = np.array([[1, 1, 9], [1, 9, 1], [9, 1, 1], [2, 2, 9], [1, 1, 1]])
    assert pareto_mask(points).tolist() == [False, False, False, False, True]
    assert pareto_mask(points[:4]).tolist() == [True, True, True, False]


def test_hypervolume_2d_by_hand() -> None:
    # boxes [0.2,1]x[0.6,1] and [0.5,1]x[0.3,1]: 0.8*0.4 + 0.5*0.3 = 0.47
    assert hypervolume(np.array([[0.2, 0.6], [0.5, 0.3]])) == pytest.approx(0.47)


def test_hypervolume_3d_by_hand() -> None:
    assert hypervolume(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(0.125)
    # two boxes of 0.25 overlapping in [0.5,1]^3 (0.125)
    assert hypervolume(np.array([[0, 0.5, 0.5], [0.5, 0, 0.5]])) == pytest.approx(0.375)


def test_hypervolume_ignores_points_beyond_reference() -> None:
    assert hypervolume(np.array([[0.5, 0.5], [0.1, 1.5]])) == pytest.approx(0.25)
    assert hypervolume(np.zeros((0, 2))) == 0.0


def test_maximised_objective_is_negated_and_normalised() -> None:
    losses = to_losses(np.array([[10.0, 0.9]]), ["minimize", "maximize"])
    assert losses.tolist() == [[10.0, -0.9]]
    normed = normalise(losses, [(0.0, 20.0), (0.0, 1.0)], ["minimize", "maximize"])
    assert normed[0].tolist() == pytest.approx([0.5, 0.1])


def _result(rows: list[tuple[float, float]], feasible: list[bool] | None = None) -> SearchResult:
    space = DummySpace()
    objectives = [
        Objective("size", lambda a: 0.0, bounds=(0, 20)),
        Objective("acc", lambda a: 0.0, direction="maximize", bounds=(0, 1)),
    ]
    evaluations = [
        Evaluation(
            number=i,
            arch=space.decode([i % 5, i // 5, 0, 0, 0, 0]),
            metrics={"size": s, "acc": a},
            feasible=True if feasible is None else feasible[i],
        )
        for i, (s, a) in enumerate(rows)
    ]
    return SearchResult(objectives, evaluations)


def test_result_pareto_honours_maximise_and_feasibility() -> None:
    rows = [(10, 0.9), (5, 0.8), (10, 0.7), (20, 0.85), (1, 0.99)]
    result = _result(rows, feasible=[True, True, True, True, False])
    # if "maximize" were ignored, (10, 0.7) would beat (10, 0.9); the infeasible (1, 0.99) is out
    assert [e.number for e in result.pareto()] == [0, 1]
    # normalised losses (0.5, 0.1) and (0.25, 0.2): 0.5*0.9 + (0.5-0.25)*(1-0.2) = 0.65
    assert result.hypervolume() == pytest.approx(0.65)
    history = result.hypervolume_history()
    assert history[0] == pytest.approx(0.45)
    assert history == sorted(history)
    assert history[-1] == history[-2]  # the infeasible evaluation adds nothing


def test_result_exports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _result([(10, 0.9), (5, 0.8), (10, 0.7)])
    text = result.to_csv(tmp_path / "r.csv").read_text().splitlines()
    assert text[0].split(",")[:4] == ["trial", "feasible", "pareto", "cached_from"]
    assert len(text) == 4
    data = json.loads(result.to_json(tmp_path / "r.json").read_text())
    assert [e["pareto"] for e in data["evaluations"]] == [True, True, False]
    assert data["objectives"][1]["direction"] == "maximize"
    assert data["evaluations"][0]["arch"]["hidden"] == 64


def test_ranks_and_crowding() -> None:
    losses = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [5, 5]])
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 1, 2]
    crowd = crowding_distance(losses[:3])
    assert math.isinf(crowd[0])
    assert math.isinf(crowd[2])
    assert crowd[1] == pytest.approx(2.0)  # (4-1)/3 + (4-1)/3


def test_constraint_violation() -> None:
    c = Constraint("params", lambda a: 0.0, max=10, min=2)
    assert [c.violation(v) for v in (1, 2, 10, 12)] == [1, 0, 0, 2]
    assert math.isinf(c.violation(float("nan")))


def test_user_mistakes_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="direction='max'"):
        Objective("acc", lambda a: 0.0, direction="max")
    with pytest.raises(ConfigError, match="give max"):
        Constraint("params", lambda a: 0.0)
    with pytest.raises(ConfigError, match="strategy='bayes' is unknown"):
        make_sampler("bayes", DummySpace())
    with pytest.raises(ConfigError, match="size function"):
        make_sampler("stratified", DummySpace())


# --- raw values with directions (the report's and the exporters' view) ---------------------------


def test_front_mask_honours_directions() -> None:
    points = [(1, 1), (2, 2), (0, 3), (3, 0)]
    assert front_mask(points, ["minimize", "minimize"]) == [True, False, True, True]
    assert front_mask(points, ["maximize", "maximize"]) == [False, True, True, True]
    assert front_mask(points, ["minimize", "maximize"]) == [False, False, True, False]


def test_front_mask_keeps_duplicates_of_a_front_point() -> None:
    assert front_mask([(1, 1), (1, 1), (2, 2)], ["minimize", "minimize"]) == [True, True, False]


def test_spread_spaces_by_value_so_a_lone_member_in_a_gap_is_kept() -> None:
    # a real front (millions of params): seven small members crowd one end, 3.36 sits alone in a gap
    sizes = [0.25, 0.89, 1.49, 1.93, 1.931, 2.38, 2.82, 3.36, 7.55, 8.14, 9.61, 0.59]
    chosen = spread(sizes, lambda v: v, 10)
    assert 3.36 in chosen
    assert len(chosen) == 10
    assert chosen == sorted(chosen)
    assert (chosen[0], chosen[-1]) == (0.25, 9.61)
    assert set(spread(sizes, lambda v: v, 2)) == {0.25, 9.61}
    assert spread(sizes, lambda v: v, 1) == [0.25]
    assert spread(sizes, lambda v: v, None) == sorted(sizes)
    assert spread([{"p": 2}, {"p": 1}], lambda t: t["p"], 5) == [{"p": 1}, {"p": 2}]


def test_spread_keeps_the_largest_gap_as_small_as_the_full_set_allows() -> None:
    # a real covering set (movie sentiment, cpu budget, millions of non-embedding params): the member
    # nearest each of 10 evenly spaced sizes left 8.53 -> 10.21 (1.68); taking 8.78 keeps gaps <= 1.47
    sizes = [0.25, 0.3, 0.4, 0.45, 0.64, 1.05, 1.54, 1.64, 1.64, 2.62, 3.85, 4.84, 6.31, 6.81, 7.54,
             8.53, 8.78, 10.21, 10.8]  # fmt: skip

    def largest_gap(values: list[float]) -> float:
        return max(b - a for a, b in itertools.pairwise(values))

    for k in range(2, len(sizes)):
        chosen = spread(sizes, lambda v: v, k)
        assert len(chosen) == k
        assert (chosen[0], chosen[-1]) == (0.25, 10.8)
        if k >= 10:
            assert largest_gap(chosen) == pytest.approx(largest_gap(sizes))
    assert largest_gap(spread(sizes, lambda v: v, 10)) == pytest.approx(1.47)
    for k in (3, 4, 5):  # the best of every subset with both ends, by brute force
        inner = itertools.combinations(sizes[1:-1], k - 2)
        best = min(largest_gap([sizes[0], *middle, sizes[-1]]) for middle in inner)
        assert largest_gap(spread(sizes, lambda v: v, k)) == pytest.approx(best)


def test_front_mask_rejects_unknown_direction() -> None:
    with pytest.raises(ValueError, match="maximise"):
        front_mask([(1, 2)], ["minimize", "maximise"])


def test_step_line_is_a_staircase_best_first() -> None:
    xs, ys = step_line([(3, 1), (1, 3), (2, 2)], ("minimize", "minimize"))
    assert xs == [1, 2, 2, 3, 3]
    assert ys == [3, 3, 2, 2, 1]
    xs, ys = step_line([(1, 1), (3, 3)], ("maximize", "maximize"))
    assert (xs, ys) == ([3, 1, 1], [3, 3, 1])


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_equals_counted_grid_cells(m: int) -> None:
    """Points on a grid of quarters: the exact volume is the number of dominated cells / 4**m."""
    import itertools

    rng = np.random.default_rng(m)
    points = rng.integers(0, 5, size=(9, m)) / 4  # some on the reference (1.0): no volume
    cells = itertools.product(range(4), repeat=m)
    counted = sum(any(np.all(p <= np.array(c) / 4) for p in points) for c in cells)
    assert hypervolume(points) == pytest.approx(counted / 4**m)
