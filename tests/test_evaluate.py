"""Sub-network evaluation: metrics equal hand-computed values, eval batches are fixed."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerBase

from elastic_lm.data import mlm_collator
from elastic_lm.evaluate import (
    evaluate_subnetwork,
    f1_binary,
    f1_macro,
    fixed_eval_batches,
    mape,
    pearson,
    spearman,
)
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.space import preset

SPACE = dict(layers=2, hidden=16, heads=4, ffn=32, ffn_step=8, ffn_stack=2)


def tiny_model(task: str, vocab: int = 28, num_labels: int = 2) -> tuple:
    space = preset("elm", **SPACE)
    config = ElasticConfig.from_space(
        space,
        vocab_size=vocab,
        task=task,
        head_dim=4,
        max_position_embeddings=16,
        num_labels=num_labels,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(0)
    return build_model(config), space


def sentences(tok: PreTrainedTokenizerBase, n: int = 12) -> list[dict]:
    words = ["the cat sat on the mat .", "a dog was very good !", "i liked the film , it is good ."]
    return [dict(tok(words[i % 3] + " the cat", truncation=True, max_length=12)) for i in range(n)]


def test_classification_metrics_by_hand() -> None:
    pred = np.array([1, 1, 0, 0, 1, 2])
    true = np.array([1, 0, 0, 1, 1, 2])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn1 -> 4/6; class 2: 1.0
    assert f1_macro(pred, true, 3) == pytest.approx((0.5 + 4 / 6 + 1.0) / 3)
    assert f1_binary(pred[:5], true[:5]) == pytest.approx(4 / 6)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert spearman([1, 2, 2, 5], [10, 20, 20, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_classifier_accuracy_and_f1_on_known_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    model, space = tiny_model("sequence-classification")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])

    class Out:
        def __init__(self, x: torch.Tensor) -> None:
            self.logits = x

    monkeypatch.setattr(type(model), "forward", lambda self, input_ids, **kw: Out(logits))
    batch = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "labels": labels}
    m = evaluate_subnetwork(model, space.largest(), [batch, batch], "classification")
    assert m["accuracy"] == pytest.approx(0.5)
    # preds 0,1,1,0 vs 0,1,0,1: class 0 tp1 fp1 fn1, class 1 the same -> 0.5 each
    assert m["f1"] == pytest.approx(0.5)
    assert m["f1_binary"] == pytest.approx(0.5)
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert m["loss"] == pytest.approx(expected, rel=1e-6)


def test_mlm_loss_equals_models_own_loss_and_is_token_weighted(
    tiny_tokenizer: PreTrainedTokenizerBase,
) -> None:
    model, space = tiny_model("masked-lm")
    model.train()
    batches = fixed_eval_batches(
        sentences(tiny_tokenizer), mlm_collator(tiny_tokenizer, 0.3, 0), 3, 4, seed=1
    )
    arch = space.sample(random.Random(3))
    m = evaluate_subnetwork(model, arch, batches[:1], "mlm")
    assert model.training  # mode restored
    with torch.no_grad(), model.using(arch):
        model.eval()
        own = model(**batches[0]).loss.item()
    assert m["loss"] == pytest.approx(own, rel=1e-5)
    assert m["perplexity"] == pytest.approx(math.exp(own), rel=1e-5)
    # across batches: weighted by labelled tokens, not a mean of batch means
    sums, counts = 0.0, 0
    with torch.no_grad(), model.using(arch):
        for b in batches:
            n = int((b["labels"] != -100).sum())
            sums += model(**b).loss.item() * n
            counts += n
    assert evaluate_subnetwork(model, arch, batches, "masked-lm")["loss"] == pytest.approx(
        sums / counts, rel=1e-5
    )


def test_clm_loss_equals_models_own_loss(tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    space = preset("llama", layers=2, hidden=12, heads=6, kv_heads=2, ffn=16, ffn_step=4)
    shape = dict(positions="rope", norm="rmsnorm", hidden_act="silu", use_bias=False)
    shape |= dict(type_vocab_size=0, embedding_norm=False, final_norm=True)
    config = ElasticConfig.from_space(
        space, vocab_size=28, task="causal-lm", head_dim=4, max_position_embeddings=16, **shape
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    ids = torch.randint(0, 28, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    arch = space.smallest()
    with torch.no_grad(), model.using(arch):
        own = model(**batch).loss.item()
    assert evaluate_subnetwork(model, arch, [batch], "clm")["loss"] == pytest.approx(own, rel=1e-5)


def test_eval_batches_identical_across_calls(tiny_tokenizer: PreTrainedTokenizerBase) -> None:
    data = sentences(tiny_tokenizer, 10)
    collate = mlm_collator(tiny_tokenizer, 0.3, seed=0)
    a = fixed_eval_batches(data, collate, 2, 4, seed=5)
    torch.manual_seed(123)  # global RNG state must not matter
    b = fixed_eval_batches(data, collate, 2, 4, seed=5)
    assert [len(x["input_ids"]) for x in a] == [4, 4]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k])
    assert any(int((x["labels"] != -100).sum()) > 0 for x in a)
    c = fixed_eval_batches(data, collate, 5, 4, seed=5)  # only 10 examples: 3 batches
    assert [len(x["input_ids"]) for x in c] == [4, 4, 2]


def test_regression_metrics() -> None:
    model, space = tiny_model("sequence-classification", num_labels=1)
    ids = torch.randint(5, 28, (6, 5), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": torch.linspace(0, 1, 6)}
    m = evaluate_subnetwork(model, space.largest(), [batch], "regression")
    with torch.no_grad(), model.using(space.largest()):
        model.eval()
        pred = model(input_ids=ids).logits.reshape(-1)
    assert m["mse"] == pytest.approx(float(((pred - batch["labels"]) ** 2).mean()), rel=1e-5)
    assert set(m) == {"loss", "mse", "pearson", "spearman"}


def test_mape() -> None:
    assert mape([110, 90], [100, 100]) == pytest.approx(0.10)
    with pytest.raises(ValueError, match="measured value is 0"):
        mape([1], [0])
