"""Benchmark: does the search pay? Searched vs hand-designed models, and how well the super-network ranks.

Issue 7. Everything runs through the project's own code paths: super-networks are trained with
``train_from_config`` (MiniLM-L6 converted into the ELM space with BERT blocks only, since the
converter cannot add MobileBERT blocks yet; sandwich strategy learning from the re-trained MiniLM-L6
teacher), searched with ``run_search_stage`` (mo-rea over validation MLM loss x parameters), and
every stand-alone model is trained with ``train_one_model`` (the super-network loop with one
member) and scored with ``evaluate_subnetwork`` on fixed, seeded batches of the held-out TEST split
(the search and the super-network ranking only ever see the validation split).

Three measurements:

* ``searched_vs_handdesigned``: for parameter budgets of 40/60/80% of the largest member, (a) the
  member with the lowest validation loss among the search's trials within the budget, extracted with
  its inherited weights from the ELM (relational-loss) super-network and then trained
  ``--continue-steps`` more steps alone, against (b) the largest UNIFORM BERT member (same heads and
  FFN width in every layer, the first ``depth`` layers kept) with no more parameters, extracted from
  the MiniLM-L6-initialised super-network before super-network training (the same starting point the
  super-network had) and trained alone for ``--supernet-steps + --continue-steps`` steps, i.e. one
  stand-alone step per super-network optimiser step (a sandwich step runs several sub-networks, so
  the super-network saw more forward/backward passes; the baseline gets the same optimiser steps).
  Both arms: the same losses (MLM + logit distillation at the masked positions), the same teacher,
  batch size, learning rate, data and seed.
* ``supernet_rank_tau``: Kendall tau between the ELM super-network's ranking of ``--rank-archs``
  sub-networks (stratified by parameter count; inherited-weight validation loss) and their ranking
  after stand-alone training: each extracted from the MiniLM-L6-initialised super-network BEFORE
  super-network training (not from the trained super-network, so the ground truth does not depend
  on the super-network being judged) and trained ``--rank-steps`` steps with the same losses and
  teacher; scored on the test split.
* ``relational_vs_mse_tau``: the same tau (same sub-networks, same ground truth) for the ELM
  super-network (MLM + logit-KD + relational loss) and for one trained identically except that the
  relational loss is replaced by plain hidden-state MSE distillation (``{name: hidden}``).

Budget, measured on the 2-core development machine with one thread while other benchmarks shared
it (about half a core per job): the full run with 100 rank steps took 5,826 s of wall time (about
50 CPU minutes); the rank part again with 200 steps (now the default) took 1,760 s, which puts the
defaults at about an hour of one CPU core. Default settings: teacher re-trained 200 steps; two
super-networks of 200 sandwich steps; 100 search trials on 8 x 16 validation batches; 3 searched
models x 50 steps, 3 uniform baselines x 250 steps, 8 rank models x 200 steps (2,500 stand-alone
steps). ``--quick`` is a smoke run of a few minutes whose
numbers are not evidence of anything. Super-networks, the teacher (the project's teacher cache),
the search and every stand-alone result are cached under ``--out``, so a rerun is cheap.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/search_pays.py            # the measurement
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/search_pays.py --quick    # smoke run

Prints one JSON object (the command to reproduce it included).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from scipy.stats import kendalltau

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.config import load_config
from elastic_lm.data import prepare_data
from elastic_lm.evaluate import evaluate_subnetwork, fixed_eval_batches
from elastic_lm.io import atomic_write_json
from elastic_lm.metrics.size import count_params
from elastic_lm.pipeline.search_stage import run_search_stage
from elastic_lm.teacher import load_teacher, teacher_folder
from elastic_lm.train.build import (
    model_from_config,
    space_from_config,
    tokenizer_from_config,
)
from elastic_lm.train.loop import TrainSettings
from elastic_lm.train.single import train_one_model
from supernets import cached_supernet

LOGIT_KD = "{name: logit-kd, weight: 1.0, options: {temperature: 2.0, positions: labels}}"
SUPERNET_LOSSES = {
    "relational": f"[{{name: mlm, weight: 1.0}}, {LOGIT_KD}, {{name: relational, weight: 1.0}}]",
    "mse": f"[{{name: mlm, weight: 1.0}}, {LOGIT_KD}, {{name: hidden, weight: 1.0}}]",
}
# stand-alone training (continued, baselines, rank ground truth): the same two losses for every arm
STANDALONE_LOSSES: list[dict[str, Any]] = [
    {"name": "mlm", "weight": 1.0},
    {"name": "logit-kd", "weight": 1.0, "temperature": 2.0, "positions": "labels"},
]
BUDGETS = (0.4, 0.6, 0.8)


def make_config(args: argparse.Namespace, run_dir: Path, losses: str = SUPERNET_LOSSES["relational"]) -> Any:
    """The one config every part shares; only the super-network losses and the run folder vary."""
    return load_config(
        None,
        [
            "model.source=minilm-l6",
            "model.task=masked-lm",
            "data.source=austen",
            "data.task=mlm",
            f"data.max_examples={args.max_examples}",
            f"data.max_length={args.seq_len}",
            "data.validation_ratio=0.05",
            "data.test_ratio=0.05",
            "space.options={blocks: [bert]}",
            "teacher.source=minilm-l6",
            f"teacher.retrain_steps={args.teacher_steps}",
            f"teacher.batch_size={args.batch_size}",
            f"train.losses={losses}",
            "train.strategy=sandwich",
            "train.strategy_options={n_random: 1, target: teacher}",
            f"train.steps={args.supernet_steps}",
            f"train.batch_size={args.batch_size}",
            f"train.learning_rate={args.lr}",
            f"train.eval_every={args.supernet_steps}",
            f"train.checkpoint_every={args.supernet_steps}",
            "train.eval_batches=2",
            "search.strategy=mo-rea",
            "search.objectives=[{name: val_loss, direction: minimize}, {name: params, direction: minimize}]",
            f"seed={args.seed}",
            "device=cpu",
            f"run_dir={run_dir}",
        ],
    )


def supernet(args: argparse.Namespace, kind: str) -> tuple[Any, Any, dict[str, Any]]:
    """The trained super-network ``kind`` (relational or mse) under ``--out`` (trained once)."""
    config = make_config(args, args.out / f"train-{kind}", SUPERNET_LOSSES[kind])
    info = {"losses": SUPERNET_LOSSES[kind]}
    return cached_supernet(config, args.out / f"supernet-{kind}", args.out / f"supernet-{kind}.json", info)


def uniform_members(space: Any, config: Any) -> list[tuple[int, Architecture]]:
    """Every uniform BERT member of the space (same heads and FFN in each kept layer), with params."""
    largest = space.largest()
    n = len(largest.layers)
    dims = {d.name: d.choices for d in space.dimensions()}
    out = []
    for hidden in dims["hidden"]:
        for depth in dims["depth"]:
            for heads in dims["layer0.heads"]:
                for ffn in dims["layer0.ffn"]:
                    layers = [LayerArch(block="bert", heads=heads, ffn=ffn)] * depth
                    arch = Architecture(
                        hidden=hidden, layers=tuple(layers + [LayerArch(block="identity")] * (n - depth))
                    )
                    if space.contains(arch):
                        out.append((count_params(config, arch), arch))
    return out


class Standalone:
    """Stand-alone training and test-split scoring, memoised on disk under ``--out``."""

    def __init__(self, args: argparse.Namespace, prepared: Any, teacher: Any, test: list, task: str) -> None:
        self.args, self.prepared, self.teacher, self.test, self.task = args, prepared, teacher, test, task
        self.cache_file = args.out / "standalone.json"
        self.cache: dict[str, dict[str, Any]] = (
            json.loads(self.cache_file.read_text()) if self.cache_file.is_file() else {}
        )

    def score(self, name: str, source: Any, arch: Architecture, steps: int) -> dict[str, Any]:
        """Extract ``arch`` from ``source``, train it ``steps`` steps alone, return its test loss."""
        if self.cache.get(name, {}).get("steps") == steps:  # a rerun with other steps retrains
            return self.cache[name]
        model = copy.deepcopy(source.extract(arch))
        run_dir = self.args.out / "standalone" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        settings = TrainSettings(
            steps=steps,
            batch_size=self.args.batch_size,
            learning_rate=self.args.lr,
            device="cpu",
            seed=self.args.seed,
            checkpoint_every=steps,
            keep_checkpoints=1,
            eval_every=steps,
            progress=False,
            tensorboard=False,
            collate_fn=self.prepared.collator,
        )
        began = time.perf_counter()
        train_one_model(
            model,
            STANDALONE_LOSSES,
            self.prepared.splits["train"],
            settings=settings,
            run_dir=run_dir,
            teacher=self.teacher,
        )
        seconds = time.perf_counter() - began
        loss = evaluate_subnetwork(model, model.architecture, self.test, self.task)["loss"]
        self.cache[name] = {"test_loss": round(loss, 4), "steps": steps, "train_seconds": round(seconds, 1)}
        atomic_write_json(self.cache_file, self.cache)
        shutil.rmtree(run_dir / "train" / "checkpoints", ignore_errors=True)  # keep --out small
        return self.cache[name]


def searched_picks(
    args: argparse.Namespace, model: Any, space: Any, val: list, largest: int
) -> dict[str, Any]:
    """One mo-rea search on the ELM super-network (cached); per budget, its best trial within it."""
    cache_file = args.out / "search.json"
    if not cache_file.is_file():
        run_dir = args.out / "search-run"
        shutil.rmtree(run_dir, ignore_errors=True)  # a rerun would append trials to the old study
        began = time.perf_counter()
        result = run_search_stage(
            make_config(args, run_dir),
            trials=args.trials,
            model=model,
            space=space,
            batches=val,
            progress=False,
        )
        records = json.loads((result.search_dir / "trials.json").read_text())
        trials = [
            {"architecture": r["architecture"], "val_loss": r["metrics"]["val_loss"]}
            for r in records
            if r.get("feasible", True) and "val_loss" in r.get("metrics", {})
        ]
        atomic_write_json(
            cache_file, {"trials": trials, "search_seconds": round(time.perf_counter() - began, 1)}
        )
    saved = json.loads(cache_file.read_text())
    picks: dict[str, Any] = {"search_seconds": saved["search_seconds"], "n_trials": len(saved["trials"])}
    for fraction in BUDGETS:
        within = [
            (t["val_loss"], Architecture.from_dict(t["architecture"]))
            for t in saved["trials"]
            if count_params(model.config, Architecture.from_dict(t["architecture"])) <= fraction * largest
        ]
        picks[str(fraction)] = min(within, key=lambda p: p[0]) if within else None
    return picks


def rank_archs(space: Any, size_fn: Callable[[Architecture], float], n: int, seed: int) -> list[Architecture]:
    """``n`` distinct members drawn stratified by parameter count, sorted by size."""
    rng, seen = random.Random(seed), {}
    for _ in range(200 * n):
        arch = space.sample_stratified(rng, size_fn, n_bins=min(n, 8))
        seen.setdefault(arch.key(), arch)
        if len(seen) == n:
            break
    return sorted(seen.values(), key=size_fn)


def short_key(arch: Architecture) -> str:
    """A file-name-safe, collision-resistant name for ``arch`` (its full key is long)."""
    return hashlib.sha1(arch.key().encode()).hexdigest()[:16]


def tau(a: list[float], b: list[float]) -> dict[str, float]:
    """Kendall tau (and its two-sided p-value) between two score lists."""
    result = kendalltau(a, b)
    return {"tau": round(float(result.statistic), 4), "p_value": round(float(result.pvalue), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few minutes, numbers mean nothing")
    parser.add_argument("--supernet-steps", type=int, default=None, help="default 200 (quick: 30)")
    parser.add_argument("--continue-steps", type=int, default=None, help="default 50 (quick: 10)")
    parser.add_argument("--rank-steps", type=int, default=None, help="default 200 (quick: 10)")
    parser.add_argument("--rank-archs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=None, help="default 100 (quick: 20)")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default 200 (quick: 60)")
    parser.add_argument("--max-examples", type=int, default=None, help="default 4096 (quick: 2000)")
    parser.add_argument("--eval-batches", type=int, default=None, help="default 8 (quick: 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=None, help="caches (default benchmarks/out/search-pays[-quick])"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("supernet_steps", 200, 30),
        ("continue_steps", 50, 10),
        ("rank_steps", 200, 10),
        ("trials", 100, 20),
        ("teacher_steps", 200, 60),
        ("max_examples", 4096, 2000),
        ("eval_batches", 8, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.out = args.out or Path("benchmarks/out/search-pays" + ("-quick" if quick else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/search_pays.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    timings: dict[str, float] = {}
    began = time.perf_counter()

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    config = make_config(args, args.out / "unused")
    teacher = load_teacher(teacher_folder(config, progress=False), config.model.task)
    tokenizer = tokenizer_from_config(config)
    prepared = prepare_data(config.data, tokenizer)
    val = fixed_eval_batches(prepared.splits["validation"], prepared.collator, args.eval_batches, 16, seed=0)
    test = fixed_eval_batches(prepared.splits["test"], prepared.collator, args.eval_batches, 16, seed=1)
    lap("teacher_and_data", t0)

    t0 = time.perf_counter()
    elm, space, elm_info = supernet(args, "relational")
    mse, _, mse_info = supernet(args, "mse")
    lap("supernets", t0)
    torch.manual_seed(args.seed)
    initial = model_from_config(config, space_from_config(config)).eval()  # MiniLM-L6 converted, untrained
    task = config.model.task
    runner = Standalone(args, prepared, teacher, test, task)
    largest = count_params(elm.config, space.largest())

    t0 = time.perf_counter()
    picks = searched_picks(args, elm, space, val, largest)
    uniform = uniform_members(space, elm.config)
    comparison = []
    for fraction in BUDGETS:
        budget = int(fraction * largest)
        pick = picks[str(fraction)]
        hand = max((m for m in uniform if m[0] <= budget), key=lambda m: m[0], default=None)
        row: dict[str, Any] = {"budget_fraction": fraction, "budget_params": budget}
        if pick is not None:
            searched = runner.score(f"searched-{fraction}", elm, pick[1], args.continue_steps)
            row["searched"] = {
                "params": count_params(elm.config, pick[1]),
                "supernet_val_loss": round(pick[0], 4),
                "test_loss": searched["test_loss"],
                "architecture": pick[1].to_dict(),
            }
        if hand is not None:
            steps = args.supernet_steps + args.continue_steps
            baseline = runner.score(f"uniform-{fraction}", initial, hand[1], steps)
            layer = hand[1].layers[0]
            row["hand_designed"] = {
                "params": hand[0],
                "test_loss": baseline["test_loss"],
                "steps": steps,
                "uniform": {
                    "hidden": hand[1].hidden,
                    "depth": hand[1].depth,
                    "heads": layer.heads,
                    "ffn": layer.ffn,
                },
            }
        if pick is not None and hand is not None:
            row["searched_wins"] = row["searched"]["test_loss"] < row["hand_designed"]["test_loss"]
        comparison.append(row)
    lap("searched_vs_handdesigned", t0)

    t0 = time.perf_counter()
    archs = rank_archs(space, lambda a: count_params(elm.config, a), args.rank_archs, args.seed)
    truth = [runner.score(f"rank-{short_key(a)}", initial, a, args.rank_steps)["test_loss"] for a in archs]
    inherited = {
        kind: [round(evaluate_subnetwork(net, a, val, task)["loss"], 4) for a in archs]
        for kind, net in (("relational", elm), ("mse", mse))
    }
    lap("rank", t0)

    report = {
        "benchmark": "search pays: searched vs hand-designed uniform models; super-network ranking quality",
        "command": command,
        "quick_smoke_run": quick,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("quick",)
        },
        "setup": {
            "source": "minilm-l6 (BERT blocks only)",
            "data": "austen",
            "teacher": f"minilm-l6 re-trained {args.teacher_steps} MLM steps",
            "supernet_strategy": "sandwich (largest + 1 random + smallest), target teacher",
            "standalone_losses": STANDALONE_LOSSES,
            "eval": f"{args.eval_batches} x 16 fixed batches; search/ranking on validation, results on test",
            "largest_params": largest,
            "space_size": space.size(),
        },
        "supernets": {"relational": elm_info, "mse": mse_info},
        "search": {"strategy": "mo-rea", "trials": picks["n_trials"], "seconds": picks["search_seconds"]},
        "searched_vs_handdesigned": comparison,
        "supernet_rank_tau": {
            "supernet": "relational (ELM)",
            "ground_truth": f"extracted from the untrained MiniLM-L6 init, {args.rank_steps} steps alone",
            **tau(inherited["relational"], truth),
            "n": len(archs),
            "params": [count_params(elm.config, a) for a in archs],
            "supernet_val_loss": inherited["relational"],
            "standalone_test_loss": truth,
        },
        "relational_vs_mse_tau": {
            "relational": tau(inherited["relational"], truth),
            "mse": {**tau(inherited["mse"], truth), "supernet_val_loss": inherited["mse"]},
        },
        "timings_s": {**timings, "total": round(time.perf_counter() - began, 1)},
        "threads": args.threads,
    }
    atomic_write_json(args.out / "result.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
