"""Value-level facts of the encoder distillation path: after inheritance and importance reordering,
before any training, the largest sub-network *is* the teacher (same last hidden states, same
mean-pooled sentence embeddings); the smallest member of a layer-subset space keeps the first and
the last layer; the last-hidden loss is 0 for the teacher and about 1 for an unrelated student."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from elastic_lm.config import load_config
from elastic_lm.space import preset
from elastic_lm.train.build import build_training
from elastic_lm.train.representation import LastHiddenDistillation, mean_pooled, sentence_embeddings
from prune_fixtures import sentiment_rows, tiny_bert


def _config(tmp_path: Path, source: Path, corpus: Path) -> Path:
    job = {
        "run_dir": str(tmp_path / "run"),
        "seed": 1,
        "model": {"source": str(source), "task": "masked-lm", "importance": "activation",
                  "importance_batches": 2, "dropout": 0.0},
        "space": {"preset": "elm", "options": {"layers": 3, "hidden": 32, "heads": 4, "ffn": 64,
                  "head_step": 2, "ffn_step": 32, "hidden_choices": [32], "blocks": ["bert"],
                  "layer_subsets": True, "min_layers": 2}},
        "teacher": {"source": str(source), "retrain_steps": 0},
        "data": {"source": str(corpus), "task": "mlm", "max_length": 16, "mlm_probability": 0},
        "train": {"steps": 1, "batch_size": 8, "strategy": "sandwich",
                  "strategy_options": {"n_random": 1, "target": "teacher"},
                  "losses": [{"name": "last-hidden"}, {"name": "embedding"}]},
    }  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_largest_subnetwork_is_the_teacher_before_training(tmp_path: Path, isolated_cache: Path) -> None:
    source = tiny_bert(tmp_path / "tiny-bert", layers=3, seed=4)
    shipped = json.loads((source / "config.json").read_text())  # dropout as MiniLM ships it
    shipped.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    (source / "config.json").write_text(json.dumps(shipped))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(str(r["text"]) for r in sentiment_rows(120)))
    parts = build_training(load_config(_config(tmp_path, source, corpus)), progress=False)
    hf = AutoModel.from_pretrained(str(source)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    texts = [str(r["text"]) for r in sentiment_rows(6, seed=9)]
    enc = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    model = parts.model.eval()
    assert parts.teacher is not None
    with torch.no_grad():
        reference = hf(**enc).last_hidden_state
        with model.using(parts.space.largest()):
            ours = model.backbone(**enc).last_hidden_state
            pooled = sentence_embeddings(model, enc)
        teacher_pooled = sentence_embeddings(parts.teacher, enc)
    keep = enc["attention_mask"].bool()
    torch.testing.assert_close(ours[keep], reference[keep], atol=1e-5, rtol=0)
    model.train()  # model.dropout: 0, so the training forward is the teacher too (no noise to distil)
    with torch.no_grad(), model.using(parts.space.largest()):
        training = model.backbone(**enc).last_hidden_state
    torch.testing.assert_close(training[keep], reference[keep], atol=1e-5, rtol=0)
    hf_pooled = mean_pooled(reference, enc["attention_mask"])
    torch.testing.assert_close(pooled, hf_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(teacher_pooled, hf_pooled, atol=1e-5, rtol=0)
    assert float((pooled * hf_pooled).sum(-1).min()) > 1 - 1e-5  # cos 1.0 at step 0
    # the reordering did act: some sub-layer is no longer in the source's order
    changed = any(not torch.equal(p, dict(hf.named_parameters())[n]) for n, p in _hf_named(model).items())
    assert changed


def _hf_named(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Query weights of the elastic model under the Hugging Face names (enough to see a permutation)."""
    out = {}
    for i, layer in enumerate(model.backbone.layers):
        out[f"encoder.layer.{i}.attention.self.query.weight"] = layer.bert.attention.q.weight
    return out


def test_smallest_member_of_a_layer_subset_space_keeps_first_and_last() -> None:
    def kept(min_layers: int) -> list[int]:
        options = {"layers": 6, "blocks": ["bert"], "layer_subsets": True, "min_layers": min_layers}
        smallest = preset("elm", **options).smallest()
        return [i for i, layer in enumerate(smallest.layers) if not layer.is_identity]

    assert kept(2) == [0, 5]
    assert kept(3) == [0, 2, 5]
    assert kept(1) == [0]


def test_last_hidden_loss_is_zero_for_the_teacher_and_about_one_for_noise() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 7, 16, generator=g) * 3
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, 4:] = 0
    teacher = SimpleNamespace(hidden_states=(None, t))
    batch = {"attention_mask": mask}
    loss = LastHiddenDistillation()
    assert float(loss(SimpleNamespace(hidden_states=(None, t.clone())), batch, teacher)) < 1e-9
    zero = float(loss(SimpleNamespace(hidden_states=(None, torch.zeros_like(t))), batch, teacher))
    assert abs(zero - 1.0) < 1e-6  # predicting nothing costs exactly the teacher's energy
    noise = torch.randn(4, 7, 16, generator=g) * 3
    assert 1.5 < float(loss(SimpleNamespace(hidden_states=(None, noise)), batch, teacher)) < 2.5
    cosine = LastHiddenDistillation("cosine")
    assert float(cosine(SimpleNamespace(hidden_states=(None, 2 * t)), batch, teacher)) < 1e-6
    changed = t.clone()
    changed[1, 5:] = -1.0  # padded tokens are ignored
    assert float(loss(SimpleNamespace(hidden_states=(None, changed)), batch, teacher)) < 1e-9


def test_fresh_masked_lm_head_is_seeded(tmp_path: Path) -> None:
    """A bare encoder has no MLM head: the one Hugging Face draws must come from the seed, so two
    conversions (two runs of one config) build identical models."""
    from elastic_lm.convert import from_hf

    source = tiny_bert(tmp_path / "bare", layers=1)
    torch.manual_seed(123)
    a = from_hf(source, task="masked-lm", seed=5).state_dict()
    torch.manual_seed(456)  # the global RNG must not matter
    b = from_hf(source, task="masked-lm", seed=5).state_dict()
    c = from_hf(source, task="masked-lm", seed=6).state_dict()
    heads = [k for k in a if k.startswith("mlm.") and k.endswith("weight")]
    assert heads
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in heads)
