"""Layer-wise least-squares reconstruction (heal/reconstruct.py) and the budget-mark export set."""

from __future__ import annotations

import copy

import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.heal.reconstruct import reconstruct_layers
from elastic_lm.model import ElasticConfig, build_model
from elastic_lm.prune.coverage import best_at_marks

VOCAB = 41


def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    config = ElasticConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_layers=4,
        block_candidates=[["bert", "identity"]] * 4,
        num_attention_heads=4,
        head_dim=4,
        intermediate_size=24,
        max_position_embeddings=16,
        task="masked-lm",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return build_model(config).eval()


def batches(n: int = 6, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (8, 12), generator=g)
        mask = torch.ones_like(ids)
        mask[:4, 9:] = 0  # padding is not fitted
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def last_hidden_mse(model: torch.nn.Module, arch: Architecture | None, teacher: torch.nn.Module) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches():
            want = teacher.backbone(**b).last_hidden_state
            if arch is None:
                got = model.backbone(**b).last_hidden_state
            else:
                with model.using(arch):
                    got = model.backbone(**b).last_hidden_state
            real = b["attention_mask"].bool()
            total += float((got - want)[real].pow(2).sum())
            count += int(real.sum()) * want.shape[-1]
    return total / count


def cut() -> Architecture:
    narrow = LayerArch(block="bert", heads=2, ffn=8)
    return Architecture(hidden=16, layers=(narrow, narrow, LayerArch(block="identity"), narrow))


def test_reconstruction_lowers_every_sublayer_error_and_the_output_error() -> None:
    teacher = tiny_encoder()
    student = copy.deepcopy(teacher)
    arch = cut()
    before = last_hidden_mse(student, arch, teacher)
    info = reconstruct_layers(student, arch, teacher, batches(), ridge=1e-3)
    fitted = info["sublayers"]
    assert [(r["layer"], r["part"], r["target_layer"]) for r in fitted] == [
        (0, "norm1", 0), (0, "norm2", 0), (1, "norm1", 1), (1, "norm2", 2), (3, "norm1", 3), (3, "norm2", 3),
    ]  # fmt: skip
    for r in fitted:
        assert r["after"] < r["before"], r
    after = last_hidden_mse(student, arch, teacher)
    assert after < 0.7 * before, (before, after)
    # layer 1 now stands in for the dropped layer 2: it took over that layer's output norm
    assert torch.equal(
        student.backbone.layers[1]["bert"].norm2.weight, teacher.backbone.layers[2]["bert"].norm2.weight
    )


def test_reconstruction_only_touches_the_selected_weights_and_keeps_the_full_model() -> None:
    teacher = tiny_encoder()
    student = copy.deepcopy(teacher)
    reconstruct_layers(student, cut(), teacher, batches(), ridge=1e-3)
    o_new = student.backbone.layers[0]["bert"].attention.o.weight
    o_old = teacher.backbone.layers[0]["bert"].attention.o.weight
    assert torch.equal(o_new[:, 8:], o_old[:, 8:])  # the dropped heads' columns are left alone
    assert not torch.allclose(o_new[:, :8], o_old[:, :8])
    full = copy.deepcopy(teacher)
    info = reconstruct_layers(full, full.backbone.largest(), teacher, batches(), ridge=1e-3)
    assert max(r["after"] for r in info["sublayers"]) < 1e-10  # the teacher is its own solution
    assert last_hidden_mse(full, None, teacher) < 1e-10


def test_best_at_marks_picks_the_best_member_at_or_under_each_share() -> None:
    trials = [
        {"number": n, "metrics": {"size": s, "q": q}}
        for n, s, q in [(0, 100, 1.0), (1, 60, 0.95), (2, 50, 0.7), (3, 37, 0.75), (4, 20, 0.3), (5, 26, 0.9)]
    ]
    trials.append({"number": 6, "metrics": {"size": 45, "q": 0.99}, "feasible": False})
    assert best_at_marks(trials, "size", "q", True, [0.25, 0.5, 0.75]) == [4, 5, 1]
    assert best_at_marks(trials, "size", "q", False, [0.5]) == [4]
    assert best_at_marks(trials, "size", "q", True, [0.1]) == []  # none that small: nothing invented
