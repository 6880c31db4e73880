"""The one registry of losses by name (LOSSES) and make_loss, which builds one from a config spec."""

from __future__ import annotations

import inspect
from typing import Any

from elastic_lm.errors import ConfigError
from elastic_lm.train.losses.base import Loss
from elastic_lm.train.losses.blockwise import BlockwiseDistillation
from elastic_lm.train.losses.hidden import (
    AttentionDistillation,
    HiddenStateDistillation,
    RelationalLoss,
)
from elastic_lm.train.losses.logits import LogitDistillation, TopKLogitDistillation
from elastic_lm.train.losses.task import ClassificationLoss, CLMLoss, MLMLoss, RegressionLoss

LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MLMLoss,
        CLMLoss,
        ClassificationLoss,
        RegressionLoss,
        LogitDistillation,
        TopKLogitDistillation,
        HiddenStateDistillation,
        AttentionDistillation,
        RelationalLoss,
        BlockwiseDistillation,
    )
}


def make_loss(name: str, **kwargs: Any) -> Loss:
    """Build one loss by its config name; unknown names and options are user errors."""
    if name not in LOSSES:
        raise ConfigError(f"loss name={name!r} is unknown; use one of {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"option(s) {unknown} are not accepted by loss {name!r}; allowed: {sorted(allowed)}"
        )
    return cls(**kwargs)


__all__ = ["LOSSES", "make_loss"]
