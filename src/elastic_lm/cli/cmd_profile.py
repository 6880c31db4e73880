"""``elastic-lm profile``: measure latency on this machine and fit a latency predictor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from elastic_lm.cli.common import add_config_arguments, config_from_args
from elastic_lm.config import load_config
from elastic_lm.errors import UserError

HELP = "measure latency on this machine and fit a latency predictor"
EXAMPLES = (
    "  elastic-lm profile configs/elm-mlm.yaml --samples 64\n"
    "  elastic-lm profile runs/elm-mlm/train/supernet --space elm --threads 4 --out runs/elm-mlm/profile\n"
    "  elastic-lm profile --space elm --samples 32 --seq-len 64 --out /tmp/profile   # random weights"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--space",
        metavar="PRESET",
        help="search-space preset name or a saved space (.json/.yaml of SearchSpace.to_dict); needed with "
        "a super-network folder; alone: profile a random-weight super-network of that space",
    )
    # Unset options come from the config's `profile` section (the same settings `elastic-lm run` uses).
    parser.add_argument("--samples", type=int, help="sub-networks to measure (default: profile.samples)")
    parser.add_argument(
        "--held-out",
        type=int,
        help="of those, scored and not fitted (default: profile.held_out; a quarter with --samples)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="batch size of a timed call (default: profile.batch_size)"
    )
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (default: profile.seq_len)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: profile.threads)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: profile.device")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), help="default: profile.backend")
    parser.add_argument("--repeats", type=int, help="timed rounds per model (default: profile.repeats)")
    parser.add_argument("--warmup", type=int, help="untimed calls per model (default: profile.warmup)")
    parser.add_argument(
        "--clock",
        choices=("wall", "thread"),
        help="wall: wall-clock latency; thread: CPU time of the timing thread, steadier on a busy shared "
        "CPU (needs --threads 1, cpu, torch); default: profile.clock",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="output folder (default RUN_DIR/profile)")
    parser.add_argument("--json", action="store_true", help="print predictor errors and files as JSON")


_FROM_CONFIG = (
    "samples",
    "batch_size",
    "seq_len",
    "threads",
    "device",
    "backend",
    "repeats",
    "warmup",
    "clock",
)


def profile_section(args: argparse.Namespace) -> Any:
    """The ``profile`` section of the config in play (defaults for a bare super-network folder)."""
    target = Path(args.config) if args.config else None
    if target is not None and target.is_dir() and not (target / "config.yaml").is_file():
        return load_config(None, args.overrides, budget=args.budget).profile  # a super-network folder
    return config_from_args(args).profile


def fill_from_config(args: argparse.Namespace) -> None:
    """Every option left unset takes the config's value, so `profile` measures what `run` would."""
    section = profile_section(args)
    for name in _FROM_CONFIG:
        if getattr(args, name) is None:
            setattr(args, name, getattr(section, name))


def _space(name: str) -> object:
    """A preset name, or a file holding ``SearchSpace.to_dict()`` as JSON or YAML."""
    from elastic_lm.space import SearchSpace, preset, preset_names

    path = Path(name)
    if path.suffix in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"--space {name}: file not found; give a preset ({', '.join(preset_names())})")
        import yaml

        return SearchSpace.from_dict(yaml.safe_load(path.read_text()))
    if name not in preset_names():
        raise UserError(f"--space {name!r} is not a preset; use one of {', '.join(preset_names())} or a file")
    return preset(name)


def _supernet_and_space(args: argparse.Namespace) -> tuple[object, object, Path]:
    """A CONFIG file, a super-network folder (+ --space), or --space alone."""
    from elastic_lm.profile import load_supernet, supernet_for_space, supernet_from_config

    target = Path(args.config) if args.config else None
    if target is not None and target.is_dir():
        supernet, saved_space = load_supernet(target)
        if args.space:
            space = _space(args.space)
        elif saved_space is not None:
            space = saved_space
        else:
            raise UserError(
                f"{target} has no space.json; name its search space with --space PRESET (or a space file)"
            )
        out = args.out or (args.run_dir / "profile" if args.run_dir else target / "profile")
        return supernet, space, out
    if target is None and args.space:
        space = _space(args.space)
        supernet = supernet_for_space(space)
        run_dir = args.run_dir or Path("runs/default")
        return supernet, space, args.out or run_dir / "profile"
    config = config_from_args(args)
    supernet, space, note = supernet_from_config(config)
    print(f"super-network: {note}")
    return supernet, space, args.out or Path(config.run_dir) / "profile"


def run(args: argparse.Namespace) -> int:
    from elastic_lm.profile import ProfileSettings, fit_predictors

    samples_given = args.samples is not None
    fill_from_config(args)
    settings = ProfileSettings.from_attributes(args)
    if args.held_out is None:
        args.held_out = max(2, args.samples // 4) if samples_given else profile_section(args).held_out
    held_out = args.held_out
    if args.samples - held_out < 2:
        raise UserError(
            f"--samples={args.samples} with --held-out={held_out} leaves fewer than 2 to fit; "
            "raise --samples or lower --held-out"
        )
    supernet, space, out = _supernet_and_space(args)
    print(
        f"profiling {args.samples} sub-networks (batch {settings.batch_size} x {settings.seq_len} tokens, "
        f"{settings.device}, {settings.threads} thread(s), {settings.backend}) ...",
        file=sys.stderr if args.json else sys.stdout,
    )
    result = fit_predictors(
        supernet,
        space,  # type: ignore[arg-type]
        settings,
        n_train=args.samples - held_out,
        n_held_out=held_out,
        seed=args.seed,
        out_dir=out,
    )
    if args.json:
        files = {k: str(v) for k, v in result.files.items()}
        print(json.dumps({"held_out": held_out, "errors": result.errors, "files": files}, indent=2))
        return 0
    print(f"{'predictor':<10} {'MAPE':>7} {'tau':>6} {'max err ms':>10}   (held-out: {held_out})")
    for name, err in result.errors.items():
        print(f"{name:<10} {err['mape']:>7.1%} {err['kendall_tau']:>6.3f} {err['max_abs_error_ms']:>10.2f}")
    for path in result.files.values():
        print(f"written: {path}")
    return 0
