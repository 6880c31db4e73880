"""CombinedLoss: weighted named losses, each applied to the sub-networks its 'when' selects."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, cast

from torch import Tensor, nn

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses.registry import LOSSES, make_loss


class CombinedLoss(nn.Module):
    """A weighted sum of losses built from a spec list, e.g.
    ``[{"name": "mlm", "weight": 1.0}, {"name": "relational", "weight": 1.0}]``.

    Each entry may add ``label`` (its key in the parts dict, default the name), ``when`` (the task
    targets at which it applies: ``labels`` / ``teacher`` / ``largest``; default: label losses
    always, teacher losses where a teacher exists) and the loss's own options. ``context`` holds
    options shared by all entries (``n_student_layers``, ``student_width``, ``teacher_width``);
    each loss takes only those its constructor names. ``forward`` returns the total and the
    unweighted, detached parts for logging.
    """

    def __init__(self, spec: Sequence[Mapping[str, Any]], **context: Any) -> None:
        super().__init__()
        if not spec:
            raise ConfigError("train.losses is empty; give at least one, e.g. [{name: mlm}]")
        self.parts = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        self.when: dict[str, tuple[str, ...]] = {}
        for entry in spec:
            options = dict(entry)
            if "name" not in options:
                raise ConfigError(f"loss entry {entry!r} has no 'name'; e.g. {{name: mlm}}")
            name = options.pop("name")
            label = options.pop("label", name)
            weight = float(options.pop("weight", 1.0))
            when = options.pop("when", None)
            if label in self.parts:
                raise ConfigError(f"loss label {label!r} is used twice; give one a 'label'")
            cls = LOSSES.get(name)
            if cls is not None:
                accepted = set(inspect.signature(cls.__init__).parameters)
                options = {k: v for k, v in context.items() if k in accepted} | options
            loss = make_loss(name, **options)
            self.parts[label] = loss
            self.weights[label] = weight
            self.when[label] = tuple(when) if when is not None else loss.default_when
            for target in self.when[label]:
                if target not in ("labels", "teacher", "largest"):
                    raise ConfigError(
                        f"loss {label!r}: when={target!r} unknown; use labels, teacher or largest"
                    )
            if loss.needs_teacher and "labels" in self.when[label]:
                raise ConfigError(f"loss {label!r} needs a teacher, so when cannot include 'labels'")

    def forward(
        self,
        student: Any,
        batch: Mapping[str, Any],
        teacher: Any | None = None,
        target: str = "labels",
        model: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum the parts that apply at ``target`` (a ``SubnetTask.target``).

        ``model`` (the elastic model, its sub-network selected) is needed by block-wise parts,
        which run its layers themselves; ``student`` may then be None if no other part applies.
        """
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for label, loss in self.parts.items():
            if target not in self.when[label]:
                continue
            if loss.needs_teacher and teacher is None:
                raise DataError(f"loss {label!r} at target {target!r} needs teacher outputs")
            if getattr(loss, "layerwise_loss", False):
                if model is None:
                    raise ConfigError(f"loss {label!r} runs the model's layers; pass model=")
                value = cast(Any, loss).layerwise(model, batch, teacher)
            else:
                value = loss(student, batch, teacher)
            parts[label] = value.detach()
            weighted = self.weights[label] * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ConfigError(f"no loss applies at target {target!r}; add one whose 'when' includes it")
        return total, parts

    def attach(self, model: nn.Module, teacher: nn.Module | None) -> None:
        """Let parts that read modules through hooks (``minilm-relation``) register them."""
        for loss in self.parts.values():
            attach = getattr(loss, "attach", None)
            if attach is not None:
                attach(model, teacher)

    def detach(self) -> None:
        """Undo ``attach`` when training ends, so the trained model holds no hooks (and can be copied)."""
        for loss in self.parts.values():
            detach = getattr(loss, "detach", None)
            if detach is not None:
                detach()

    @property
    def layerwise(self) -> bool:
        """Whether some part runs the model's layers itself (block-wise distillation)."""
        return any(getattr(loss, "layerwise_loss", False) for loss in self.parts.values())

    def needs_forward(self, target: str) -> bool:
        """Whether a part applying at ``target`` reads the student's full forward outputs."""
        return any(
            target in self.when[label] and not getattr(loss, "layerwise_loss", False)
            for label, loss in self.parts.items()
        )


__all__ = ["CombinedLoss"]
