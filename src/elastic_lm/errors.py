"""User-facing errors: one line that names the field and the fix, and an exit code.

Anything raised as :class:`UserError` is printed by the CLI without a traceback and exits with
``exit_code`` (2 for bad input, as argparse does).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave us (config, file, name); never a bug of ours."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(UserError):
    """A config value is missing, of the wrong type or not allowed."""


class DataError(UserError):
    """Input data is missing, empty or lacks a named column."""


class AssetError(UserError):
    """An offline asset is unknown or not installed."""


class ArchitectureError(UserError):
    """An architecture is not a member of the search space, or does not fit a model."""


class CheckpointError(UserError):
    """A checkpoint is missing, unsafe to load, or its shapes do not match the model."""
