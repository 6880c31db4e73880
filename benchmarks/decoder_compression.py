"""Benchmark: SmolLM2-135M compressed by the decoder recipe, against layer dropping and uniform width.

Runs ``configs/prune-smollm2.yaml`` at a budget (the whole recipe: importance reordering, a short
super-network distillation, search over all 30 layers, export, healing of our members at about 75% and
60% of the teacher's non-embedding parameters, of the ShortGPT layer-dropping and uniform-width
baselines at the same sizes, and of the teacher itself, all with one budget), then prints one JSON
object with the issue's fields:

- ``teacher_perplexity`` (test split of the recipe's corpus) and ``teacher_healed_perplexity``;
- ``distilled_from``: the source model, or the healed teacher (``heal.teacher_correction``);
- ``members``: per kind (ours, layer-drop, uniform-width) and size (75, 60): perplexity before / after
  healing, ``params_nonembedding``, ``decode_ms_per_token``, ``prefill_ms``;
- ``ppl_ratio_at_75`` / ``ppl_ratio_at_60``: ours after healing over the teacher healed the same way;
- ``beats_baselines``; ``decode_speedup_at_60`` (exported teacher over exported member, KV cache);
- ``generate_matches_stock``: greedy tokens of the elastic sub-network equal its stock export's;
- ``stage_seconds``: wall time of each stage;
- ``decode_timing``: how the decode numbers were taken (all healed models round-robin, one thread,
  median) and the machine's load average before and after; ``loadavg_at_end``.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/decoder_compression.py --budget cpu    # 31 min
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/decoder_compression.py --budget quick  # <= 15 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "prune-smollm2.yaml"
STAGES = ("teacher", "train", "profile", "search", "export", "heal", "report")


def generate_matches_stock(run_dir: Path, member: str, prompt: str, new_tokens: int = 16) -> bool:
    """Greedy tokens of the super-network with the member's architecture vs its stock export."""
    import torch
    from transformers import AutoModelForCausalLM

    from elastic_lm.architecture import Architecture
    from elastic_lm.export.supernet import load_supernet

    folder = run_dir / "export" / member
    arch = Architecture.from_dict(json.loads((folder / "export.json").read_text())["architecture"])
    saved = load_supernet(run_dir / "train" / "supernet")
    ids = saved.tokenizer()(prompt, return_tensors="pt")["input_ids"]
    stock = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad(), saved.model.eval().using(arch):
        elastic = saved.model.generate(input_ids=ids, max_new_tokens=new_tokens, do_sample=False)
    with torch.no_grad():
        exported = stock.generate(input_ids=ids, max_new_tokens=new_tokens, do_sample=False)
    return bool(torch.equal(elastic, exported))


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's fields from ``heal/results.json``."""
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for m in results["members"]:
        if m["kind"] != "teacher" and m.get("target") is not None:
            by[(m["kind"], round(100 * m["target"]))] = m
    teacher = next(m for m in results["members"] if m["kind"] == "teacher")
    healed_teacher = results["teacher_healed_perplexity"]

    def row(m: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": m["name"],
            "params_nonembedding": m["params_nonembedding"],
            "fraction": round(m["fraction"], 4),
            "perplexity_before": m["before"]["perplexity"],
            "perplexity_after": m["after"]["perplexity"],
            "decode_ms_per_token": m["decode_ms_per_token"],
            "prefill_ms": m["prefill_ms"],
            "samples": m["after"]["samples"],
        }

    out: dict[str, Any] = {
        "teacher_perplexity": results["teacher_perplexity"],
        "teacher_healed_perplexity": healed_teacher,
        "teacher": row(teacher),
        "members": {f"{kind}@{size}": row(m) for (kind, size), m in sorted(by.items())},
    }
    beats = True
    for size in (75, 60):
        ours = by.get(("ours", size))
        out[f"ppl_ratio_at_{size}"] = None if ours is None else ours["after"]["perplexity"] / healed_teacher
        for kind in ("layer-drop", "uniform-width"):
            other = by.get((kind, size))
            if ours is None or other is None or ours["after"]["perplexity"] >= other["after"]["perplexity"]:
                beats = False
    out["beats_baselines"] = beats
    ours60 = by.get(("ours", 60))
    out["decode_speedup_at_60"] = (
        None if ours60 is None else teacher["decode_ms_per_token"] / ours60["decode_ms_per_token"]
    )
    return out


def retime(config: Any, run_dir: Path) -> dict[str, Any]:
    """``heal/results.json`` of a finished run with every decode number re-measured round-robin now."""
    from elastic_lm.heal.run import Healer

    results = json.loads((run_dir / "heal" / "results.json").read_text())
    healer = Healer(config, run_dir, log=None)
    numbers, results["timing"] = healer.retime([m["name"] for m in results["members"]])
    for m in results["members"]:
        m.update(numbers[m["name"]])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="cpu", help="a budget of configs/prune-smollm2.yaml")
    parser.add_argument("--set", action="append", default=[], help="config overrides, key=value")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument(
        "--retime", action="store_true",
        help="only re-time the healed models of an existing run (round-robin), keeping its perplexities",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from elastic_lm.config import load_config
    from elastic_lm.pipeline.engine import run_recipe
    from elastic_lm.pipeline.recipes.decoder import RECIPE
    from elastic_lm.pipeline.rundir import RunDirectory

    config = load_config(args.config, budget=args.budget, overrides=args.set)
    run_dir = Path(config.run_dir)
    if args.retime:
        results = retime(config, run_dir)
    else:
        with contextlib.redirect_stdout(sys.stderr):  # stage progress (heal prints) stays off the JSON
            run_recipe(RECIPE, config, log=lambda line: print(line, file=sys.stderr))
        results = json.loads((run_dir / "heal" / "results.json").read_text())
    out: dict[str, Any] = {
        "command": "python " + shlex.join(["benchmarks/decoder_compression.py", *(argv or sys.argv[1:])]),
        "model": "SmolLM2-135M (packaged GGUF, de-quantised)",
        "corpus": f"{config.data.source}, test split {config.data.test_ratio}",
        "heal_budget": results["budget"],
        "distilled_from": results.get("distilled_from", "the source model"),  # heal.teacher_correction
        **summarise(results),
    }
    ours60 = out["members"].get("ours@60")
    prompt = config.evaluate.prompts[0]
    matches = None if ours60 is None else generate_matches_stock(run_dir, ours60["name"], prompt)
    out["generate_matches_stock"] = matches
    records = RunDirectory(run_dir)
    out["stage_seconds"] = {s: (r.seconds if (r := records.record(s)) else None) for s in STAGES}
    out["decode_timing"] = results.get("timing")  # round-robin over every healed model, with the load
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
