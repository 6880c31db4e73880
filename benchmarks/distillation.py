"""Benchmark: a real ELM super-network run on the offline corpora, distilled vs not distilled.

Issue 4. One ELM-space super-network (BERT and MobileBERT blocks, MiniLM-L6 seeding the BERT
blocks) is trained on Austen + BBC News with the sandwich strategy (largest + 1 random + smallest
per step) learning from the MLM-re-trained MiniLM-L6 teacher (MLM + logit distillation at the
masked positions + the ELM relational loss per block). A second one is trained identically (same
seed, data order, steps, learning rate, sandwich draws) with the MLM loss only and no teacher.
Both are scored on the same fixed, seeded batches of the held-out TEST split for the largest, the
middle and the smallest member of the space (inherited weights, eval mode).

Everything goes through the project's own code paths (``load_config`` -> ``teacher_folder`` ->
``train_from_config`` -> ``evaluate_subnetwork``); the distilled super-network is saved under
``--out`` (``supernet-distilled/``, loadable with ``load_supernet``) so that
``benchmarks/search.py --supernet`` can search a properly trained one.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distillation.py           # the measurement
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distillation.py --quick   # smoke run

Prints one JSON object (the command to reproduce it included) and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from elastic_lm.config import load_config
from elastic_lm.data import prepare_data
from elastic_lm.evaluate import evaluate_subnetwork, fixed_eval_batches
from elastic_lm.io import atomic_write_json
from elastic_lm.metrics.size import count_params
from elastic_lm.teacher import teacher_folder
from elastic_lm.train.build import tokenizer_from_config
from supernets import cached_supernet

ARMS = {
    "distilled": {
        "losses": "[{name: mlm, weight: 1.0}, "
        "{name: logit-kd, weight: 1.0, options: {temperature: 2.0, positions: labels}}, "
        "{name: relational, weight: 1.0}]",
        "target": "teacher",
    },
    "undistilled": {"losses": "[{name: mlm, weight: 1.0}]", "target": "labels"},
}


def make_config(args: argparse.Namespace, arm: str, run_dir: Path) -> Any:
    """The config both arms share; only the losses, the sandwich target and the run folder vary."""
    spec = ARMS[arm]
    return load_config(
        None,
        [
            "model.source=minilm-l6",
            "model.task=masked-lm",
            "space.preset=elm",
            "data.source=[austen, bbc-news]",
            "data.task=mlm",
            f"data.max_examples={args.max_examples}",
            f"data.max_length={args.seq_len}",
            "data.validation_ratio=0.05",
            "data.test_ratio=0.05",
            "teacher.source=minilm-l6",
            f"teacher.retrain_steps={args.teacher_steps}",
            f"teacher.batch_size={args.batch_size}",
            f"teacher.learning_rate={args.teacher_lr}",
            f"train.losses={spec['losses']}",
            "train.strategy=sandwich",
            f"train.strategy_options={{n_random: 1, target: {spec['target']}}}",
            f"train.steps={args.steps}",
            f"train.batch_size={args.batch_size}",
            f"train.learning_rate={args.lr}",
            f"train.eval_every={max(1, args.steps // 4)}",
            f"train.checkpoint_every={args.steps}",
            "train.eval_batches=4",
            f"seed={args.seed}",
            "device=cpu",
            f"run_dir={run_dir}",
        ],
    )


def train_arm(args: argparse.Namespace, arm: str) -> tuple[Any, Any, dict[str, Any]]:
    """The trained super-network of ``arm`` under ``--out`` (trained once, then loaded)."""
    config = make_config(args, arm, args.out / f"train-{arm}")
    info = {"losses": ARMS[arm]["losses"]}
    return cached_supernet(config, args.out / f"supernet-{arm}", args.out / f"supernet-{arm}.json", info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: minutes, numbers mean nothing")
    parser.add_argument("--steps", type=int, default=None, help="super-network steps (default 400; quick 10)")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default 600 (quick: 20)")
    parser.add_argument("--teacher-lr", type=float, default=5e-4)
    parser.add_argument("--max-examples", type=int, default=None, help="default 20000 (quick: 2000)")
    parser.add_argument("--eval-batches", type=int, default=None, help="test batches of 16 (default 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=tuple(ARMS), help="train one arm only (to run both in parallel)")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/out/distillation[-quick]")
    args = parser.parse_args(argv)
    for name, full, small in (
        ("steps", 400, 10),
        ("teacher_steps", 600, 20),
        ("max_examples", 20000, 2000),
        ("eval_batches", 16, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    args.out = args.out or Path("benchmarks/out/distillation" + ("-quick" if args.quick else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distillation.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    began = time.perf_counter()

    config = make_config(args, "distilled", args.out / "unused")
    t0 = time.perf_counter()
    teacher_dir = teacher_folder(config, progress=False)
    teacher_seconds = round(time.perf_counter() - t0, 1)
    assert teacher_dir is not None
    teacher_summary = json.loads((teacher_dir / "teacher.json").read_text())
    prepared = prepare_data(config.data, tokenizer_from_config(config))
    test = fixed_eval_batches(prepared.splits["test"], prepared.collator, args.eval_batches, 16, seed=1)
    arms = (args.only,) if args.only else tuple(ARMS)
    trained = {arm: train_arm(args, arm) for arm in arms}
    if args.only:
        print(json.dumps({"trained": args.only, **trained[args.only][2]}, indent=2))
        return 0

    from elastic_lm.teacher import load_teacher

    teacher = load_teacher(teacher_dir, config.model.task)
    task = config.model.task
    model, space, _ = trained["distilled"]
    members = {"largest": space.largest(), "middle": space.middle(), "smallest": space.smallest()}
    rows: dict[str, Any] = {}
    for role, arch in members.items():
        row: dict[str, Any] = {"params": count_params(model.config, arch)}
        for arm, (net, _, _) in trained.items():
            row[f"{arm}_test_mlm_loss"] = round(evaluate_subnetwork(net, arch, test, task)["loss"], 4)
        row["distilled_wins"] = row["distilled_test_mlm_loss"] < row["undistilled_test_mlm_loss"]
        rows[role] = row
    teacher_loss = evaluate_subnetwork(teacher, teacher.backbone.largest(), test, task)["loss"]
    report = {
        "benchmark": "ELM super-network on Austen + BBC: distilled from MiniLM-L6 vs no distillation",
        "command": command,
        "quick_smoke_run": args.quick,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "teacher": {
            "source": "minilm-l6, MLM re-trained",
            "steps": teacher_summary.get("steps"),
            "validation_mlm_loss": teacher_summary.get("validation"),
            "test_mlm_loss": round(teacher_loss, 4),
            "seconds_this_run": teacher_seconds,
        },
        "data": {
            "sources": ["austen", "bbc-news"],
            "train_rows": len(prepared.splits["train"]),
            "test_rows": len(prepared.splits["test"]),
            "test_eval": f"{args.eval_batches} fixed batches x 16 rows, seed 1",
        },
        "supernets": {arm: info for arm, (_, _, info) in trained.items()},
        "members": rows,
        "distilled_wins_all": all(r["distilled_wins"] for r in rows.values()),
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    atomic_write_json(args.out / "result.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
