"""The teacher stage: masked-LM re-training once, cached by its inputs, then loaded frozen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerBase

from elastic_lm.config import load_config
from elastic_lm.teacher import load_teacher, teacher_folder


@pytest.fixture
def tiny_bert_folder(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerBase) -> Path:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    folder = tmp_path / "tiny-bert"
    BertForMaskedLM(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def _config(tmp_path: Path, folder: Path, *overrides: str):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["the cat sat on the mat .", "a good movie , i liked it !"] * 40))
    return load_config(
        None,
        [
            f"teacher.source={folder}",
            "teacher.retrain_steps=3",
            "teacher.batch_size=4",
            f"data.source={corpus}",
            "data.max_length=16",
            *overrides,
        ],
    )


def test_no_teacher_and_teacher_as_is(tmp_path: Path, tiny_bert_folder: Path) -> None:
    assert teacher_folder(load_config(None, ["teacher.source=none"])) is None
    as_is = _config(tmp_path, tiny_bert_folder, "teacher.retrain_steps=0")
    assert teacher_folder(as_is) == tiny_bert_folder


def test_retraining_runs_once_and_is_reused(
    tmp_path: Path, tiny_bert_folder: Path, isolated_cache: Path
) -> None:
    config = _config(tmp_path, tiny_bert_folder)
    folder = teacher_folder(config, progress=False)
    assert folder is not None
    assert folder.parent == isolated_cache / "teachers"
    summary = json.loads((folder / "teacher.json").read_text())
    assert summary["steps"] == 3
    assert summary["final_train_loss"] > 0
    stamp = (folder / "teacher.json").stat().st_mtime_ns
    assert teacher_folder(config, progress=False) == folder  # cached: not trained again
    assert (folder / "teacher.json").stat().st_mtime_ns == stamp
    other = teacher_folder(_config(tmp_path, tiny_bert_folder, "teacher.retrain_steps=4"), progress=False)
    assert other != folder  # other settings, another cache entry

    teacher = load_teacher(folder, "masked-lm")
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    retrained = teacher.state_dict()
    original = BertForMaskedLM.from_pretrained(tiny_bert_folder).state_dict()
    q = "bert.encoder.layer.0.attention.self.query.weight"
    elastic_q = next(v for k, v in retrained.items() if k.endswith("layers.0.bert.attention.q.weight"))
    assert not torch.allclose(elastic_q, original[q])  # the weights really moved
