"""Hand-designed encoder baselines for ``encoder_compression.py``: cut from the teacher by hand,
then given the run's own distillation budget.

Each baseline is one fixed sub-network of the same inherited, importance-reordered super-network
(the teacher's first k layers; or all layers at a uniform narrower head count and FFN width, keeping
the most important heads and units), distilled from the teacher with the run's losses, learning rate,
batch size and number of steps (``train.steps`` plus ``export.distil_steps``: the searched members
shared ``train.steps`` between ``n_random + 2`` sub-networks each step, then each was distilled
alone for ``export.distil_steps``, so a baseline gets at least as many updates as any member), then
exported like a member (re-fitted when ``export.reconstruct`` is on).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.train.build import build_training, tokenizer_from_config
from elastic_lm.train.strategies import FixedSpace, StandardStrategy


def baseline_archs(
    largest: Architecture, shares: tuple[float, ...], size: Any = None
) -> dict[str, Architecture]:
    """For each share of the non-embedding parameters: first-k layers (k = the most whole layers
    that fit) and all layers at one uniform width (heads and FFN units scaled alike), the widest
    whose ``size`` is at or under the share's edge, so no baseline is larger than its budget."""
    n = len(largest.layers)
    full = largest.layers[0]
    out: dict[str, Architecture] = {}
    for share in shares:
        k = max(1, int(share * n + 1e-9))
        layers = [full if i < k else LayerArch(block="identity") for i in range(n)]
        out[f"baseline-first-{k}-layers"] = Architecture(hidden=largest.hidden, layers=tuple(layers))
        factor = share
        while True:
            heads, ffn = max(1, round(full.heads * factor)), max(1, round(full.ffn * factor))
            narrow = LayerArch(block=full.block, heads=heads, ffn=ffn)
            arch = Architecture(hidden=largest.hidden, layers=(narrow,) * n)
            if size is None or size(arch) <= share * size(largest) or factor <= 0.01:
                break
            factor -= 0.01
        out[f"baseline-uniform-x{share}"] = arch
    return out


def baseline_steps(config: Any) -> int:
    """A baseline's steps: the super-network's plus a member's export-time distillation."""
    return int(config.train.steps + config.export.distil_steps)


def train_baseline(config: Any, arch: Architecture, out_dir: Path) -> tuple[Path, str]:
    """Distil ``arch`` alone for the run's budget and export it to ``out_dir``; returns the folder
    and a hash of the trained sub-network's weights (for the determinism check)."""
    from elastic_lm.export.subnet import export_subnetwork
    from elastic_lm.heal.encoder import member_tuner

    with tempfile.TemporaryDirectory() as tmp:
        steps = baseline_steps(config)
        train = config.train.model_copy(update={"steps": steps, "checkpoint_every": steps})
        local = config.model_copy(update={"run_dir": f"{tmp}/run", "train": train})
        parts = build_training(local, progress=False)
        parts.train(StandardStrategy(FixedSpace(arch), seed=config.seed, target="teacher"))
        model = parts.model.eval()
        digest = hashlib.sha256()
        with torch.no_grad():
            sub = model.extract(arch)
            for name, tensor in sorted(sub.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
        refit = local.model_copy(update={"export": local.export.model_copy(update={"distil_steps": 0})})
        tune = member_tuner(refit)  # members are re-fitted at export: so are the baselines
        if tune is not None:
            model = tune(model, arch)
        export_subnetwork(model, arch, out_dir, tokenizer=tokenizer_from_config(local))
    return out_dir, digest.hexdigest()[:16]


def trained_baselines(
    config: Any, run_dir: Path, shares: tuple[float, ...], log: Any = print
) -> tuple[list[tuple[str, Path]], dict[str, Any]]:
    """Train (or re-use) every baseline under ``run_dir/benchmark-baselines``; the first one is
    trained a second time in a scratch folder to check that training is deterministic."""
    import json

    from elastic_lm.export.supernet import load_supernet
    from elastic_lm.metrics.size import count_params
    from elastic_lm.space import preset

    largest = preset(config.space.preset, **config.space.options).largest()
    model_config = load_supernet(run_dir / "train" / "supernet").model.config

    def size(arch: Architecture) -> float:
        return float(count_params(model_config, arch, include_embeddings=False))

    archs = baseline_archs(largest, shares, size)
    steps = baseline_steps(config)
    root = run_dir / "benchmark-baselines"
    found, hashes = [], {}
    for name, arch in archs.items():
        folder, record = root / name, root / f"{name}.json"
        saved = json.loads(record.read_text()) if record.is_file() else {}
        same = saved.get("arch") == arch.to_dict() and saved.get("steps", config.train.steps) == steps
        if folder.is_dir() and same:  # re-use only the same cut and budget
            hashes[name] = saved["weights_sha256_16"]
        else:
            if folder.is_dir():  # an older, differently sized cut: set aside, never deleted
                folder.rename(root / f".{name}.old-{int(time.time())}")
            log(f"baseline {name}: distilling {steps} steps")
            tmp_folder = root / f".{name}.tmp"
            _, hashes[name] = train_baseline(config, arch, tmp_folder)
            tmp_folder.rename(folder)
            saved = {"weights_sha256_16": hashes[name], "arch": arch.to_dict(), "steps": steps}
            record.write_text(json.dumps(saved))
        found.append((name, folder))
    first_name, first_arch = next(iter(archs.items()))
    with tempfile.TemporaryDirectory() as tmp:
        log(f"baseline {first_name}: trained again for the determinism check")
        _, again = train_baseline(config, first_arch, Path(tmp) / "again")
    check = {"baseline": first_name, "first": hashes[first_name], "second": again}
    return found, {**check, "same": hashes[first_name] == again}


def trained_alone(config: Any, run_dir: Path, trials: list[str], log: Any = print) -> list[tuple[str, Path]]:
    """Each named searched trial's architecture distilled alone with a baseline's budget, under
    ``run_dir/benchmark-alone/NAME-alone`` (re-used when there): the same shape without the shared
    super-network, so a gap between it and the member is what the sharing costs (or buys)."""
    import json

    searched = json.loads((run_dir / "search" / "trials.json").read_text())
    by_name = {f"trial-{t['number']}": t for t in searched}
    root = run_dir / "benchmark-alone"
    found = []
    for name in trials:
        if name not in by_name:
            raise SystemExit(f"--alone {name}: no such trial in {run_dir / 'search' / 'trials.json'}")
        folder = root / f"{name}-alone"
        if not folder.is_dir():
            log(f"{name} alone: distilling {baseline_steps(config)} steps")
            tmp_folder = root / f".{name}-alone.tmp"
            train_baseline(config, Architecture.from_dict(by_name[name]["architecture"]), tmp_folder)
            tmp_folder.rename(folder)
        found.append((f"{name}-alone", folder))
    return found


__all__ = ["baseline_archs", "baseline_steps", "train_baseline", "trained_alone", "trained_baselines"]
