"""The exported set covers the size range: full model always in, gaps filled, design spread over bins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.config.loading import validate_config
from elastic_lm.metrics.size import count_params
from elastic_lm.model import ElasticConfig
from elastic_lm.prune import run_prune
from elastic_lm.prune.coverage import (
    accuracy_half_width,
    binned_design,
    covering_front,
    front_gaps,
    tied_members,
    uniform_design,
)
from elastic_lm.prune.parts import pareto_members, thinning_warning
from elastic_lm.space import preset
from prune_fixtures import prune_config

SPACE = preset("prune-small", layers=6, hidden=384, heads=12, ffn=1536)
CONFIG = ElasticConfig(num_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536)


def size(arch: Architecture) -> float:
    return float(count_params(CONFIG, arch, include_embeddings=False))


def trial(number: int, arch: Architecture, quality: float, params: float | None = None) -> dict[str, Any]:
    return {
        "number": number,
        "architecture": arch.to_dict(),
        "metrics": {"params_nonembedding": size(arch) if params is None else params, "val_accuracy": quality},
        "feasible": True,
        "state": "COMPLETE",
    }


def test_binned_design_has_one_member_per_size_bin_up_to_the_top() -> None:
    design = binned_design(SPACE, size, bins=10, seed=0)
    low, high = size(SPACE.smallest()), size(SPACE.largest())
    shares = sorted((size(a) - low) / (high - low) for a in design)
    bins = {min(int(s * 10), 9) for s in shares}
    assert len(bins) == len(design) >= 9  # distinct bins, nearly all of them
    assert shares[-1] >= 0.9  # a member near the full model
    assert binned_design(SPACE, size, bins=10, seed=0) == design  # seeded


def test_the_uniform_design_is_the_hand_made_narrower_model_at_each_share() -> None:
    space = preset(
        "elm", layers=6, hidden=384, heads=12, ffn=1536, blocks=["bert"], head_step=2, ffn_step=256
    )
    full = size(space.largest())
    design = uniform_design(space, size, [0.25, 0.5, 0.75])
    widths = [{(layer.block, layer.heads, layer.ffn) for layer in arch.layers} for arch in design]
    assert widths == [{("bert", 2, 256)}, {("bert", 6, 512)}, {("bert", 8, 1024)}]  # every layer alike
    assert [size(a) / full for a in design] == pytest.approx([0.178, 0.425, 0.671], abs=1e-3)
    # 6 heads x 768 units (ratios 0.5 / 0.5) is 0.51 of the size here: over the half-size budget
    over = Architecture(hidden=384, layers=(LayerArch("bert", heads=6, ffn=768),) * 6)
    assert size(over) > 0.5 * full
    assert uniform_design(space, size, []) == []
    assert uniform_design(space, size, [0.01]) == []  # nothing that small keeps every layer


def test_a_front_always_contains_the_full_architecture() -> None:
    full, small = SPACE.largest(), SPACE.smallest()
    middle = SPACE.middle()
    trials = [trial(0, small, 0.6), trial(1, full, 0.80), trial(2, middle, 0.85)]  # the middle dominates full
    out = covering_front(trials, [0, 2], "params_nonembedding", "val_accuracy", True, full.key())
    assert 1 in out
    assert out[0] == 0  # sorted by size: smallest first, full last
    assert out[-1] == 1


def test_gaps_wider_than_the_limit_are_filled_with_the_best_member_inside() -> None:
    rng_archs = binned_design(SPACE, size, bins=10, seed=1)
    full, small = SPACE.largest(), SPACE.smallest()
    trials = [trial(0, small, 0.5), trial(1, full, 0.9)]
    trials += [trial(10 + i, a, 0.6 + 0.02 * i) for i, a in enumerate(rng_archs)]
    # a worse duplicate-size member next to each design member: the better one must be chosen
    trials += [trial(100 + i, a, 0.1) for i, a in enumerate(rng_archs)]
    out = covering_front(trials, [0, 1], "params_nonembedding", "val_accuracy", True, full.key())
    sizes = [next(t for t in trials if t["number"] == n)["metrics"]["params_nonembedding"] for n in out]
    gaps = front_gaps(sizes, size(full))
    assert gaps["front_top_share"] == 1.0
    assert gaps["front_max_gap"] <= 0.15
    assert not any(n >= 100 for n in out)  # the worse twin of a chosen size is never picked
    # with the limit at 1 nothing is filled: the front and the full model only
    assert covering_front(trials, [0, 1], "params_nonembedding", "val_accuracy", True, full.key(), 1.0) == [
        0,
        1,
    ]


def test_front_gaps_measures_top_share_and_widest_gap() -> None:
    assert front_gaps([10.0, 40.0, 90.0], 100.0) == {"front_top_share": 0.9, "front_max_gap": 50 / 90}


def test_a_prune_run_exports_the_full_model_and_the_design(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
    raw = prune_config(tmp_path, search__trials=12)
    config = validate_config(raw)
    run_prune(config, until="search")
    trials = json.loads((Path(config.run_dir) / "search" / "trials.json").read_text())
    summary = json.loads((Path(config.run_dir) / "search" / "summary.json").read_text())
    full = max(t["metrics"]["params_nonembedding"] for t in trials)
    by_number = {t["number"]: t for t in trials}
    exported = [by_number[n]["metrics"]["params_nonembedding"] for n in summary["exported"]]
    assert max(exported) == full
    assert set(summary["pareto"]) <= set(summary["exported"])
    assert not set(summary["tied"]) & set(summary["exported"])  # tied members come on top of the covering set
    # the first trials are the smallest, the largest, the middle, then the size bins (12 // 2 - 3 = 3)
    assert len({round(t["metrics"]["params_nonembedding"]) for t in trials[:6]}) == 6


def test_members_validation_cannot_tell_apart_are_tied_to_the_best_of_their_size() -> None:
    arch = SPACE.largest()
    trials = [
        trial(0, arch, 0.60, params=0.0),
        trial(1, arch, 0.90, params=50.0),  # chosen
        trial(2, arch, 0.89, params=52.0),  # one point below, same size: tied on 200 rows
        trial(3, arch, 0.60, params=51.0),  # far below: not tied
        trial(4, arch, 0.89, params=70.0),  # as good, but 20 % of the range away from any chosen member
        trial(5, arch, 0.91, params=100.0),  # chosen
        trial(6, arch, 0.88, params=98.0),  # tied with trial 5
    ]
    assert accuracy_half_width(0.9, 200) == pytest.approx(1.96 * (0.09 / 200) ** 0.5)
    assert tied_members(trials, [0, 1, 5], "params_nonembedding", "val_accuracy", rows=200) == [2, 6]
    # with a hundred times the rows the intervals shrink and nothing is tied
    assert tied_members(trials, [0, 1, 5], "params_nonembedding", "val_accuracy", rows=20000) == []


def test_export_fills_the_room_left_by_the_front_with_tied_members(tmp_path: Path) -> None:
    arch = SPACE.largest()
    trials = [
        trial(n, arch, q, params=p) for n, q, p in [(0, 0.6, 0), (1, 0.9, 50), (2, 0.89, 52), (3, 0.88, 51)]
    ]
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "trials.json").write_text(json.dumps(trials))
    summary = {
        "objectives": [{"name": "params_nonembedding"}],
        "pareto": [0, 1],
        "exported": [0, 1],
        "tied": [2, 3],
    }
    (tmp_path / "search" / "summary.json").write_text(json.dumps(summary))
    three = pareto_members(tmp_path, 3)
    assert [(t["number"], t.get("tied", False)) for t in three] == [(0, False), (1, False), (2, True)]
    assert [t["number"] for t in pareto_members(tmp_path, 2)] == [0, 1]
    assert [t["number"] for t in pareto_members(tmp_path, None)] == [0, 1, 3, 2]


def test_thinning_into_a_gap_the_covering_set_did_not_have_names_the_max_models_that_keeps_it(
    tmp_path: Path,
) -> None:
    # covering set at 0, 10, 20, ..., 100 (no gap above 0.1 of the range) plus a crowd near 45
    sizes = [0, 10, 20, 30, 40, 44, 45, 46, 50, 60, 70, 80, 90, 100]
    trials = [trial(n, SPACE.largest(), 0.5 + n / 100, params=p) for n, p in enumerate(sizes)]
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "trials.json").write_text(json.dumps(trials))
    summary = {"objectives": [{"name": "params_nonembedding"}], "pareto": list(range(len(sizes)))}
    (tmp_path / "search" / "summary.json").write_text(json.dumps(summary))
    warning = thinning_warning(tmp_path, 6, 0.15)
    assert warning is not None
    assert "export.max_models=6 leaves a gap of 0.200" in warning
    assert warning.endswith("max_models to 10")
    # the fewest with no step above 15: 0, 10, 20, 30, 45, 60, 70, 80, 90, 100
    assert thinning_warning(tmp_path, 10, 0.15) is None
    assert thinning_warning(tmp_path, 9, 0.15) is not None
    assert thinning_warning(tmp_path, 6, 0.2) is None  # the gap is within the user's limit
    assert thinning_warning(tmp_path, None, 0.15) is None  # nothing thinned


def test_the_warm_start_keeps_the_most_fisher_importance_that_fits() -> None:
    import random

    from elastic_lm.importance.fisher import SubLayer
    from elastic_lm.prune.coverage import candidate_pool
    from elastic_lm.prune.warmstart import fisher_design, kept_importance

    subs = [
        SubLayer(f"l{i}.{kind}", i, kind, None, n)
        for i in range(6)
        for kind, n in (("heads", 12), ("ffn", 1536))
    ]  # type: ignore[arg-type]
    # heads matter, FFN units barely: the best member at half size keeps (nearly) every head, least FFN
    scores = {s.name: torch.full((s.units,), 1.0 if s.kind == "heads" else 1e-4) for s in subs}
    full = size(SPACE.largest())
    design = fisher_design(SPACE, size, subs, scores, [0.5, 0.3], seed=0)
    assert len(design) == 2
    half = design[0]
    assert size(half) <= 0.5 * full
    assert len(half.layers) == 6
    assert all(la.heads >= 11 for la in half.layers)
    pool = candidate_pool(SPACE, random.Random(0))
    fitting = [kept_importance(a, subs, scores) for a in pool if size(a) <= 0.5 * full]
    assert kept_importance(half, subs, scores) == max(fitting)
    assert kept_importance(SPACE.largest(), subs, scores) == pytest.approx(6 * 12 + 6 * 1536 * 1e-4)


def test_a_warm_started_search_evaluates_the_fisher_design_first(tmp_path: Path, monkeypatch: Any) -> None:
    from elastic_lm.prune import warmstart

    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
    seen: list[list[str]] = []
    real = warmstart.fisher_design

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        seen.append([a.key() for a in out])
        return out

    monkeypatch.setattr(warmstart, "fisher_design", spy)
    raw = prune_config(tmp_path, search__trials=16, prune__warm_start=True)
    raw["prune"]["post_training"] = {"examples": 32, "targets": [0.7, 0.4]}  # type: ignore[index]
    config = validate_config(raw)
    run_prune(config, until="search")
    trials = json.loads((Path(config.run_dir) / "search" / "trials.json").read_text())
    assert len(seen) == 1
    assert seen[0]
    first = [Architecture.from_dict(t["architecture"]).key() for t in trials[3 : 3 + len(seen[0])]]
    assert first == seen[0]


def test_gap_filling_halves_gaps_instead_of_creeping_down_from_the_top() -> None:
    """Quality rising with size: the best member of a gap is at its top; a fill per step must not
    add a member just below the last one (a real run exported 49 members that way)."""
    arch = SPACE.largest()
    trials = [trial(n, arch, 0.5 + 0.004 * n, params=float(n)) for n in range(101)]  # sizes 0 ... 100
    out = covering_front(trials, [0, 100], "params_nonembedding", "val_accuracy", True, None)
    sizes = [float(n) for n in out]
    assert front_gaps(sizes, 100.0)["front_max_gap"] <= 0.15
    assert len(out) <= 12
