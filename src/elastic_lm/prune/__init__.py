"""Structural pruning of a fine-tuned encoder by NAS (Klein et al., TMLR 2024), end to end.

```python
from elastic_lm.config import load_config
from elastic_lm.prune import run_prune
result = run_prune(load_config("configs/prune-sentiment.yaml", budget="quick"), baselines=True)
```
See ``docs/pruning.md``.
"""

from __future__ import annotations

from elastic_lm.importance import gradient_importance
from elastic_lm.prune.data import TaskData, load_search_data
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.final import final_evaluation
from elastic_lm.prune.pipeline import PruneJob, PruneResult, run_prune
from elastic_lm.prune.vocab import kept_token_ids, prune_vocabulary_folder

__all__ = [
    "PruneJob",
    "PruneResult",
    "TaskData",
    "evaluate_model",
    "final_evaluation",
    "fixed_batches",
    "gradient_importance",
    "kept_token_ids",
    "load_search_data",
    "prune_vocabulary_folder",
    "run_prune",
]
