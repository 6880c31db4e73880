"""The option tables of ``docs/cli.md``, generated from the parser so the page cannot drift.

Each command's section holds a block between ``<!-- options: NAME -->`` and ``<!-- /options -->``;
``python -m elastic_lm.cli.docs docs/cli.md`` rewrites every block (``--check`` only compares, exit 1
when a block is stale). The prose around the blocks stays hand-written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from elastic_lm.cli.main import COMMANDS, build_parser

_BLOCK = re.compile(r"(<!-- options: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.DOTALL)


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _usage(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    metavar = action.metavar or (action.dest.upper() if action.choices is None else None)
    value = metavar if metavar else "{" + ",".join(str(c) for c in action.choices or ()) + "}"
    return f"{flags} {value}"


def options_table(command: str) -> str:
    """Markdown table of every argument of ``command`` (positional first), from its help strings."""
    rows = ["| option | meaning |", "|---|---|"]
    for action in _subparser(command)._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        text = (action.help or "").replace("|", "\\|").replace("%%", "%")
        if action.default not in (None, False, argparse.SUPPRESS, []) and "default" not in text:
            text += f" (default {action.default})"
        usage = _usage(action).replace("|", "\\|")
        rows.append(f"| `{usage}` | {text} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every options block regenerated."""

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in COMMANDS:
            raise ValueError(f"docs/cli.md has an options block for unknown command {name!r}")
        return f"{match.group(1)}{options_table(name)}{match.group(4)}"

    return _BLOCK.sub(block, text)


def documented_commands(text: str) -> list[str]:
    return [m["name"] for m in _BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [Path(a) for a in args if a != "--check"] or [Path("docs/cli.md")]
    stale = []
    for path in paths:
        old = path.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            stale.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check and stale:
        print(f"stale option tables in {', '.join(map(str, stale))}: run python -m elastic_lm.cli.docs")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
