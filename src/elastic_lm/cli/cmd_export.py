"""``elastic-lm export``: turn chosen sub-networks into standalone Hugging Face models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.cli.common import add_override_arguments, run_config
from elastic_lm.errors import ArchitectureError, UserError

HELP = "turn chosen sub-networks into standalone Hugging Face models"
EXAMPLES = (
    "  elastic-lm export runs/elm-mlm/train/supernet --arch best.json --out models/small --onnx\n"
    "  elastic-lm export runs/elm-mlm --pareto\n"
    "  elastic-lm export elm-mlm --budget quick --pareto --set export.max_models=2\n"
    "  elastic-lm export runs/elm-mlm --pareto --max-params 10000000"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        metavar="SUPERNET_DIR|RUN_DIR|CONFIG",
        help="super-network folder (save_pretrained of an ElasticFor* model) with --arch; with --pareto a "
        "run directory, or a YAML config or recipe name whose run_dir is read",
    )
    add_override_arguments(parser)  # --set, --budget, --print-config (the run's config.yaml)
    parser.add_argument("--arch", metavar="JSON_OR_FILE", help="architecture as JSON text or a .json file")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (with --arch); must not exist yet"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (only once the export succeeded)"
    )
    parser.add_argument(
        "--pareto", action="store_true", help="export the run's Pareto set into RUN_DIR/export/<name>/"
    )
    parser.add_argument(
        "--max-params", type=int, metavar="N", help="with --pareto: only the best member with <= N parameters"
    )
    parser.add_argument(
        "--supernet",
        type=Path,
        metavar="DIR",
        help="with --pareto: super-network folder (default RUN_DIR/train/supernet)",
    )
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx (needs elastic-lm[onnx])")
    parser.add_argument(
        "--no-stock", action="store_true", help="always save elastic-lm's own class, even for uniform shapes"
    )
    parser.add_argument(
        "--seq-len", type=int, default=128, help="sequence length for FLOPs and the ONNX trace"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the exported models (path, format, class, size) as JSON"
    )


def parse_architecture(text: str) -> Architecture:
    """``--arch`` as a file path or JSON text; one-line errors for anything else."""
    source = "--arch"
    if not text.lstrip().startswith(("{", "[")):
        path = Path(text)
        if not path.is_file():
            raise ArchitectureError(
                f"--arch {text!r} is neither JSON text nor an existing file; pass a .json file or JSON text"
            )
        text, source = path.read_text(encoding="utf-8"), f"--arch file {path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ArchitectureError(
            f"{source} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            'pass e.g. {"hidden": 384, "layers": [{"block": "bert", "heads": 6, "ffn": 768}]}'
        ) from err
    if isinstance(data, dict) and "architecture" in data and "layers" not in data:
        data = data["architecture"]  # a trial record or export.json
    try:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return Architecture.from_dict(data)
    except (KeyError, ValueError, TypeError) as err:
        raise ArchitectureError(
            f"{source} is not an architecture ({err}); it needs 'hidden' and 'layers'"
        ) from err


def run(args: argparse.Namespace) -> int:
    from elastic_lm.export import export_pareto, export_subnetwork, load_supernet
    from elastic_lm.export.onnx import require_onnx
    from elastic_lm.export.supernet import check_in_space

    prefer_stock = not args.no_stock
    if args.pareto:
        if args.arch or args.out:
            raise UserError("--pareto exports the run's own architectures; drop --arch / --out")
        from elastic_lm.pipeline.lock import locked

        # A run's config (saved config.yaml, or a YAML / recipe with --budget and --set) gives the
        # export section's defaults, as the run's own export stage uses them.
        config = run_config(args)
        run_dir = Path(config.run_dir) if config is not None else Path(args.config)
        onnx = args.onnx or (config is not None and config.export.onnx)
        if onnx:
            require_onnx()
        with locked(run_dir, create=False):  # not while another command writes there
            done = export_pareto(
                run_dir,
                supernet_dir=args.supernet,
                max_params=args.max_params,
                max_models=None if config is None else config.export.max_models,
                onnx=onnx,
                prefer_stock=prefer_stock,
                seq_len=args.seq_len,
            )
        if args.json:
            print(json.dumps([_record(item) for item in done], indent=2))
            return 0
        for item in done:
            print(f"exported {item.path} ({item.format}: {item.model_class}, {item.params:,} parameters)")
        print(f"index written: {run_dir / 'export' / 'index.json'}")
        return 0
    if args.onnx:
        require_onnx()
    if args.overrides or args.budget:
        raise UserError("--set and --budget apply to a run's config, i.e. with --pareto")
    if not args.arch or not args.out:
        raise UserError("--arch and --out are required (or use --pareto with a run directory)")
    if args.max_params is not None or args.supernet is not None:
        raise UserError("--max-params and --supernet only apply with --pareto")
    if (args.out.exists() or args.out.is_symlink()) and not args.overwrite:
        kind = "folder" if args.out.is_dir() else "file"
        raise UserError(
            f"--out {args.out} is an existing {kind}; choose a new path, or pass --overwrite to replace it"
        )
    arch = parse_architecture(args.arch)
    supernet = load_supernet(args.config)
    check_in_space(supernet.space, arch)
    tokenizer = None
    if supernet.has_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(supernet.path)
    item = export_subnetwork(
        supernet.model,
        arch,
        args.out,
        tokenizer=tokenizer,
        provenance={**supernet.provenance, "supernet": str(args.config)},
        onnx=args.onnx,
        prefer_stock=prefer_stock,
        seq_len=args.seq_len,
    )
    if args.json:
        print(json.dumps([_record(item)], indent=2))
        return 0
    print(f"exported {item.path} ({item.format}: {item.model_class}, {item.params:,} parameters)")
    return 0


def _record(item: Any) -> dict[str, Any]:
    """One exported model for ``--json``: where, which class, how big."""
    return {
        "path": str(item.path),
        "format": item.format,
        "model_class": item.model_class,
        "params": item.params,
    }
