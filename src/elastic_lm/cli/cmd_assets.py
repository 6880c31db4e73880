"""``elastic-lm assets``: which offline models and corpora are here, and how to get the rest."""

from __future__ import annotations

import argparse
import json

from elastic_lm.assets import get_asset, list_assets, smollm2_path
from elastic_lm.assets.smollm2 import is_converted, smollm2_cache_path

HELP = "List offline models and corpora: installed or not, where, size, licence, install command."

EXAMPLES = """\
  elastic-lm assets                     # readable table
  elastic-lm assets --json              # the same facts, machine-readable
  elastic-lm assets austen sms-spam     # only these
  elastic-lm assets --prepare           # build caches (SmolLM2 GGUF -> safetensors, once)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``elastic-lm assets``."""
    parser.add_argument("names", nargs="*", help="assets to show (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--prepare", action="store_true", help="build the caches (converted SmolLM2 weights)")


def _facts(names: list[str]) -> list[dict[str, object]]:
    assets = [get_asset(n) for n in names] if names else list_assets()
    rows = []
    for asset in assets:
        info = asset.info()
        if asset.name == "smollm2-135m":
            info["prepared"] = str(smollm2_cache_path()) if is_converted() else None
        rows.append(info)
    return rows


def _size(n: object) -> str:
    value = float(n) if isinstance(n, int | float) else 0.0
    return f"{value / 1e6:.1f} MB" if value else "-"


def format_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width table; missing assets show their install command on the next line."""
    header = ("name", "kind", "installed", "size", "licence")
    lines = [
        (
            str(r["name"]),
            str(r["kind"]),
            "yes" if r["installed"] else "NO",
            _size(r["size_bytes"]),
            str(r["licence"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row, line in zip(rows, lines, strict=True):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if row["installed"]:
            out.append(f"    at {row['path']}")
            if row.get("prepared"):
                out.append(f"    converted: {row['prepared']}")
        else:
            out.append(f"    install: {row['install']}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Print the asset table (or JSON); with ``--prepare`` build caches first. 1 if any missing."""
    names = list(args.names or [])
    if args.prepare and (not names or "smollm2-135m" in names):
        path = smollm2_path()
        if not args.json:
            print(f"SmolLM2 ready at {path}")
    rows = _facts(names)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0 if all(r["installed"] for r in rows) else 1
