"""Super-network training parts: strategies pick the sub-networks of a step, losses compare outputs.

The training loop stays thin: ``for task in strategy(step)``: select ``task.arch``, run the model,
and add ``combined_loss(outputs, batch, teacher, target=task.target)``. See ``docs/training.md``.
"""

from elastic_lm.train.losses import LOSSES, CombinedLoss, blockwise_loss, make_loss
from elastic_lm.train.representation import EmbeddingDistillation, MiniLMRelationDistillation
from elastic_lm.train.strategies import STRATEGIES, Strategy, SubnetTask, make_strategy
from elastic_lm.train.teacher_cache import TopKLogitCache

__all__ = [
    "LOSSES",
    "STRATEGIES",
    "CombinedLoss",
    "EmbeddingDistillation",
    "MiniLMRelationDistillation",
    "Strategy",
    "SubnetTask",
    "TopKLogitCache",
    "blockwise_loss",
    "make_loss",
    "make_strategy",
]
