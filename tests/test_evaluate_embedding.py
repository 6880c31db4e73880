"""Sentence-embedding evaluation: pooling, retrieval ranks, pair selection, probes, JSON and report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import DataError
from elastic_lm.evaluate.embedding import (
    PoolingSpec,
    TextEmbedder,
    pool,
    read_pooling_spec,
    subnetwork_forward,
)
from elastic_lm.evaluate.embedding_eval import Candidate, evaluate_embeddings, write_embedding_results
from elastic_lm.evaluate.metrics import paired_difference
from elastic_lm.evaluate.probe import ProbeTask, fit_probe
from elastic_lm.evaluate.retrieval import (
    DialogPairs,
    mean_cosine,
    reciprocal_ranks,
    retrieval_metrics,
    select_pairs,
)
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.report.embedding import embedding_section, load_embedding_table, render_embedding_section

HIDDEN = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 2.0], [2.0, 0.0], [4.0, -6.0]]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_pooling_ignores_padding_in_every_mode() -> None:
    mean = pool(HIDDEN, MASK, PoolingSpec("mean", normalize=False))
    assert torch.allclose(mean, torch.tensor([[2.0, 2.0], [2.0, -4.0 / 3]]))
    assert pool(HIDDEN, MASK, PoolingSpec("cls", normalize=False)).tolist() == [[1.0, 0.0], [0.0, 2.0]]
    assert pool(HIDDEN, MASK, PoolingSpec("max", normalize=False)).tolist() == [[3.0, 4.0], [4.0, 2.0]]
    sqrt = pool(HIDDEN, MASK, PoolingSpec("mean_sqrt_len", normalize=False))
    assert torch.allclose(sqrt[0], torch.tensor([4.0, 4.0]) / math.sqrt(2))
    unit = pool(HIDDEN, MASK, PoolingSpec("mean", normalize=True))
    assert torch.allclose(unit[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_retrieval_ranks_are_hand_checked() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    # query 0 -> its reply is best (rank 1); query 1 -> two candidates beat it (rank 3); query 2 -> rank 2
    replies = torch.tensor([[1.0, 0.0], [1.0, -1.0], [1.0, 1.0]])
    got = retrieval_metrics(queries, replies, k=2)
    assert got["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert got["recall_at_2"] == pytest.approx(2 / 3)
    rr = reciprocal_ranks(queries, replies)
    assert rr.tolist() == pytest.approx([1.0, 1 / 3, 1 / 2])
    assert got["mrr_standard_error"] == pytest.approx(float(rr.std()) / math.sqrt(3))
    assert mean_cosine(queries, queries) == pytest.approx(1.0)
    assert mean_cosine(queries, -queries) == pytest.approx(-1.0)


def test_pairs_are_distinct_held_out_and_seeded() -> None:
    statements = ["hi", "hi", "how are you", "bye", "", "ok then", "seen"]
    replies = ["hello", "yo", "fine", "hello", "x", "sure", "in training"]
    exclude = {"ok then sure", "in training"}  # a joined pair and a reply from the training text
    pairs = select_pairs(statements, replies, 2, seed=3, exclude=exclude)
    assert set(pairs.statements) <= {"hi", "how are you"}
    assert dict(zip(pairs.statements, pairs.replies, strict=True)) == {"hi": "hello", "how are you": "fine"}
    assert select_pairs(statements, replies, 2, seed=3, exclude=exclude) == pairs
    with pytest.raises(DataError, match="only 2 dialog pairs"):
        select_pairs(statements, replies, 3, seed=3, exclude=exclude)


def test_probe_separates_separable_data_and_reports_trivial_lines() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    y = [int(v > 0) for v in x[:, 0]]
    score = fit_probe(x[:40], y[:40], x[40:], y[40:], 2, c=100.0)
    assert score.accuracy == 1.0
    assert score.macro_f1 == 1.0
    task = ProbeTask("t", ("a", "b", "c"), (0, 0, 1), ("d", "e"), (1, 0), ("no", "yes"))
    assert task.baselines() == {
        "majority_accuracy": 0.5,
        "majority_macro_f1": pytest.approx(1 / 3),
        "chance_accuracy": 0.5,
    }


def test_a_sentence_config_with_an_unknown_module_is_refused(tmp_path: Path) -> None:
    modules = [
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "2_Dense", "type": "x.Dense"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(DataError, match="only transformer, pooling and normalize"):
        read_pooling_spec(tmp_path)
    assert read_pooling_spec(tmp_path / "missing") is None


def _tiny_supernet():
    torch.manual_seed(0)
    config = ElasticConfig(
        vocab_size=40,
        hidden_size=16,
        num_layers=2,
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=12,
        max_position_embeddings=32,
        block_candidates=[["bert"]] * 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        task="masked-lm",
    )
    return build_model(config).eval()


WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "good", "bad", "movie", "film", "liked", "hated"]


def _texts(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (5,), generator=g)) for _ in range(n)
    ]


def test_rows_compare_members_with_the_teacher_and_feed_the_report(tmp_path: Path, tiny_tokenizer) -> None:
    model = _tiny_supernet()
    spec = PoolingSpec()
    full = model.architecture
    small = Architecture(hidden=16, layers=(LayerArch("bert", heads=2, ffn=4), LayerArch("identity")))
    narrow = Architecture(hidden=8, layers=(LayerArch("bert", heads=2, ffn=4), LayerArch("identity")))

    def member(name: str, arch: Architecture) -> Candidate:
        def load():
            return TextEmbedder(subnetwork_forward(model, arch), tiny_tokenizer, spec), name.count("x")

        return Candidate(name, "export" if name != "teacher" else "teacher", load)

    pairs = DialogPairs(tuple(_texts(12, 1)), tuple(_texts(12, 2)))
    labels = tuple(i % 2 for i in range(16))
    task = ProbeTask("toy", tuple(_texts(16, 3)), labels, tuple(_texts(8, 4)), labels[:8], ("a", "b"))
    other = ProbeTask("a-task", task.train_texts, labels, task.test_texts, labels[:8], ("a", "b"))
    results = evaluate_embeddings(
        [member("same", full), member("small", small), member("narrow", narrow)],
        member("teacher", full),
        pairs,
        [task, other],
    )
    teacher, same, small_row, narrow_row = results.rows
    assert teacher.cos_to_teacher == pytest.approx(1.0)
    assert same.cos_to_teacher == pytest.approx(1.0)
    assert (same.retrieval_mrr, same.probes["toy"]) == (teacher.retrieval_mrr, teacher.probes["toy"])
    assert small_row.cos_to_teacher is not None
    assert small_row.cos_to_teacher < 1 - 1e-6  # random tiny weights: the residual path dominates
    assert narrow_row.cos_to_teacher is None  # 8-dimensional vectors cannot stand in for 16-dimensional ones
    assert narrow_row.dim == 8
    assert 0 < teacher.retrieval_mrr <= 1
    assert results.probe_tasks["toy"]["chance_accuracy"] == 0.5

    write_embedding_results(tmp_path / "evaluate", results)
    table = load_embedding_table(tmp_path / "evaluate" / "embedding.json")
    assert table is not None
    assert [r.name for r in table.rows] == ["teacher", "same", "small", "narrow"]
    assert table.tasks == ("toy", "a-task")  # the config's order, not the JSON's sorted keys
    html = render_embedding_section(table)
    kept = small_row.retrieval_mrr / teacher.retrieval_mrr
    assert f"{small_row.retrieval_mrr:.3f} ({kept:.0%})" in html
    assert f"{teacher.probes['toy'].accuracy:.3f} / {teacher.probes['toy'].macro_f1:.3f}" in html
    majority = results.probe_tasks["toy"]["majority_accuracy"]
    assert "<td>majority class</td>" in html
    assert f"{majority:.3f} / " in html
    assert html.index("teacher") < html.index("small") < html.index("narrow") < html.index("chance")
    assert "of 12 held-out movie-dialog statements" in html  # the quick start scores fewer pairs: say so
    assert "(train / held-out examples: toy 16 / 8, a-task 16 / 8)" in html
    assert "cut at" not in html  # no settings recorded: no length claimed
    assert embedding_section(tmp_path) == html
    assert embedding_section(tmp_path / "elsewhere") == ""


def test_a_broken_embedding_json_is_a_one_line_data_error(tmp_path: Path) -> None:
    path = tmp_path / "embedding.json"
    path.write_text(json.dumps({"rows": [{"name": "m", "retrieval_mrr": "high"}]}))
    with pytest.raises(DataError, match="retrieval_mrr is 'high', not a number"):
        load_embedding_table(path)


def test_embedding_section_validates_its_keys() -> None:
    from elastic_lm.config import load_config
    from elastic_lm.errors import ConfigError
    from elastic_lm.evaluate.embedding_run import embedding_enabled

    with pytest.raises(ConfigError, match=re.escape("'evaluate.embedding.bogus' is not a known key")):
        load_config(None, ["evaluate.embedding.bogus=1"])
    with pytest.raises(ConfigError, match=re.escape("'evaluate.embedding.pooling' has bad value 'median'")):
        load_config(None, ["evaluate.embedding.pooling=median"])
    assert embedding_enabled(load_config(None, []))  # masked-lm: an encoder run
    assert not embedding_enabled(load_config(None, ["model.task=causal-lm"]))
    assert not embedding_enabled(load_config(None, ["evaluate.embedding.enabled=false"]))


@pytest.mark.assets
def test_the_evaluate_stage_scores_teacher_and_exports_from_the_config(tmp_path: Path) -> None:
    """MiniLM-L6 as teacher and a first-layer cut of it as the run's only export, on real held-out data."""
    from transformers import AutoTokenizer

    from elastic_lm.assets import get_asset
    from elastic_lm.config import load_config
    from elastic_lm.evaluate.embedding import load_encoder
    from elastic_lm.evaluate.embedding_run import run_embedding_evaluation, training_texts

    for name in ("minilm-l6", "movie-dialogs", "sms-spam"):
        if not get_asset(name).installed:
            pytest.skip(f"{name} asset not installed")
    source = get_asset("minilm-l6").require()
    cut = load_encoder(source)
    cut.encoder.layer = cut.encoder.layer[:1]
    cut.config.num_hidden_layers = 1
    run = tmp_path / "run"
    cut.save_pretrained(run / "export" / "first-1")
    AutoTokenizer.from_pretrained(source).save_pretrained(run / "export" / "first-1")
    (run / "export" / "index.json").write_text(json.dumps([{"name": "first-1", "path": "export/first-1"}]))
    corpus = tmp_path / "train.txt"
    corpus.write_text("\n".join(f"line {i} of the training text" for i in range(40)))
    overrides = [
        f"run_dir={run}",
        "model.source=minilm-l6",
        "teacher.source=minilm-l6",
        f"data.source={corpus}",
        "evaluate.embedding.retrieval_pairs=30",
        "evaluate.embedding.probe_tasks=[{source: sms-spam}]",
        "evaluate.embedding.probe_max_examples=80",
        "evaluate.embedding.max_length=32",
    ]
    config = load_config(None, overrides)
    assert len(training_texts(config)) == 32  # 40 lines less validation and test (10 % each)
    path = run_embedding_evaluation(config, run, progress=False)
    data = json.loads(path.read_text())
    teacher, member = data["rows"]
    assert (teacher["name"], teacher["origin"], member["origin"]) == (
        "teacher (minilm-l6)",
        "teacher",
        "export",
    )
    assert teacher["params_nonembedding"] == 6 * member["params_nonembedding"] == 6 * 1_774_464
    assert teacher["cos_to_teacher"] == pytest.approx(1.0)
    assert 0.0 < member["cos_to_teacher"] < 0.99
    assert teacher["dim"] == member["dim"] == 384
    assert data["retrieval"]["pairs"] == 30
    assert data["probe_tasks"]["sms-spam"]["test_examples"] == 16  # validation + test of 80 examples
    assert data["rows"][0]["probes"]["sms-spam"]["test_examples"] == 16
    assert data["settings"]["teacher"] == "minilm-l6"
    table = load_embedding_table(path)
    assert table is not None
    assert table.max_length == 32
    assert "Texts are cut at 32 tokens." in render_embedding_section(table)


def test_paired_difference_uses_the_per_item_differences() -> None:
    a = np.array([1.0, 0.5, 0.25, 1.0])
    b = np.array([0.5, 0.5, 0.25, 0.5])  # a is never worse: the paired error is small
    got = paired_difference(a, b)
    diff = a - b
    se = float(diff.std(ddof=1)) / 2
    assert got["difference"] == pytest.approx(0.25)
    assert got["standard_error"] == pytest.approx(se)
    assert got["ci95"] == pytest.approx([0.25 - 1.96 * se, 0.25 + 1.96 * se])
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(a[:1], b[:1])  # one item: no error to estimate
