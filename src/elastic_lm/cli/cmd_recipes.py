"""``elastic-lm recipes``: the recipes that ship with the package, runnable by name from anywhere."""

from __future__ import annotations

import argparse
import json
import textwrap

from elastic_lm.config.recipes import list_recipes

HELP = "list the shipped recipes (run one by name: elastic-lm run NAME --budget quick)"
EXAMPLES = (
    "  elastic-lm recipes\n"
    "  elastic-lm recipes --json\n"
    "  elastic-lm run elm-mlm --budget quick      # a recipe by name, from any directory"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``elastic-lm recipes``."""
    parser.add_argument("--json", action="store_true", help="print JSON (name, path, budgets, description)")


def run(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    if args.json:
        rows = [
            {"name": r.name, "path": str(r.path), "budgets": list(r.budgets), "description": r.description}
            for r in recipes
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r.name) for r in recipes), default=4)
    for recipe in recipes:
        budgets = ", ".join(recipe.budgets) or "-"
        summary = textwrap.shorten(recipe.description, width=100, placeholder=" ...")
        print(f"{recipe.name:<{width}}  budgets: {budgets}")
        print(f"{'':<{width}}  {summary}")
    if recipes:
        print("\nrun one by name, from any directory: elastic-lm run NAME --budget quick")
    return 0
