"""Retraining-free pruning (Kwon et al. 2022) on a tiny random BERT: Fisher, search, swaps, tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from elastic_lm.importance.fisher import fisher_diagonal, mask_gradients, sublayers
from elastic_lm.prune.evaluation import fixed_batches
from elastic_lm.prune.posttrain import (
    masks_to_arch,
    post_training_prune,
    rearrange,
    reconstruction_error,
    search_masks,
    tune_sublayer,
    unit_costs,
    zero_pruned,
)
from elastic_lm.prune.source import load_classifier
from prune_fixtures import VOCAB, tiny_bert


@pytest.fixture(scope="module")
def model_and_batches(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, list]:
    folder = tiny_bert(tmp_path_factory.mktemp("pt") / "bert", classifier=True)
    model = load_classifier(folder, 2, ["neg", "pos"]).eval()
    gen = torch.Generator().manual_seed(0)
    rows = [
        {
            "input_ids": torch.randint(5, len(VOCAB), (10,), generator=gen),
            "attention_mask": torch.ones(10, dtype=torch.long),
            "labels": torch.tensor(i % 2),
        }
        for i in range(48)
    ]

    def collate(chunk: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([r[k] for r in chunk]) for k in chunk[0]}

    return model, fixed_batches(rows, collate, 16)


def test_a_zeroed_head_has_zero_fisher_and_others_do_not(model_and_batches: tuple) -> None:
    model, batches = model_and_batches
    subs = sublayers(model)
    att = next(s for s in subs if s.kind == "heads" and s.layer == 1)
    saved = att.out.weight.data.clone()
    try:
        att.out.weight.data.reshape(saved.shape[0], att.units, -1)[:, 2, :] = 0.0
        scores = fisher_diagonal(mask_gradients(model, batches))
    finally:
        att.out.weight.data.copy_(saved)
    assert scores[att.name].shape == (4,)
    assert float(scores[att.name][2]) == 0.0
    assert all(float(v) > 0 for i, v in enumerate(scores[att.name]) if i != 2)
    assert all(float(scores[s.name].sum()) > 0 for s in subs)


def test_per_example_gradients_sum_to_the_batch_gradient(model_and_batches: tuple) -> None:
    model, batches = model_and_batches
    grads = mask_gradients(model, batches[:1])
    ffn = next(s for s in sublayers(model) if s.kind == "ffn")
    # d(sum of losses)/d(shared mask) = the sum of per-example gradients, by the chain rule
    mask = torch.ones(ffn.units, requires_grad=True)
    handle = ffn.out.register_forward_pre_hook(lambda _m, i: (i[0] * mask,))
    try:
        b = batches[0]
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        torch.nn.functional.cross_entropy(logits, b["labels"], reduction="sum").backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    assert torch.allclose(grads[ffn.name].sum(0), mask.grad, atol=1e-5)


def test_mask_search_meets_the_budget_and_keeps_the_most_important() -> None:
    from elastic_lm.importance.fisher import SubLayer

    subs = [
        SubLayer("a", 0, "heads", torch.nn.Identity(), 4),
        SubLayer("f", 0, "ffn", torch.nn.Identity(), 8),
    ]
    fisher = {"a": torch.tensor([5.0, 0.1, 3.0, 0.2]), "f": torch.arange(8.0) / 10}
    costs = {"heads": 10.0, "ffn": 1.0}
    masks = search_masks(subs, fisher, costs, budget=24.0)
    cost = int(masks["a"].sum()) * 10 + int(masks["f"].sum())
    assert cost <= 24
    # two heads (5 + 3) and four units (.7+.6+.5+.4) score 10.2; one head and all units 7.8
    assert masks["a"].tolist() == [True, False, True, False]
    assert masks["f"].tolist() == [False] * 4 + [True] * 4


def test_rearrangement_lowers_the_second_order_loss_and_keeps_the_count() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(64, 6, generator=gen)
    grads[:, 1] = grads[:, 0]  # units 0 and 1 act together: pruning both costs 4x one of them
    mask = torch.tensor([False, False, True, True, True, False])
    fisher = grads.double().T @ grads.double() / 64

    def loss(m: torch.Tensor) -> float:
        z = (~m).double()
        return float(z @ fisher @ z)

    new = rearrange(mask, grads)
    assert int(new.sum()) == int(mask.sum())
    assert loss(new) < loss(mask)


def test_mask_tuning_brings_a_pruned_layer_closer_to_the_unpruned_output(model_and_batches: tuple) -> None:
    import copy

    model, batches = model_and_batches
    subs = sublayers(model)
    masks = {s.name: torch.ones(s.units, dtype=torch.bool) for s in subs}
    for s in subs:
        if s.layer == 0:
            masks[s.name][: s.units // 2] = False
    student = copy.deepcopy(model)
    zero_pruned(student, masks)
    for sub in (s for s in subs if s.layer == 0):
        before = reconstruction_error(model, student, sub, batches)
        tune_sublayer(model, student, sub, masks[sub.name], batches)
        after = reconstruction_error(model, student, sub, batches)
        assert before > 0
        assert after < before, (sub.name, before, after)


def test_capturing_a_sublayer_stops_the_pass_there_and_sees_what_a_full_pass_sees(
    model_and_batches: tuple,
) -> None:
    from elastic_lm.prune.posttrain import _capture

    model, batches = model_and_batches
    first = next(s for s in sublayers(model) if s.layer == 0 and s.kind == "ffn")
    modules = dict(model.named_modules())
    later = [s for s in sublayers(model) if s.layer > 0]
    calls: list[str] = []
    handles = [
        modules[s.name].register_forward_hook(lambda m, i, o, n=s.name: calls.append(n)) for s in later
    ]
    full: dict[str, torch.Tensor] = {}
    batch = {k: batches[0][k] for k in ("input_ids", "attention_mask")}
    try:
        seen = _capture(model, first, batch)
        assert calls == []  # no later layer ran
        grab = modules[first.name].register_forward_hook(lambda m, i, o: full.update(x=i[0], y=o))
        with torch.no_grad():
            model(**batch)
        grab.remove()
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == len(later)  # the full pass did run them
    assert torch.equal(seen["x"], full["x"])
    assert torch.equal(seen["y"], full["y"])
    assert seen["u"].shape[-1] == first.units


def test_the_pruned_model_exports_smaller_and_computes_the_same(
    model_and_batches: tuple, tmp_path: Path
) -> None:
    from elastic_lm.export import export_subnetwork
    from elastic_lm.export.load import load_exported
    from elastic_lm.metrics.size import count_params

    model, batches = model_and_batches
    grads = mask_gradients(model, batches)
    student, arch, info = post_training_prune(model, grads, 0.5, batches, seq_len=10, measure=True)
    assert 0.3 <= info["cost_share"] <= 0.5
    full = count_params(model.config, model.model.largest(), include_embeddings=False)
    assert count_params(model.config, arch, include_embeddings=False) < 0.6 * full
    assert info["tuning"]
    assert all(after <= before for _, before, after in info["tuning"])
    export_subnetwork(student, arch, tmp_path / "out", seq_len=10)
    exported = load_exported(tmp_path / "out").eval()
    b = batches[0]
    with torch.no_grad():
        ours = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        theirs = exported(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert masks_to_arch(student, {s.name: torch.ones(s.units, dtype=torch.bool) for s in sublayers(student)})
    assert unit_costs(model)["heads"] > unit_costs(model)["ffn"]


def test_post_training_mode_exports_smaller_models_that_reproduce_their_numbers(tmp_path: Path) -> None:
    import json

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from elastic_lm.config.loading import validate_config
    from elastic_lm.prune import load_search_data, run_prune
    from elastic_lm.prune.evaluation import evaluate_model
    from prune_fixtures import prune_config

    raw = prune_config(tmp_path, search__trials=2)
    raw["prune"] = {**raw["prune"], "mode": "post-training",  # type: ignore[dict]
                    "post_training": {"examples": 64, "targets": [0.8, 0.5]}}  # fmt: skip
    config = validate_config(raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
        result = run_prune(config, report=True)
        again = run_prune(config)
    assert [o.stage for o in result.stages if o.status == "ran"] == ["finetune", "export", "report"]
    assert all(o.status == "skipped" for o in again.stages)
    run = Path(config.run_dir)
    assert not (run / "train").exists()  # no super-network, no study
    assert not (run / "search" / "study.db").exists()
    index = json.loads((run / "export" / "index.json").read_text())
    full = json.loads((run / "search" / "summary.json").read_text())["unpruned"]
    shares = [m["metrics"]["params_nonembedding"] / full["params_nonembedding"] for m in index]
    assert len(index) == 2
    assert shares[0] > shares[1]
    assert shares[1] < 0.6
    assert result.unpruned["test_accuracy"] >= 0.0
    tokenizer = AutoTokenizer.from_pretrained(run / index[0]["path"])
    data = load_search_data(config.data, tokenizer, use_cache=False)
    batches = fixed_batches(data.validation, data.collator, config.search.eval_batch_size)
    for item in index:
        model = AutoModelForSequenceClassification.from_pretrained(run / item["path"]).eval()
        got = evaluate_model(model, batches, "classification")
        assert got["accuracy"] == pytest.approx(item["metrics"]["val_accuracy"], abs=1e-6)
        assert 0.0 <= item["metrics"]["test_accuracy"] <= 1.0
        assert math.isfinite(item["metrics"]["latency_ms"])  # recorded; its size is the machine's
    assert (run / "report" / "index.html").is_file()


def test_bootstrap_intervals_cover_the_score_and_shrink_with_rows() -> None:
    import numpy as np

    from elastic_lm.prune.intervals import bootstrap_intervals, separation_warning

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.8, gold, (gold + 1) % 3)
    small = bootstrap_intervals(pred[:100], gold[:100], 3)
    large = bootstrap_intervals(pred, gold, 3)
    acc = float((pred == gold).mean())
    assert large["accuracy_ci"][0] < acc < large["accuracy_ci"][1]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(small["accuracy_ci"]) > 1.5 * width(large["accuracy_ci"])  # ~ 1 / sqrt(rows): 2x
    assert 0.7 < large["f1_ci"][0] < large["f1_ci"][1] < 0.9
    assert bootstrap_intervals(pred, gold, 3) == large  # seeded
    m = {"val_accuracy_ci_low": 0.70, "val_accuracy_ci_high": 0.76}
    assert "+-3.0 points" in (separation_warning(m, 100) or "")
    assert separation_warning({"val_accuracy_ci_low": 0.80, "val_accuracy_ci_high": 0.81}, 9000) is None


def test_a_tiny_set_gets_a_bigger_validation_split_and_fewer_steps(tmp_path: Path) -> None:
    from elastic_lm.config.loading import validate_config
    from elastic_lm.prune.smalldata import adapt_to_size
    from prune_fixtures import prune_config

    raw = prune_config(tmp_path, data__validation_ratio=0.1, train__steps=600)
    raw["prune"] = {**raw["prune"], "finetune_steps": 600}  # type: ignore[dict-item]
    config = validate_config(raw)
    adapted, notes = adapt_to_size(config, 300)
    assert adapted.data.validation_ratio == pytest.approx(0.25)  # 30 rows -> 75 (capped at a quarter)
    assert adapted.data.test_ratio == config.data.test_ratio  # the test split does not move
    train_rows = round(300 * (1 - 0.25 - config.data.test_ratio))
    cap = 20 * -(-train_rows // config.train.batch_size)
    assert adapted.prune.finetune_steps == cap < 600
    assert adapted.train.steps == cap
    assert adapted.train.eval_every <= cap
    assert len(notes) == 3
    assert "validation_ratio 0.1 -> 0.25" in notes[0]
    assert config.data.validation_ratio == 0.1  # the user's config is left alone
    big, none = adapt_to_size(config, 20000)
    assert none == []
    assert big.model_dump() == config.model_dump()


def test_a_tiny_multiclass_set_runs_post_training_with_warnings(tmp_path: Path) -> None:
    import csv
    import random

    from elastic_lm.config.loading import validate_config
    from elastic_lm.prune import run_prune
    from prune_fixtures import FILLER, WORDS, prune_config

    rng = random.Random(0)
    path = tmp_path / "topics.csv"
    with path.open("w", newline="") as f:  # 8 classes, one word each, 320 rows
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        for i in range(320):
            text = [rng.choice(FILLER) for _ in range(4)] + [WORDS[i % 8]]
            writer.writerow({"text": " ".join(text), "label": f"c{i % 8}"})
    raw = prune_config(tmp_path, data__source=str(path), data__validation_ratio=0.1)
    raw["prune"] = {**raw["prune"], "adapt_small_data": True, "mode": "post-training",  # type: ignore[dict-item]
                    "finetune_steps": 400, "quality_objective": "f1",
                    "post_training": {"examples": 64, "targets": [0.6]}}  # fmt: skip
    config = validate_config(raw)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELASTIC_LM_CACHE", str(tmp_path / "cache"))
        result = run_prune(config, log=lines.append)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert any("validation_ratio" in w for w in warnings)
    assert any("prune.finetune_steps=400" in w for w in warnings)
    (member,) = result.exported
    assert (
        member["metrics"]["test_f1_ci_low"]
        <= member["metrics"]["test_f1"]
        <= member["metrics"]["test_f1_ci_high"]
    )
    assert result.unpruned["test_accuracy_ci_low"] <= result.unpruned["test_accuracy"]
    assert result.unpruned["test_accuracy"] > 0.5  # 8 classes: chance is 0.125
