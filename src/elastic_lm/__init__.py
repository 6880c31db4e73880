"""elastic-lm: neural architecture search for compact, fast transformer language models."""

from __future__ import annotations

import os

# Nothing in elastic-lm may reach a model hub: fail at once on a stray hub id instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Our own progress bars and summaries say what happens; the libraries' load reports would drown them.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import UserError

__version__ = "0.1.0"
__all__ = ["Architecture", "LayerArch", "UserError", "__version__"]
