"""The representation-distillation path end to end on a tiny job: the teacher as it ships, importance
reordering, MiniLM-v2 relation + embedding + relational losses, the teacher-cosine objective; two runs
of one config give the same Pareto set."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from elastic_lm.config import load_config
from elastic_lm.pipeline.run import run_pipeline
from prune_fixtures import sentiment_rows, tiny_bert


def _job(tmp_path: Path, source: Path, corpus: Path, name: str) -> Path:
    job = {
        "run_dir": str(tmp_path / name),
        "seed": 3,
        "model": {"source": str(source), "task": "masked-lm", "importance": "activation",
                  "importance_batches": 1},
        "space": {"preset": "elm", "options": {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64,
                  "head_step": 2, "ffn_step": 32, "hidden_choices": [32], "blocks": ["mobilebert", "bert"],
                  "layer_subsets": True}},
        "teacher": {"source": str(source), "retrain_steps": 0},
        "data": {"source": str(corpus), "task": "mlm", "max_length": 16, "mlm_probability": 0},
        "train": {
            "steps": 4, "batch_size": 8, "checkpoint_every": 4, "eval_every": 4, "eval_batches": 1,
            "learning_rate": 1e-3, "strategy": "binned",
            "strategy_options": {"n_bins": 2, "n_per_step": 2, "size": "params", "target": "teacher"},
            "losses": [{"name": "minilm-relation", "options": {"relation_heads": 4}}, {"name": "embedding"},
                       {"name": "relational"}],
        },
        "search": {"strategy": "mo-rea", "trials": 8, "eval_batches": 1, "eval_batch_size": 8,
                   "objectives": [{"name": "teacher_cosine"}, {"name": "params_nonembedding"}]},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _front(run: Path) -> list[tuple[str, list[float]]]:
    summary = json.loads((run / "search" / "summary.json").read_text())
    trials = {t["number"]: t for t in json.loads((run / "search" / "trials.json").read_text())}
    return sorted(
        (
            json.dumps(trials[n]["architecture"], sort_keys=True),
            [trials[n]["metrics"][k] for k in ("teacher_cosine", "params_nonembedding")],
        )
        for n in summary["pareto"]
    )


def test_two_runs_of_the_distillation_path_give_the_same_front(tmp_path: Path, isolated_cache: Path) -> None:
    source = tiny_bert(tmp_path / "tiny-bert")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(160)))
    fronts = []
    for name in ("a", "b"):
        config = load_config(_job(tmp_path, source, corpus, name))
        run_pipeline(config, until="search", log=lambda _: None)
        fronts.append(_front(tmp_path / name))
    assert fronts[0] == fronts[1]
    assert len(fronts[0]) >= 2
    cosines = [values[0] for _, values in fronts[0]]
    assert all(-1.0 <= c <= 1.0 + 1e-6 for c in cosines)
    assert len(set(cosines)) == len(cosines)  # members differ in quality, not only in size


def test_a_trained_model_keeps_no_loss_hooks_and_can_be_copied(tmp_path: Path, isolated_cache: Path) -> None:
    """The MiniLM relation loss hooks the model's attention while it trains; left attached, the hooks
    held the last forward's graph tensors, so ``copy.deepcopy`` (the export's least-squares re-fit)
    failed on a model trained in the same process (benchmarks/encoder_baselines.py did)."""
    import copy

    from elastic_lm.train.build import build_training

    source = tiny_bert(tmp_path / "tiny-bert")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(80)))
    parts = build_training(load_config(_job(tmp_path, source, corpus, "hooks")), progress=False)
    parts.train()
    hooked = [name for name, m in parts.model.named_modules() if m._forward_hooks]
    assert hooked == []
    copied = copy.deepcopy(parts.model)
    assert copied is not parts.model
    metrics = (tmp_path / "hooks" / "train" / "metrics.csv").read_text()
    assert ",train,bin/minilm-relation," in metrics  # the hooks were there while it trained
