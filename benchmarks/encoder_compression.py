"""Benchmark (issue 14): the teacher, a run's exported encoders and hand-made cuts as sentence encoders.

For every model it prints ``params_nonembedding``, measured ``latency_ms`` (batch 1, one thread, the
standalone model, ``--seq-len`` tokens), ``retrieval_mrr``, ``retrieval_recall_at_10``,
``cos_to_teacher``, per-task probe accuracy and macro F1 and ``probe_avg``, all through the evaluate
stage's own code (``elastic_lm.evaluate.embedding_run``), then the headline fields computed from those
rows (``retrieval_kept_at_half`` ...). Hand-designed baselines (with ``--run``, unless
``--no-baselines``): at 25/50/75% of the teacher's non-embedding parameters, the teacher's first k
layers and all layers at a uniform narrower width, each distilled alone with the run's own training
budget (``encoder_baselines.py``), exported under ``RUN/benchmark-baselines/`` (re-used when there).
``--cuts`` adds the teacher's first k layers untrained (origin ``cut``, not a baseline).
``deterministic``: one baseline is trained twice; true when the two weight hashes agree.
Retrieval uses 2,000 held-out pairs unless ``--pairs`` says otherwise, whatever the run's config
(the quick start's own evaluation uses 1,000); the probes use the config's settings.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder_compression.py --cuts 3
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder_compression.py --run runs/elm-mlm-quick
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder_compression.py --budget quick

``--tau N`` (with ``--run``) scores N searched sub-networks, spread over the search's quality objective,
by retrieval MRR with the super-network's inherited weights and prints Kendall's tau between the two
(``proxy_downstream_tau``; null without it).
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
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from elastic_lm.config import load_config
from elastic_lm.evaluate.embedding import TextEmbedder, load_encoder, module_forward, non_embedding_params
from elastic_lm.evaluate.embedding_eval import Candidate, evaluate_embeddings
from elastic_lm.evaluate.embedding_run import (
    candidates,
    describe_row,
    probe_tasks,
    resolve_spec,
    teacher_name,
    training_texts,
)
from elastic_lm.evaluate.metrics import paired_difference
from elastic_lm.evaluate.retrieval import movie_dialog_pairs
from elastic_lm.io import atomic_write_json
from elastic_lm.metrics.latency import measure_latency_ms
from elastic_lm.train.build import model_folder, tokenizer_from_config

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "elm-mlm.yaml"
BUDGETS = (0.25, 0.5, 0.75)


def cut_candidate(config: Any, k: int) -> Candidate:
    """The teacher's first ``k`` layers as they are (a hand-designed baseline, no training)."""
    folder = model_folder(teacher_name(config))
    section = config.evaluate.embedding

    def load() -> tuple[TextEmbedder, int]:
        model = first_layers(folder, k)
        tokenizer = tokenizer_from_config(config)
        spec = resolve_spec(config, folder)
        embedder = TextEmbedder(
            module_forward(model),
            tokenizer,
            spec,
            max_length=section.max_length,
            batch_size=section.batch_size,
        )
        return embedder, non_embedding_params(model)

    return Candidate(f"first-{k}-layers-untrained", "cut", load, str(folder))


def first_layers(folder: Path, k: int) -> torch.nn.Module:
    model = load_encoder(folder)
    model.encoder.layer = model.encoder.layer[:k]
    model.config.num_hidden_layers = k
    return model


def latency_ms(candidate: Candidate, seq_len: int, repeats: int) -> float:
    """Median ms of one forward pass, batch 1, one thread, of the standalone model."""
    assert candidate.path is not None
    if candidate.origin == "cut":
        model = first_layers(Path(candidate.path), int(candidate.name.split("-")[1]))
    else:
        model = load_encoder(candidate.path)
    measured = measure_latency_ms(model, batch_size=1, seq_len=seq_len, threads=1, repeats=repeats)
    return float(measured.median_ms)


def best_within(rows: list[dict[str, Any]], limit: float) -> dict[str, Any] | None:
    """The highest-MRR row with at most ``limit`` non-embedding parameters."""
    fitting = [r for r in rows if r["params_nonembedding"] <= limit]
    return max(fitting, key=lambda r: r["retrieval_mrr"], default=None)


def headline(rows: list[dict[str, Any]], ranks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The issue's headline fields, from the rows (None where no member fits the budget).

    ``ranks``: each row's per-pair reciprocal ranks by name; with them, each budget's verdict carries
    the paired MRR difference (member minus best baseline) and whether its 95 % interval excludes 0.
    """
    teacher = next(r for r in rows if r["origin"] == "teacher")
    members = [r for r in rows if r["origin"] == "export" and not r["name"].startswith("baseline")]
    baselines = [r for r in rows if r["origin"] == "baseline"]
    full = teacher["params_nonembedding"]
    half = best_within(members, 0.5 * full)
    quarter = best_within(members, 0.25 * full)
    out: dict[str, Any] = {
        "retrieval_kept_at_half": None if half is None else half["retrieval_mrr"] / teacher["retrieval_mrr"],
        "retrieval_kept_at_quarter": None
        if quarter is None
        else quarter["retrieval_mrr"] / teacher["retrieval_mrr"],
        "cos_to_teacher_at_half": None if half is None else half["cos_to_teacher"],
        "probe_drop_at_half": None if half is None else teacher["probe_avg"] - half["probe_avg"],  # points
        "speedup_at_half": None if half is None else teacher["latency_ms"] / half["latency_ms"],
        "member_at_half": None if half is None else half["name"],
    }
    per_budget = {}
    for share in BUDGETS:
        member = best_within(members, share * full)
        rivals = [b for b in baselines if b["params_nonembedding"] <= share * full]
        best_rival = max(rivals, key=lambda r: r["retrieval_mrr"], default=None)
        per_budget[str(share)] = {
            "member": None if member is None else [member["name"], member["retrieval_mrr"]],
            "best_baseline": None
            if best_rival is None
            else [best_rival["name"], best_rival["retrieval_mrr"]],
            "beats": None
            if member is None or best_rival is None
            else member["retrieval_mrr"] > best_rival["retrieval_mrr"],
        }
        if ranks and member is not None and best_rival is not None:
            paired = paired_difference(ranks[member["name"]].numpy(), ranks[best_rival["name"]].numpy())
            low, high = paired["ci95"]
            per_budget[str(share)]["paired_mrr_difference"] = {**paired, "separable": low > 0 or high < 0}
    verdicts = [b["beats"] for b in per_budget.values()]
    out["searched_beats_handdesigned"] = all(verdicts) if all(v is not None for v in verdicts) else None
    out["searched_beats_handdesigned_per_budget"] = per_budget
    return out


def proxy_tau(config: Any, run_dir: Path, n: int, pairs: Any) -> dict[str, Any]:
    """Kendall tau between the search's quality objective and retrieval MRR over ``n`` searched
    sub-networks spread over that objective (inherited super-network weights, as the search saw them)."""
    from scipy.stats import kendalltau

    from elastic_lm.evaluate.embedding import subnetwork_forward
    from elastic_lm.evaluate.retrieval import retrieval_metrics
    from elastic_lm.export.supernet import load_supernet
    from elastic_lm.report.inputs import find_summary, find_trials_file, load_summary, load_trials

    summary = load_summary(find_summary(run_dir))
    quality = next(o for o in summary.objectives if o.name not in ("params", "flops", "latency_ms"))
    trials = [
        t
        for t in load_trials(find_trials_file(run_dir))
        if t.usable and t.architecture is not None and quality.name in t.metrics
    ]
    trials.sort(key=lambda t: t.metrics[quality.name])
    picked = [trials[round(i * (len(trials) - 1) / max(n - 1, 1))] for i in range(min(n, len(trials)))]
    picked = list({t.number: t for t in picked}.values())
    supernet = load_supernet(run_dir / "train" / "supernet")
    tokenizer = supernet.tokenizer() or tokenizer_from_config(config)
    spec = resolve_spec(config, model_folder(config.model.source))
    section = config.evaluate.embedding
    scores, mrrs = [], []
    for trial in picked:
        forward = subnetwork_forward(supernet.model, trial.architecture)
        embedder = TextEmbedder(forward, tokenizer, spec, max_length=section.max_length, batch_size=64)
        vectors = embedder.embed(pairs.texts)
        mrrs.append(retrieval_metrics(vectors[: len(pairs)], vectors[len(pairs) :])["mrr"])
        sign = -1.0 if quality.direction == "minimize" else 1.0
        scores.append(sign * trial.metrics[quality.name])
    tau = float(kendalltau(scores, mrrs).statistic) if len(picked) >= 3 else None
    return {
        "objective": quality.name,
        "subnetworks": len(picked),
        "tau": tau,
        "points": [[t.number, t.metrics[quality.name], m] for t, m in zip(picked, mrrs, strict=True)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a finished run directory (export/index.json, config.yaml)")
    parser.add_argument("--budget", help="run configs/elm-mlm.yaml at this budget first (until export)")
    parser.add_argument(
        "--cuts", default="", help="comma list of k: the teacher's first k layers as baselines"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=2000,
        help="retrieval pairs (default 2000 whatever the run's config says: the quick start uses fewer)",
    )
    parser.add_argument("--probe-examples", type=int, help="examples per probe task (default: the config's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. evaluate.embedding.max_length=64 (repeatable)",
    )
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per latency forward pass")
    parser.add_argument("--tau", type=int, default=0, help="score N searched sub-networks for the proxy tau")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-baselines", action="store_true", help="skip training the baselines")
    parser.add_argument(
        "--alone",
        default="",
        help="comma list of searched trials (e.g. trial-241): each shape distilled alone from the "
        "teacher with a baseline's budget (origin 'alone'), to tell the shape from the shared training",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.budget and args.run is None:
        from elastic_lm.pipeline.run import run_pipeline

        config = load_config(RECIPE, budget=args.budget)
        run_pipeline(config, until="export", log=lambda line: print(line, file=sys.stderr))
        args.run = Path(config.run_dir)
    saved = args.run / "config.yaml" if args.run else None
    overrides = list(args.overrides)
    if args.pairs:
        overrides.append(f"evaluate.embedding.retrieval_pairs={args.pairs}")
    if args.probe_examples:
        overrides.append(f"evaluate.embedding.probe_max_examples={args.probe_examples}")
    config = load_config(saved if saved and saved.is_file() else None, overrides)
    if args.run:
        teacher, models = candidates(config, args.run)
    else:
        teacher, models = candidates_without_run(config)
    models += [cut_candidate(config, int(k)) for k in args.cuts.split(",") if k.strip()]
    determinism = None
    if args.run and not args.no_baselines:
        from encoder_baselines import trained_baselines

        found, determinism = trained_baselines(
            config, args.run, BUDGETS, log=lambda m: print(m, file=sys.stderr)
        )
        models += [_baseline_candidate(config, name, folder) for name, folder in found]
    if args.run and args.alone:
        from encoder_baselines import trained_alone

        alone = [name.strip() for name in args.alone.split(",") if name.strip()]
        found = trained_alone(config, args.run, alone, log=lambda m: print(m, file=sys.stderr))
        models += [_baseline_candidate(config, name, folder, "alone") for name, folder in found]
    pairs = movie_dialog_pairs(config.evaluate.embedding.retrieval_pairs, config.seed, training_texts(config))
    tasks = probe_tasks(config)
    results = evaluate_embeddings(
        models,
        teacher,
        pairs,
        tasks,
        probe_c=config.evaluate.embedding.probe_c,
        seed=config.seed,
        on_row=lambda r: print(describe_row(r), file=sys.stderr, flush=True),
    )
    rows = []
    for candidate, row in zip([teacher, *models], results.rows, strict=True):
        record = row.to_dict()
        assert candidate is not None
        record["latency_ms"] = latency_ms(candidate, args.seq_len, args.repeats)
        record["probe_avg"] = None if row.probe_avg is None else 100 * row.probe_avg  # points
        rows.append(record)
    tau = proxy_tau(config, args.run, args.tau, pairs) if args.run and args.tau else None
    output = {
        "command": "python " + shlex.join(["benchmarks/encoder_compression.py", *(argv or sys.argv[1:])]),
        "run": None if args.run is None else str(args.run),
        "retrieval": results.retrieval,
        "probe_tasks": results.probe_tasks,
        "latency": {"batch_size": 1, "threads": 1, "seq_len": args.seq_len, "repeats": args.repeats},
        "rows": rows,
        **headline(rows, {r.name: r.reciprocal_ranks for r in results.rows}),
        "deterministic": None if determinism is None else determinism["same"],
        "determinism_check": determinism,
        "proxy_downstream_tau": None if tau is None else tau["tau"],
        "proxy_downstream": tau,
        "seconds": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(output, indent=1))
    if args.out:
        atomic_write_json(args.out, output)
    return output


def _baseline_candidate(config: Any, name: str, folder: Path, origin: str = "baseline") -> Candidate:
    """A trained baseline folder scored like an exported member (the source's pooling)."""
    from elastic_lm.evaluate.embedding_run import _candidate

    spec = resolve_spec(config, model_folder(config.model.source))
    return Candidate(name, origin, _candidate(config, name, origin, folder, spec).load, str(folder))


def candidates_without_run(config: Any) -> tuple[Candidate, list[Candidate]]:
    """Only the teacher (and the cuts added by the caller) when no run directory is given."""
    folder = model_folder(teacher_name(config))
    section = config.evaluate.embedding

    def load() -> tuple[TextEmbedder, int]:
        model = load_encoder(folder)
        embedder = TextEmbedder(
            module_forward(model),
            tokenizer_from_config(config),
            resolve_spec(config, folder),
            max_length=section.max_length,
            batch_size=section.batch_size,
        )
        return embedder, non_embedding_params(model)

    return Candidate(f"teacher ({teacher_name(config)})", "teacher", load, str(folder)), []


if __name__ == "__main__":
    main()
