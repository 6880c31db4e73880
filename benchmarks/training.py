"""Training-step cost of the elastic super-network, against stock Hugging Face, and resume exactness.

Run: ``PYTHONPATH=src python benchmarks/training.py [--quick] [--device cpu|cuda]``; prints one
JSON object. Timings are medians of interleaved repeats in the same process (so load from other
processes hits every variant alike); nothing is asserted.

- ``step_time_ratio_full``: elastic model at full size / ``BertForMaskedLM`` of the MiniLM-L6 shape
  with the same weights (converted with ``from_hf``); one step = forward + MLM loss + backward +
  AdamW step. Both compute logits at every position, as ``BertForMaskedLM`` does (goal <= 1.10).
- ``masked_head``: the same step when the MLM head runs only at the masked positions (elastic:
  ``logits_positions``, which the loop uses by default, ``train.masked_logits``; HF: its head
  applied to the gathered positions): the vocabulary projection dominates a MiniLM step.
- ``step_time_ratio_small``: a sub-network with about 25% of the full FLOPs (analytic
  ``count_flops``, stated) / the full size, elastic model, the step ``elastic-lm train`` takes on
  MLM (head at the masked positions, ``train.masked_logits`` default) (goal <= 0.40);
  ``step_time_ratio_small_full_logits``: the same with logits at every position, where the
  log-softmax over 30,522 words at every token is a cost no sub-network choice removes.
  Every variant steps the loop's own optimiser (``build_optimizer``: fused AdamW, same groups).
- ``resume_exact``: a tiny real run with dynamic modules (grown at step 2) interrupted after step 3
  and resumed, against the uninterrupted run: max abs weight difference (exact when <= 1e-6).
- ``tokens_per_second``: the training loop on the MiniLM-shaped ELM space (BERT blocks), sandwich
  strategy (largest + 2 random + smallest per step), median of the loop's logged ``tokens_per_s``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.convert import from_hf
from elastic_lm.metrics.size import count_flops
from elastic_lm.train.loop import build_optimizer

MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _mlm_batch(batch: int, seq: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, seq), generator=g)
    masked = torch.rand(batch, seq, generator=g) < 0.15
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    ids = torch.where(masked, torch.full_like(ids, 103), ids)
    mask = torch.ones_like(ids)
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


def _hf_step(model: BertForMaskedLM, b: dict[str, torch.Tensor], masked_head: bool) -> torch.Tensor:
    if not masked_head:
        return model(**b).loss
    hidden = model.bert(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    where = b["labels"] != -100
    return F.cross_entropy(model.cls(hidden[where]), b["labels"][where])


def _elastic_step(model: Any, b: dict[str, torch.Tensor], masked_head: bool) -> torch.Tensor:
    if not masked_head:
        return model(**b).loss
    return model(**b, logits_positions=b["labels"] != -100).loss  # what the loop does


def _trainer(
    model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], device: torch.device
) -> Callable[[], tuple[float, float]]:
    opt = build_optimizer(list(model.named_parameters()), lr=1e-5, weight_decay=0.01)  # the loop's

    def step() -> tuple[float, float]:
        """Seconds of (forward + backward, optimiser step)."""
        _sync(device)
        began = time.perf_counter()
        loss_fn().backward()
        _sync(device)
        middle = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return middle - began, time.perf_counter() - middle

    return step


def small_architecture(model: Any, seq: int, target: float = 0.25) -> tuple[Architecture, float]:
    """The grid member (width, depth, heads, FFN) whose analytic FLOPs ratio is closest to ``target``."""
    config = model.config
    full = count_flops(config, model.backbone.largest(), seq)
    best: tuple[float, Architecture, float] | None = None
    for hidden in (128, 192, 256, 384):
        for depth in (2, 3, 4, 6):
            for heads in (4, 6, 8, 12):
                for ffn in (512, 768, 1024, 1536):
                    layers = [LayerArch("bert", heads, ffn=ffn)] * depth
                    layers += [LayerArch("identity")] * (6 - depth)
                    arch = Architecture(hidden, tuple(layers))
                    ratio = count_flops(config, arch, seq) / full
                    if best is None or abs(ratio - target) < best[0]:
                        best = (abs(ratio - target), arch, ratio)
    assert best is not None
    return best[1], best[2]


def step_times(batch: int, seq: int, reps: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    cfg = BertConfig(**MINILM, attn_implementation="sdpa")
    hf = BertForMaskedLM(cfg).to(device).train()
    ours = from_hf(hf).to(device).train()
    b = _mlm_batch(batch, seq, cfg.vocab_size, device)
    small, small_flops = small_architecture(ours, seq)

    def elastic(masked: bool, arch: Architecture | None = None) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            if arch is None:
                ours.reset()
            else:
                ours.set_architecture(arch)
            return _elastic_step(ours, b, masked)

        return run

    # each variant has its own AdamW over all of its model's parameters (as in training)
    steps = {
        "hf": _trainer(hf, lambda: _hf_step(hf, b, False), device),
        "elastic": _trainer(ours, elastic(False), device),
        "hf_masked_head": _trainer(hf, lambda: _hf_step(hf, b, True), device),
        "elastic_masked_head": _trainer(ours, elastic(True), device),
        "elastic_small": _trainer(ours, elastic(False, small), device),
        "elastic_small_masked_head": _trainer(ours, elastic(True, small), device),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    fwd_bwd: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in steps.items():
            fb, opt = fn()
            times[name].append(fb + opt)
            fwd_bwd[name].append(fb)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_fb = {k: statistics.median(v) for k, v in fwd_bwd.items()}
    return {
        "batch": batch,
        "seq": seq,
        "repeats": reps,
        "median_step_s": {k: round(v, 5) for k, v in med.items()},
        "median_forward_backward_s": {k: round(v, 5) for k, v in med_fb.items()},
        "step_time_ratio_full": round(med["elastic"] / med["hf"], 3),
        "step_time_ratio_small": round(med["elastic_small_masked_head"] / med["elastic_masked_head"], 3),
        "step_time_ratio_small_forward_backward": round(
            med_fb["elastic_small_masked_head"] / med_fb["elastic_masked_head"], 3
        ),
        "step_time_ratio_small_full_logits": round(med["elastic_small"] / med["elastic"], 3),
        "small_flops_ratio": round(small_flops, 3),
        "small_architecture": small.to_dict(),
        "masked_head": {
            "step_time_ratio_full_masked_head": round(med["elastic_masked_head"] / med["hf_masked_head"], 3),
            "elastic_saving": round(1 - med["elastic_masked_head"] / med["elastic"], 3),
            "hf_saving": round(1 - med["hf_masked_head"] / med["hf"], 3),
        },
    }


def resume_exact() -> dict[str, Any]:
    """A tiny dynamic-modules run: uninterrupted 5 steps vs crash after 3 + ``resume``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from elastic_lm.train.build import build_training, train_from_config
    from elastic_lm.train.loop import train_supernet
    from test_dynamic import tiny_model, tiny_space  # the tiny ELM space/model of the test suite
    from test_trainwire import DYNAMIC, config, rows

    class CrashError(RuntimeError):
        """Stands for a killed process."""

    def crash_at(k_stop: int) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
        def hook(k: int, batch: dict[str, Any]) -> dict[str, Any]:
            if k >= k_stop:
                raise CrashError
            return batch

        return hook

    space = tiny_space()
    parts = {"space": space, "train_data": rows(16, 0), "val_data": rows(8, 1), "progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        straight = train_from_config(config(Path(tmp) / "a", *DYNAMIC), model=tiny_model(space), **parts)
        p = build_training(config(Path(tmp) / "b", *DYNAMIC), model=tiny_model(space), **parts)
        p.settings.batch_hook = crash_at(3)
        with contextlib.suppress(CrashError):
            train_supernet(
                p.model,
                p.strategy,
                p.losses,
                p.train_data,
                val_data=p.val_data,
                settings=p.settings,
                run_dir=p.run_dir,
            )
        resumed = train_from_config(
            config(Path(tmp) / "b", *DYNAMIC), model=tiny_model(space), resume=True, **parts
        )
        a, b = straight.model.state_dict(), resumed.model.state_dict()
        diff = max(float((a[k] - b[k]).abs().max()) for k in a) if set(a) == set(b) else float("inf")
        widened = straight.space.largest().layers[0].ffn
    return {
        "resume_exact": diff <= 1e-6,
        "max_abs_weight_diff": diff,
        "resumed_from_step": resumed.start_step,
        "ffn_after_dynamic": widened,
    }


def tokens_per_second(batch: int, seq: int, steps: int, device: torch.device) -> dict[str, Any]:
    from elastic_lm.space import preset
    from elastic_lm.train.loop import TrainSettings, train_supernet
    from elastic_lm.train.losses import CombinedLoss
    from elastic_lm.train.strategies import make_strategy

    torch.manual_seed(0)
    space = preset("elm", blocks=("bert",), hidden_choices=(128, 192, 256, 384))
    hf = BertForMaskedLM(BertConfig(**MINILM))
    model = from_hf(hf, space=space).train()
    b = _mlm_batch(batch * 4, seq, hf.config.vocab_size, torch.device("cpu"))
    data = [{k: v[i] for k, v in b.items()} for i in range(batch * 4)]
    settings = TrainSettings(
        steps=steps,
        batch_size=batch,
        device=device.type,
        progress=False,
        tensorboard=False,
        checkpoint_every=10**6,
        eval_every=10**6,
        warmup_fraction=0.0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        strategy = make_strategy("sandwich", space, n_random=2, seed=0)
        train_supernet(model, strategy, CombinedLoss([{"name": "mlm"}]), data, settings=settings, run_dir=tmp)
        with (Path(tmp) / "train" / "metrics.csv").open() as f:
            values = [float(r["value"]) for r in csv.DictReader(f) if r["name"] == "tokens_per_s"]
    return {
        "tokens_per_second": round(statistics.median(values[1:] or values), 1),
        "batch": batch,
        "seq": seq,
        "steps": steps,
        "subnets_per_step": 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats (a 2-core CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="override the batch size")
    parser.add_argument("--seq", type=int, help="override the sequence length")
    parser.add_argument("--repeats", type=int, help="override the number of timed repeats")
    parser.add_argument("--step-only", action="store_true", help="only the step-time comparison")
    args = parser.parse_args()
    device = torch.device(args.device)
    batch, seq, reps, tps_steps = (4, 32, 5, 3) if args.quick else (16, 128, 15, 8)
    if device.type == "cuda":
        batch, reps = batch * 4, reps * 2
    batch, seq, reps = args.batch or batch, args.seq or seq, args.repeats or reps
    result: dict[str, Any] = {
        "command": "PYTHONPATH=src python benchmarks/training.py " + " ".join(sys.argv[1:]),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    result["step"] = step_times(batch, seq, reps, device)
    result["step_time_ratio_full"] = result["step"]["step_time_ratio_full"]
    result["step_time_ratio_small"] = result["step"]["step_time_ratio_small"]
    result["step_time_ratio_small_full_logits"] = result["step"]["step_time_ratio_small_full_logits"]
    if args.step_only:
        print(json.dumps(result, indent=1))
        return
    result["resume"] = resume_exact()
    result["sandwich"] = tokens_per_second(batch, seq, tps_steps, device)
    result["resume_exact"] = result["resume"]["resume_exact"]
    result["tokens_per_second"] = result["sandwich"]["tokens_per_second"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
