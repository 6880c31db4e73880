from __future__ import annotations

import math

import torch

from elastic_lm.train.loop import TrainSettings
from elastic_lm.train.single import train_one_model
from toy_supernet import ToyElastic, ToyTeacher, masking_collate, toy_data


def test_train_one_model_distils_from_a_given_teacher(tmp_path):
    """A stand-alone baseline learns from the teacher a super-network had (logit-KD alone here)."""
    torch.manual_seed(0)
    model = ToyElastic(n_layers=2)
    model.architecture = model.arch  # the elastic interface train_one_model reads
    settings = TrainSettings(
        steps=20,
        batch_size=4,
        learning_rate=1e-2,
        device="cpu",
        progress=False,
        tensorboard=False,
        checkpoint_every=100,
        eval_every=100,
        collate_fn=masking_collate,
    )
    result = train_one_model(
        model,
        [{"name": "logit-kd"}],
        toy_data(16),
        settings=settings,
        run_dir=tmp_path,
        teacher=ToyTeacher(width=12, n_layers=2),
    )
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0]
