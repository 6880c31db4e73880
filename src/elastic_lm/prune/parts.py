"""What every stage of a prune run shares: the source model, its tokenizer, the task data, the space.

Built once per run by the pruning recipe (:mod:`elastic_lm.pipeline.recipes.prune`) and handed to
its stages and to the baselines; loading is lazy, so a run whose stages are all done reads no data.
Constructing it checks the config first (a regression task with a class objective, a NAS space),
so those mistakes are one-line errors before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.model import ElasticForSequenceClassification
from elastic_lm.prune.coverage import front_gaps
from elastic_lm.prune.data import TaskData, load_search_data
from elastic_lm.prune.evaluation import fixed_batches
from elastic_lm.prune.source import load_tokenizer, resolve_source
from elastic_lm.search.pareto import fewest_within_gap, spread


class PruneParts:
    """The shared inputs of one prune run over a validated config."""

    def __init__(
        self, config: Config, *, progress: bool = False, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.root = Path(config.run_dir)
        self.log = log
        self.progress = progress
        check_prune_config(config)
        self.folder = resolve_source(config.model.source)
        self.tokenizer = load_tokenizer(self.folder)
        self._data: TaskData | None = None
        self.notes: list[str] = []  # what adapting to a tiny data set changed (prune.smalldata)

    def dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def data(self) -> TaskData:
        """Train and validation rows; on a tiny set, ``config`` is adapted first (read it after this)."""
        if self._data is None:
            if self.config.prune.adapt_small_data:
                from elastic_lm.prune.data import count_rows
                from elastic_lm.prune.smalldata import adapt_to_size

                self.config, self.notes = adapt_to_size(self.config, count_rows(self.config.data))
                for note in self.notes:
                    self._warn(note)
            self._data = load_search_data(self.config.data, self.tokenizer)
        return self._data

    def _warn(self, message: str) -> None:
        if self.log is not None:
            self.log(f"warning: {message}")
        else:
            import warnings

            warnings.warn(message, UserWarning, stacklevel=3)

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        return fixed_batches(self.data.validation, self.data.collator, self.config.search.eval_batch_size)

    def quality_name(self) -> str:
        return f"val_{self.config.prune.quality_objective}"

    def space(self, model: ElasticForSequenceClassification) -> Any:
        """The pruning space (``space.preset``, default prune-small) at the model's own shape."""
        from elastic_lm.space import preset

        c = model.config
        name = self.config.space.preset if "preset" in self.config.space.model_fields_set else "prune-small"
        shape = {
            "layers": c.num_layers,
            "hidden": c.hidden_size,
            "heads": c.num_attention_heads,
            "ffn": c.intermediate_size,
        }
        shape.update(self.config.space.options)
        return preset(name, **shape)

    def finetuned(self, original: bool = False) -> ElasticForSequenceClassification:
        sub = "model-original" if original else "model"
        return ElasticForSequenceClassification.from_pretrained(self.dir("finetune") / sub).eval()

    def supernet(self) -> ElasticForSequenceClassification:
        return ElasticForSequenceClassification.from_pretrained(self.dir("train") / "supernet").eval()

    def unpruned(self) -> dict[str, Any]:
        """The fine-tune stage's recorded outputs (validation metrics of the full model)."""
        return json.loads((self.dir("finetune") / "stage.json").read_text())["outputs"]

    def train_alone(
        self, model: torch.nn.Module, work_dir: Path, steps: int, *, teacher: torch.nn.Module | None = None
    ) -> None:
        """Train ``model`` at its full size on the task at ``prune.finetune_learning_rate``, distilled
        from ``teacher`` when given; resumable from ``work_dir``. The fine-tuning, every baseline and
        every refined member train this one way."""
        from elastic_lm.prune import training

        d = self.data
        training.train_fixed(
            model, self.config, d.train, d.validation, d.collator, d.task, work_dir, steps=steps,
            learning_rate=self.config.prune.finetune_learning_rate, teacher=teacher, progress=self.progress,
        )  # fmt: skip

    def pareto_members(self) -> list[dict[str, Any]]:
        return pareto_members(self.root, self.config.export.max_models)

    def thinning_warning(self) -> str | None:
        """:func:`thinning_warning` for this run, logged too."""
        warning = thinning_warning(self.root, self.config.export.max_models, self.config.prune.front_max_gap)
        if warning is not None and self.log is not None:
            self.log(f"warning: {warning}")
        return warning


def _covering_set(
    run_dir: Path,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], dict[str, Any], str]:
    """The search's covering set (:mod:`elastic_lm.prune.coverage`: the Pareto front and gap fillers),
    every trial by number, the search summary and the size objective's name."""
    search_dir = Path(run_dir) / "search"
    trials = json.loads((search_dir / "trials.json").read_text())
    summary = json.loads((search_dir / "summary.json").read_text())
    by_number = {t["number"]: t for t in trials}
    chosen = set(summary.get("exported", summary["pareto"]))
    return [by_number[n] for n in chosen], by_number, summary, summary["objectives"][0]["name"]


def pareto_members(run_dir: Path, max_models: int | None) -> list[dict[str, Any]]:
    """Members to export from ``search/trials.json`` (at most ``max_models``, spread over size): the
    covering set of :mod:`elastic_lm.prune.coverage` (the Pareto front and gap fillers), then, while
    room is left, the members validation could not tell from them (``tied``, best first)."""
    covering, by_number, summary, size = _covering_set(run_dir)
    members = spread(covering, lambda t: t["metrics"][size], max_models)
    room = len(by_number) if max_models is None else max_models - len(members)
    extra = [{**by_number[n], "tied": True} for n in summary.get("tied", [])[: max(room, 0)]]
    return sorted(members + extra, key=lambda t: t["metrics"][size])


def thinning_warning(run_dir: Path, max_models: int | None, max_gap: float) -> str | None:
    """A warning when ``export.max_models`` thins the covering set into a gap wider than ``max_gap``
    of the size range that the set itself did not have (the users who wanted that size get nothing),
    naming the ``max_models`` that would keep it."""
    covering, _, _, size = _covering_set(run_dir)
    values = sorted(t["metrics"][size] for t in covering)
    if max_models is None or len(values) <= max_models or values[-1] <= values[0]:
        return None
    span = values[-1] - values[0]
    kept = [t["metrics"][size] for t in spread(covering, lambda t: t["metrics"][size], max_models)]
    widest = front_gaps(kept, values[-1])["front_max_gap"]  # spread keeps both ends: the same range
    needed = fewest_within_gap(values, max_gap * span)
    if widest <= max_gap or needed <= max_models:
        return None
    return (
        f"export.max_models={max_models} leaves a gap of {widest:.3f} of the size range between "
        f"exported members (prune.front_max_gap {max_gap:g}); {needed} would keep every gap within "
        f"it: set export.max_models to {needed}"
    )


def check_prune_config(config: Config) -> None:
    """Mistakes only a prune run can see, before anything is loaded or written."""
    p, task = config.prune, config.data.task
    if task == "regression" and p.quality_objective != "loss":
        raise ConfigError(
            f"prune.quality_objective={p.quality_objective!r} needs classes; data.task is regression: "
            "set prune.quality_objective to loss"
        )
    space = config.space
    if "preset" in space.model_fields_set and not space.preset.startswith("prune-"):
        raise ConfigError(
            f"space.preset={space.preset!r} is not a pruning space; use prune-small, "
            "prune-medium, prune-layer or prune-large"
        )


__all__ = ["PruneParts", "check_prune_config", "pareto_members"]
