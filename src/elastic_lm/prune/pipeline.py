"""``elastic-lm prune`` end to end: fine-tune, reorder, train the super-network, search, test, export.

Each stage writes a plain artefact under ``RUN_DIR`` and a stage record (``stages.py``), so the same
call after a crash or an edit resumes where it must. Only the ``evaluate`` stage (and the baselines'
final scoring) read the test split, through :mod:`elastic_lm.prune.final`. ``elastic-lm run`` on a
pruning recipe (``pipeline: prune``) runs the same job and then writes the HTML report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from elastic_lm.architecture import Architecture
from elastic_lm.config import Config
from elastic_lm.errors import ConfigError
from elastic_lm.importance import gradient_importance, reorder_by_importance
from elastic_lm.io import atomic_write_json, atomic_write_text
from elastic_lm.metrics.size import count_params
from elastic_lm.model import ElasticForSequenceClassification
from elastic_lm.pipeline.run import StageOutcome
from elastic_lm.pipeline.rundir import StageRecord
from elastic_lm.prune import final
from elastic_lm.prune.data import TaskData, load_search_data
from elastic_lm.prune.evaluation import evaluate_model, fixed_batches
from elastic_lm.prune.source import is_finetuned, load_classifier, load_tokenizer, resolve_source
from elastic_lm.prune.stages import PRUNE_STAGES, PruneStages
from elastic_lm.prune.training import distill_losses, has_checkpoints, train_fixed
from elastic_lm.report.pareto import spread

SHAPE_KEYS = ("layers", "hidden", "heads", "ffn")
QUALITY_DIRECTION = {"accuracy": "maximize", "f1": "maximize", "loss": "minimize"}
UNITS = {
    "params": "count",
    "params_nonembedding": "count, without embeddings",
    "latency_ms": "ms, CPU",
    "val_accuracy": "fraction",
    "val_f1": "macro F1",
    "val_loss": "nats",
}


@dataclass
class PruneResult:
    """Where everything went, and the headline numbers."""

    run_dir: Path
    pareto: list[dict[str, Any]] = field(default_factory=list)
    exported: list[dict[str, Any]] = field(default_factory=list)
    unpruned: dict[str, float] = field(default_factory=dict)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageOutcome] = field(default_factory=list)  # what this call ran or found done
    report: Path | None = None  # report/index.html when asked for


class PruneJob:
    """One prune run over a validated config; stages are methods, ``run`` chains them."""

    def __init__(
        self, config: Config, *, progress: bool = False, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.root = Path(config.run_dir)
        self.stages = PruneStages(self.root, config, log)
        self.log = log
        self.progress = progress
        self.folder = resolve_source(config.model.source)
        self.tokenizer = load_tokenizer(self.folder)
        self._data: TaskData | None = None
        self._check()

    # --- shared pieces --------------------------------------------------------------------------
    def _check(self) -> None:
        p, task = self.config.prune, self.config.data.task
        if task == "regression" and p.quality_objective != "loss":
            raise ConfigError(
                f"prune.quality_objective={p.quality_objective!r} needs classes; data.task is regression: "
                "set prune.quality_objective to loss"
            )
        space = self.config.space
        if "preset" in space.model_fields_set and not space.preset.startswith("prune-"):
            raise ConfigError(
                f"space.preset={space.preset!r} is not a pruning space; use prune-small, "
                "prune-medium, prune-layer or prune-large"
            )

    @property
    def data(self) -> TaskData:
        if self._data is None:
            self._data = load_search_data(self.config.data, self.tokenizer)
        return self._data

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        return fixed_batches(self.data.validation, self.data.collator, self.config.search.eval_batch_size)

    def quality_name(self) -> str:
        return f"val_{self.config.prune.quality_objective}"

    def space(self, model: ElasticForSequenceClassification) -> Any:
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
        return ElasticForSequenceClassification.from_pretrained(self.stages.dir("finetune") / sub).eval()

    def supernet(self) -> ElasticForSequenceClassification:
        return ElasticForSequenceClassification.from_pretrained(self.stages.dir("train") / "supernet").eval()

    # --- (a) + (b) fine-tune and reorder ----------------------------------------------------------
    def finetune(self) -> dict[str, Any]:
        """Fine-tune the full model unless it already is a classifier for this task; reorder it."""
        stage = "finetune"
        if self.stages.is_done(stage):
            return self.stages.record(stage).outputs  # type: ignore[union-attr]
        d, p = self.data, self.config.prune  # data mistakes surface before anything is written
        started = self.stages.begin(stage)
        model = load_classifier(self.folder, d.num_labels, d.label_names)
        trained = False
        if p.finetune_steps > 0 and not is_finetuned(self.folder, d.num_labels):
            train_fixed(
                model,
                self.config,
                d.train,
                d.validation,
                d.collator,
                d.task,
                self.stages.dir(stage),
                steps=p.finetune_steps,
                learning_rate=p.finetune_learning_rate,
                progress=self.progress,
            )
            trained = True
        model.eval()
        model.save_pretrained(self.stages.dir(stage) / "model-original")
        if p.importance == "gradient":
            train_batches = fixed_batches(d.train, d.collator, self.config.train.batch_size)
            scores = gradient_importance(model, train_batches[: p.importance_batches])
            reorder_by_importance(model, scores)
        else:
            reorder_by_importance(model)
        model.save_pretrained(self.stages.dir(stage) / "model")
        self.tokenizer.save_pretrained(self.stages.dir(stage) / "model")
        metrics = {f"val_{k}": v for k, v in evaluate_model(model, self.val_batches(), d.task).items()}
        outputs = {"finetuned": trained, **metrics}
        self.stages.finish(stage, started, outputs)
        return outputs

    # --- (c) super-network training ---------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Sandwich + in-place distillation by default (the largest learns the labels, others it)."""
        from elastic_lm.train.build import strategy_from_config
        from elastic_lm.train.loop import TrainSettings, train_supernet
        from elastic_lm.train.losses import CombinedLoss

        stage = "train"
        if self.stages.is_done(stage):
            return self.stages.record(stage).outputs  # type: ignore[union-attr]
        self.finetune()
        started = self.stages.begin(stage)
        d, t = self.data, self.config.train
        model = self.finetuned().train()
        space = self.space(model)
        config = self.config.model_copy(deep=True)
        if "strategy" not in t.model_fields_set:
            config.train.strategy = "inplace-distill"
        strategy = strategy_from_config(config, space)
        if "losses" in t.model_fields_set:
            spec = [{"name": s.name, "weight": s.weight, **s.options} for s in t.losses]
        else:
            spec = distill_losses(d.task)
        teacher = self.finetuned() if getattr(strategy, "target", "labels") == "teacher" else None
        settings = TrainSettings.from_config(
            t,
            seed=self.config.seed,
            device=self.config.device,
            collate_fn=d.collator,
            progress=self.progress,
            tensorboard=False,
            resume=has_checkpoints(self.stages.dir(stage)),
        )
        result = train_supernet(
            model,
            strategy,
            CombinedLoss(spec),
            d.train,
            val_data=d.validation,
            teacher=teacher,
            settings=settings,
            run_dir=self.stages.dir(stage),  # the loop's own files go to train/train/
        )
        model.eval()
        model.save_pretrained(self.stages.dir(stage) / "supernet")
        self.tokenizer.save_pretrained(self.stages.dir(stage) / "supernet")
        outputs = {"steps": result.steps, "strategy": config.train.strategy, "val": result.val}
        self.stages.finish(stage, started, outputs)
        return outputs

    # --- (d) search -------------------------------------------------------------------------------
    def objectives(self, supernet: ElasticForSequenceClassification) -> tuple[list[Any], Any]:
        """The size and quality objectives, plus a function giving every metric of an architecture."""
        from elastic_lm.search import Objective

        p, c = self.config.prune, supernet.config
        batches = self.val_batches()
        cache: dict[str, dict[str, float]] = {}

        def metrics(arch: Architecture) -> dict[str, float]:
            key = arch.key()
            if key not in cache:
                m = {
                    f"val_{k}": v for k, v in evaluate_model(supernet, batches, self.data.task, arch).items()
                }
                m["params"] = float(count_params(c, arch))
                m["params_nonembedding"] = float(count_params(c, arch, include_embeddings=False))
                cache[key] = m
            return cache[key]

        def latency(arch: Architecture) -> float:
            return measure_ms(supernet.extract(arch), self.config.search)

        largest = supernet.model.largest()
        objs = []
        if "objectives" in self.config.search.model_fields_set:
            names = [
                (o.name, o.direction or default_direction(o.name)) for o in self.config.search.objectives
            ]
        else:
            names = [
                (p.size_objective, "minimize"),
                (self.quality_name(), QUALITY_DIRECTION[p.quality_objective]),
            ]
        for name, direction in names:
            if name == "latency_ms":
                objs.append(Objective(name, latency, direction))
            elif name in ("params", "params_nonembedding"):
                full = metrics_size(c, largest, name)
                objs.append(
                    Objective(name, lambda a, n=name: metrics_size(c, a, n), direction, True, (0, full))
                )
            elif name in ("val_accuracy", "val_f1", "val_loss"):
                bounds = (0.0, 1.0) if name != "val_loss" else None
                objs.append(Objective(name, lambda a, n=name: metrics(a)[n], direction, bounds=bounds))
            else:
                raise ConfigError(
                    f"search.objectives name {name!r} is unknown for prune; use params, params_nonembedding, "
                    "latency_ms, val_accuracy, val_f1 or val_loss"
                )
        return objs, metrics

    def search(self) -> dict[str, Any]:
        """Multi-objective search on the validation split carved from the training data."""
        from elastic_lm.search import run_search

        stage = "search"
        if self.stages.is_done(stage):
            return self.stages.record(stage).outputs  # type: ignore[union-attr]
        self.train()
        started = self.stages.begin(stage)
        supernet = self.supernet()
        space = self.space(supernet)
        objectives, metrics = self.objectives(supernet)
        s = self.config.search
        storage = s.storage or str(self.stages.dir(stage) / "study.db")
        result = run_search(
            space,
            objectives,
            strategy=s.strategy,
            n_trials=s.trials,
            storage=storage,
            seed=self.config.seed,
            progress=self.progress,
        )
        pareto = {e.number for e in result.pareto()}
        trials = []
        for e in result.evaluations:
            trials.append(
                {
                    "number": e.number,
                    "architecture": e.arch.to_dict(),
                    "metrics": {**metrics(e.arch), **e.metrics},
                    "feasible": e.feasible,
                    "state": "COMPLETE" if e.feasible else "PRUNED",
                }
            )
        history = result.hypervolume_history()
        summary = {
            "objectives": [
                {"name": o.name, "direction": o.direction, "unit": UNITS.get(o.name, "")} for o in objectives
            ],
            "strategy": s.strategy,
            "pareto": sorted(pareto),
            "hypervolume": [[i + 1, h] for i, h in enumerate(history)],
            "reference_point": {
                o.name: b[1] if o.direction == "minimize" else b[0]
                for o, b in zip(objectives, result.bounds(), strict=True)
            },
            "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "unpruned": self.finetune(),
        }
        atomic_write_json(self.stages.dir(stage) / "trials.json", trials)
        atomic_write_json(self.stages.dir(stage) / "summary.json", summary)
        outputs = {
            "trials": len(trials),
            "pareto": sorted(pareto),
            "hypervolume": history[-1] if history else 0.0,
        }
        self.stages.finish(stage, started, outputs)
        return outputs

    def pareto_members(self) -> list[dict[str, Any]]:
        """Pareto members from ``trials.json`` (at most ``export.max_models``, spread over size)."""
        search_dir = self.stages.dir("search")
        trials = json.loads((search_dir / "trials.json").read_text())
        summary = json.loads((search_dir / "summary.json").read_text())
        front = [t for t in trials if t["number"] in set(summary["pareto"])]
        size = summary["objectives"][0]["name"]
        return spread(front, lambda t: t["metrics"][size], self.config.export.max_models)

    # --- (e) test evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Test metrics of the exported Pareto members and of the unpruned fine-tuned model."""
        stage = "evaluate"
        if self.stages.is_done(stage):
            return self.stages.record(stage).outputs  # type: ignore[union-attr]
        self.search()
        started = self.stages.begin(stage)
        supernet = self.supernet()
        models: dict[str, Any] = {"unpruned": self.finetuned()}
        for t in self.pareto_members():
            models[f"trial-{t['number']}"] = (supernet, Architecture.from_dict(t["architecture"]))
        scores = final.final_evaluation(
            models, self.config.data, self.tokenizer, self.config.search.eval_batch_size
        )
        atomic_write_json(self.stages.dir(stage) / "test_metrics.json", scores)
        self.stages.finish(stage, started, {"models": len(scores)})
        return scores

    # --- (f) export -------------------------------------------------------------------------------
    def export(self) -> list[dict[str, Any]]:
        """Each Pareto member as a model folder with its card and measured numbers."""
        from elastic_lm.export import export_subnetwork
        from elastic_lm.prune.vocab import prune_vocabulary_folder

        stage = "export"
        if self.stages.is_done(stage):
            return json.loads((self.stages.dir(stage) / "index.json").read_text())
        self.evaluate()
        started = self.stages.begin(stage)
        supernet = self.supernet()
        tests = json.loads((self.stages.dir("evaluate") / "test_metrics.json").read_text())
        p = self.config.prune
        index = []
        for t in self.pareto_members():
            name = f"trial-{t['number']}"
            arch = Architecture.from_dict(t["architecture"])
            out = self.stages.dir(stage) / name
            metrics = {**t["metrics"], **tests[name]}
            provenance = {
                "run_dir": str(self.root),
                "supernet": str(self.stages.dir("train") / "supernet"),
                "trial": t["number"],
                "source_model": self.config.model.source,
                "strategy": self.config.search.strategy,
            }
            export_subnetwork(
                supernet, arch, out, tokenizer=self.tokenizer, metrics=metrics, provenance=provenance
            )
            if p.vocabulary.enabled:
                before, after = prune_vocabulary_folder(
                    out, self.data, reserve=p.vocabulary.reserve, min_count=p.vocabulary.min_count
                )
                metrics.update(params_before_vocabulary=before, params=after, vocabulary_pruned=True)
            metrics["latency_ms"] = measure_ms(load_exported(out), self.config.search)
            update_card(out, metrics)
            index.append({"name": name, "path": f"export/{name}", "metrics": metrics})
        atomic_write_json(self.stages.dir(stage) / "index.json", index)
        self.stages.finish(stage, started, {"models": len(index)})
        return index

    # --- baselines --------------------------------------------------------------------------------
    def baselines(self) -> list[dict[str, Any]]:
        from elastic_lm.prune.baselines import run_baselines

        stage = "baselines"
        file = self.stages.dir("search") / "baselines.json"
        if self.stages.is_done(stage) and file.is_file():
            return json.loads(file.read_text())
        self.finetune()
        started = self.stages.begin(stage)
        points = run_baselines(self)
        atomic_write_json(file, points)
        self.stages.finish(stage, started, {"points": len(points)})
        return points

    # --- report (``elastic-lm run``) -------------------------------------------------------------
    def report(self) -> Path:
        """``report/index.html`` of the run (Pareto plots with the baselines); rewritten only after
        a stage it shows was redone."""
        from elastic_lm.report import write_report

        self.export()  # first: the report's inputs are the finished stages' records
        stage = "report"
        page = self.stages.dir(stage) / "index.html"
        if self.stages.is_done(stage) and page.is_file():
            return page
        started = self.stages.begin(stage)
        page = write_report(self.root)
        self.stages.finish(stage, started, {"report": str(page)})
        return page

    def run(self, baselines: bool | None = None, report: bool = False) -> PruneResult:
        """All stages in order (done ones are skipped); ``report`` also writes the HTML report."""
        with_baselines = baselines if baselines is not None else self.config.prune.baselines
        wanted = [
            s for s in PRUNE_STAGES if (s != "baselines" or with_baselines) and (s != "report" or report)
        ]
        done_before = {s: self._valid_record(s) for s in wanted}
        if None in done_before.values():  # something upstream runs again: so does the report
            done_before.pop("report", None)
        for stage, record in done_before.items():
            if record is not None and self.log is not None:
                self.log(f"[{stage}] done earlier ({record.seconds:.0f} s); skipping")
        exported = self.export()
        tests = json.loads((self.stages.dir("evaluate") / "test_metrics.json").read_text())
        out = PruneResult(self.root, self.pareto_members(), exported, tests.get("unpruned", {}))
        if with_baselines:
            out.baselines = self.baselines()
        if report:
            out.report = self.report()
        for stage in wanted:
            record = self.stages.record(stage)
            assert record is not None  # every wanted stage has just finished or was done
            before = done_before.get(stage)
            if before is not None and before.finished_at == record.finished_at:
                out.stages.append(StageOutcome(stage, "skipped", 0.0, record.outputs))
            else:
                out.stages.append(StageOutcome(stage, "ran", record.seconds, record.outputs))
        return out

    def _valid_record(self, stage: str) -> StageRecord | None:
        """The record of ``stage`` if it is still valid (the stage will be skipped), else None."""
        record = self.stages.record(stage)
        if record is None or not self.stages.is_done(stage):
            return None
        output = {
            "baselines": self.stages.dir("search") / "baselines.json",
            "report": self.stages.dir(stage) / "index.html",
        }
        if stage in output and not output[stage].is_file():
            return None
        return record


def default_direction(name: str) -> str:
    """Accuracy and F1 are maximised, everything else (size, latency, loss) minimised."""
    return "maximize" if name in ("val_accuracy", "val_f1") else "minimize"


def metrics_size(config: Any, arch: Architecture, name: str) -> float:
    return float(count_params(config, arch, include_embeddings=name == "params"))


def measure_ms(model: torch.nn.Module, p: Any) -> float:
    """Median CPU latency of a standalone model (never the sliced super-network); ``p`` is the
    config's ``search`` section (``latency_batch_size``, ``latency_seq_len``, ...)."""
    from elastic_lm.metrics.latency import measure_latency_ms

    m = measure_latency_ms(
        model.eval().cpu(),
        batch_size=p.latency_batch_size,
        seq_len=min(p.latency_seq_len, model.config.max_position_embeddings - 2),
        threads=p.latency_threads,
        repeats=p.latency_repeats,
        warmup=2,
    )
    return float(m.median_ms)


def load_exported(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    import elastic_lm.model  # noqa: F401  (registers the elastic-lm class for non-uniform exports)

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def update_card(folder: Path, metrics: dict[str, Any]) -> None:
    """Put the measured numbers into ``export.json`` and the model card."""
    from elastic_lm.export.card import render_card

    record = json.loads((folder / "export.json").read_text())
    record["metrics"] = {**record.get("metrics", {}), **metrics}
    if "params" in metrics:
        record["params"] = int(metrics["params"])
    atomic_write_json(folder / "export.json", record)
    atomic_write_text(folder / "README.md", render_card(record))


def run_prune(
    config: Config,
    *,
    baselines: bool | None = None,
    progress: bool = False,
    report: bool = False,
    log: Callable[[str], None] | None = None,
) -> PruneResult:
    """``elastic-lm prune CONFIG`` from Python: every stage, resumable, in ``config.run_dir``.

    ``report`` also writes ``report/index.html`` (as ``elastic-lm run`` does); ``log`` (e.g. ``print``)
    is told which stages run and which are skipped.
    """
    return PruneJob(config, progress=progress, log=log).run(baselines, report)


__all__ = ["PruneJob", "PruneResult", "run_prune"]
