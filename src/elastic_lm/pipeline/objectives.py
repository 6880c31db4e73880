"""Objectives and constraints by config name: what ``search.objectives: [{name: val_loss}]`` means.

Each name says how to compute the value for an architecture of the trained super-network, its
default direction, its unit (shown in the report) and whether it is cheap (analytic, a predictor)
or expensive (an evaluation pass, a measurement on the *extracted* model). Expensive values that
share one computation (loss, perplexity, accuracy, F1) are computed once per architecture.

This module lives in ``pipeline`` rather than ``search`` so the search engine keeps knowing
nothing of models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError, DataError
from elastic_lm.search import Constraint, Objective

ArchFn = Callable[[Architecture], float]
LM_KINDS = ("masked-lm", "causal-lm")


@dataclass
class MetricContext:
    """What the named metrics need: the super-network, fixed eval batches, where the run lives.

    ``eval_cache`` maps ``arch.key()`` to the metrics of one evaluation pass; pass a shared dict
    to reuse evaluations across searches (the benchmark does).
    """

    model: Any
    batches: Sequence[dict[str, Any]] | None = None
    run_dir: Path | None = None
    latency_batch_size: int = 1
    latency_seq_len: int = 128
    latency_threads: int | None = 1
    latency_repeats: int = 10
    decode_prompt_len: int = 32
    decode_new_tokens: int = 32
    device: str = "cpu"
    eval_cache: dict[str, dict[str, float]] = field(default_factory=dict)
    decode_cache: dict[str, dict[str, float]] = field(default_factory=dict)
    teacher: Any = None  # the frozen teacher, for ``teacher_cosine``
    _predictor: Any = None
    _teacher_embeddings: list[Any] | None = None

    @property
    def task_kind(self) -> str:
        from elastic_lm.evaluate import task_kind

        kind = task_kind(self.model.config.task)
        if kind == "classification" and self.model.config.num_labels == 1:
            return "regression"
        return kind

    def evaluation(self, arch: Architecture) -> dict[str, float]:
        """One evaluation pass per architecture, however many metrics read it."""
        key = arch.key()
        if key not in self.eval_cache:
            from elastic_lm.evaluate import evaluate_subnetwork

            if self.batches is None:
                raise ConfigError("evaluation metrics need eval batches; build them with fixed_eval_batches")
            self.eval_cache[key] = evaluate_subnetwork(self.model, arch, self.batches, self.model.config.task)
        return self.eval_cache[key]

    @property
    def predictor_path(self) -> Path:
        return Path(self.run_dir or ".") / "profile" / "predictor.json"

    def predictor(self) -> Any:
        """The recommended predictor of ``RUN_DIR/profile/predictor.json``, loaded once."""
        if self._predictor is None:
            path = self.predictor_path
            if not path.is_file():
                raise DataError(
                    f"search objective 'latency_pred_ms' needs {path}; run 'elastic-lm profile "
                    f"{supernet_hint(self.run_dir)}' first, or use 'latency_ms' (measured)"
                )
            from elastic_lm.profile import load_predictor

            self._predictor = load_predictor(path)
        return self._predictor

    def decoding(self, arch: Architecture) -> dict[str, float]:
        """Prefill and per-token decode latency of the exported model, measured once per architecture.

        What a user deploys is the stock class (``LlamaForCausalLM``) where the shape has one, else the
        extracted elastic model; both decode with a KV cache.
        """
        key = arch.key()
        if key not in self.decode_cache:
            from elastic_lm.export.stock import to_stock
            from elastic_lm.metrics.latency import measure_decode_ms

            sub = self.model.extract(arch)
            exported = to_stock(sub) or sub
            m = measure_decode_ms(
                exported,
                batch_size=self.latency_batch_size,
                prompt_len=self.decode_prompt_len,
                new_tokens=self.decode_new_tokens,
                device=self.device,
                threads=self.latency_threads,
                repeats=self.latency_repeats,
            )
            per_token = float(m.decode.median_ms)
            self.decode_cache[key] = {
                "decode_ms_per_token": per_token,
                "decode_tokens_per_s": 1000.0 / per_token,
                "prefill_ms": float(m.prefill.median_ms),
            }
        return self.decode_cache[key]

    def predictor_settings(self) -> Any:
        from elastic_lm.profile import ProfileSettings

        return ProfileSettings.from_dict(json.loads(self.predictor_path.read_text())["settings"])


def supernet_hint(run_dir: Path | None) -> str:
    return f"{Path(run_dir or 'RUN_DIR') / 'train' / 'supernet'} --space PRESET"


@dataclass(frozen=True)
class NamedMetric:
    """A metric a config can name: default direction, unit, cost, and how to build its function."""

    name: str
    direction: str
    unit: str
    cheap: bool
    make: Callable[[MetricContext], ArchFn]
    kinds: tuple[str, ...] = ()  # task kinds it applies to; () = every task
    help: str = ""

    def unit_for(self, ctx: MetricContext) -> str:
        return self.unit.format(
            batch_size=ctx.latency_batch_size,
            seq_len=ctx.latency_seq_len,
            kind=ctx.task_kind,
            prompt_len=ctx.decode_prompt_len,
            new_tokens=ctx.decode_new_tokens,
        )


def _eval(metric: str) -> Callable[[MetricContext], ArchFn]:
    return lambda ctx: lambda arch: ctx.evaluation(arch)[metric]


def _decode(metric: str) -> Callable[[MetricContext], ArchFn]:
    return lambda ctx: lambda arch: ctx.decoding(arch)[metric]


def _params(include_embeddings: bool) -> Callable[[MetricContext], ArchFn]:
    def make(ctx: MetricContext) -> ArchFn:
        from elastic_lm.metrics.size import count_params

        return lambda arch: float(count_params(ctx.model.config, arch, include_embeddings))

    return make


def _flops(ctx: MetricContext) -> ArchFn:
    from elastic_lm.metrics.size import count_flops

    return lambda arch: float(count_flops(ctx.model.config, arch, ctx.latency_seq_len))


def _on_extracted(ctx: MetricContext, measure: Callable[..., Any], attribute: str, **options: Any) -> ArchFn:
    """Measure the extracted sub-network (never the sliced super-network) at the search's shape."""

    def fn(arch: Architecture) -> float:
        sub = ctx.model.extract(arch)
        m = measure(
            sub,
            batch_size=ctx.latency_batch_size,
            seq_len=ctx.latency_seq_len,
            device=ctx.device,
            threads=ctx.latency_threads,
            **options,
        )
        return float(getattr(m, attribute))

    return fn


def _latency(ctx: MetricContext) -> ArchFn:
    """Median of repeats, measured on the extracted sub-network."""
    from elastic_lm.metrics.latency import measure_latency_ms

    return _on_extracted(ctx, measure_latency_ms, "median_ms", repeats=ctx.latency_repeats)


def _latency_pred(ctx: MetricContext) -> ArchFn:
    predictor = ctx.predictor()  # fail at set-up, not at the first trial

    def fn(arch: Architecture) -> float:
        from elastic_lm.profile import LookupTablePredictor, RegressorPredictor

        if isinstance(predictor, LookupTablePredictor):
            predictor.extend(ctx.model, [arch])  # times only layer configurations it lacks
        elif isinstance(predictor, RegressorPredictor) and predictor.lookup is not None:
            predictor.lookup.extend(ctx.model, [arch])
        return float(predictor.predict_ms(arch))

    return fn


def _memory(ctx: MetricContext) -> ArchFn:
    from elastic_lm.metrics.latency import measure_peak_memory_mb

    return _on_extracted(ctx, measure_peak_memory_mb, "peak_memory_mb")


def _teacher_cosine(ctx: MetricContext) -> ArchFn:
    """Mean cosine between the sub-network's and the teacher's sentence embeddings on the eval
    batches: task-agnostic, and what decides whether a member can replace the teacher in an index.
    A narrower member meets the teacher's first channels (what elastic slicing keeps)."""
    import torch

    from elastic_lm.train.representation import sentence_embeddings, unmasked_inputs

    if ctx.teacher is None:
        raise ConfigError(
            "search objective 'teacher_cosine' needs a teacher; set teacher.source (e.g. minilm-l6)"
        )
    if ctx.batches is None:
        raise ConfigError("search objective 'teacher_cosine' needs eval batches")
    batches = ctx.batches
    device = next(ctx.model.parameters()).device

    def fn(arch: Architecture) -> float:
        key = f"{arch.key()}:teacher_cosine"
        if key in ctx.eval_cache:
            return ctx.eval_cache[key]["teacher_cosine"]
        with torch.inference_mode():
            if ctx._teacher_embeddings is None:
                ctx.teacher.to(device).eval()
                ctx._teacher_embeddings = [
                    sentence_embeddings(ctx.teacher, unmasked_inputs(b, device)) for b in batches
                ]
            was_training = ctx.model.training
            ctx.model.eval()
            total, count = 0.0, 0
            try:
                with ctx.model.using(arch):
                    for batch, t in zip(batches, ctx._teacher_embeddings, strict=True):
                        s = sentence_embeddings(ctx.model, unmasked_inputs(batch, device))
                        t = torch.nn.functional.normalize(t[:, : s.shape[-1]], dim=-1)
                        total += float((s * t).sum())
                        count += s.shape[0]
            finally:
                ctx.model.train(was_training)
        value = total / max(count, 1)
        ctx.eval_cache[key] = {"teacher_cosine": value}
        return value

    return fn


_CLASSIFY = ("classification",)
_CAUSAL = ("causal-lm",)
_DECODE_UNIT = "batch {batch_size}, prompt {prompt_len} tokens, {new_tokens} new, KV cache"
METRICS: dict[str, NamedMetric] = {
    m.name: m
    for m in [
        NamedMetric("val_loss", "minimize", "nats/token", False, _eval("loss"), help="validation loss"),
        NamedMetric("perplexity", "minimize", "exp(nats/token)", False, _eval("perplexity"), LM_KINDS),
        NamedMetric("accuracy", "maximize", "fraction", False, _eval("accuracy"), _CLASSIFY),
        NamedMetric("f1", "maximize", "fraction (macro F1)", False, _eval("f1"), _CLASSIFY),
        NamedMetric("mse", "minimize", "squared label units", False, _eval("mse"), ("regression",)),
        NamedMetric("pearson", "maximize", "correlation", False, _eval("pearson"), ("regression",)),
        NamedMetric("spearman", "maximize", "correlation", False, _eval("spearman"), ("regression",)),
        NamedMetric(
            "teacher_cosine",
            "maximize",
            "mean cosine to the teacher's sentence embedding",
            False,
            _teacher_cosine,
            help="embedding agreement with the teacher on validation text",
        ),
        NamedMetric("params", "minimize", "count", True, _params(True)),
        NamedMetric("params_nonembedding", "minimize", "count", True, _params(False)),
        NamedMetric("flops", "minimize", "FLOPs, 1 x {seq_len} tokens", True, _flops),
        NamedMetric("latency_ms", "minimize", "ms, batch {batch_size} x {seq_len} tokens", False, _latency),
        NamedMetric(
            "latency_pred_ms", "minimize", "ms predicted, batch {batch_size} x {seq_len}", True, _latency_pred
        ),
        NamedMetric(
            "peak_memory_mb", "minimize", "MiB, batch {batch_size} x {seq_len} tokens", False, _memory
        ),
        NamedMetric(
            "decode_ms_per_token",
            "minimize",
            "ms per generated token, " + _DECODE_UNIT,
            False,
            _decode("decode_ms_per_token"),
            _CAUSAL,
            "median time of one cached decoding step of the exported model",
        ),
        NamedMetric(
            "decode_tokens_per_s",
            "maximize",
            "generated tokens/s, " + _DECODE_UNIT,
            False,
            _decode("decode_tokens_per_s"),
            _CAUSAL,
            "1000 / decode_ms_per_token",
        ),
        NamedMetric(
            "prefill_ms",
            "minimize",
            "ms, batch {batch_size} x prompt {prompt_len} tokens",
            False,
            _decode("prefill_ms"),
            _CAUSAL,
            "time to process the prompt (the first token's latency), measured with the decode steps",
        ),
    ]
}
EVALUATION_METRICS = frozenset(
    {"val_loss", "perplexity", "accuracy", "f1", "mse", "pearson", "spearman", "teacher_cosine"}
)


def known_metric(name: str, field_name: str = "search.objectives") -> NamedMetric:
    """The registered metric ``name``, or a one-line ConfigError listing the known names."""
    if name not in METRICS:
        raise ConfigError(f"{field_name}: name {name!r} is unknown; known names: {', '.join(METRICS)}")
    return METRICS[name]


def check_metric_names(objectives: Sequence[Any], constraints: Sequence[Any] = ()) -> None:
    """Fail on an unknown name before anything slow (loading a model, preparing data) happens."""
    for spec in objectives:
        known_metric(spec.name, "search.objectives")
    for spec in constraints:
        known_metric(spec.name, "search.constraints")


def needs_evaluation(names: Sequence[str]) -> bool:
    """Whether any named metric needs the fixed eval batches."""
    return any(n in EVALUATION_METRICS for n in names)


def _check_task(metric: NamedMetric, ctx: MetricContext, field_name: str) -> None:
    if metric.kinds and ctx.task_kind not in metric.kinds:
        raise ConfigError(
            f"{field_name}: {metric.name!r} needs a {' or '.join(metric.kinds)} model, but the "
            f"super-network's task is {ctx.model.config.task!r}; use "
            f"{'val_loss/perplexity' if ctx.task_kind in LM_KINDS else 'val_loss/accuracy/f1'}"
        )


def default_bounds(metric: NamedMetric, fn: ArchFn, space: Any) -> tuple[float, float] | None:
    """Fixed hypervolume bounds where they are known a priori (sizes: smallest..largest member)."""
    if metric.name in ("accuracy", "f1", "teacher_cosine"):
        return (0.0, 1.0)
    if metric.name in ("params", "params_nonembedding", "flops") and space is not None:
        low, high = fn(space.smallest()), fn(space.largest())
        return (low, high) if high > low else None
    return None


def build_objectives(specs: Sequence[Any], ctx: MetricContext, space: Any = None) -> list[Objective]:
    """``search.objectives`` (name, optional direction and bounds) as search Objectives."""
    out = []
    for spec in specs:
        metric = known_metric(spec.name, "search.objectives")
        _check_task(metric, ctx, "search.objectives")
        fn = metric.make(ctx)
        bounds = getattr(spec, "bounds", None)
        out.append(
            Objective(
                metric.name,
                fn,
                direction=getattr(spec, "direction", None) or metric.direction,
                cheap=metric.cheap,
                bounds=tuple(bounds) if bounds else default_bounds(metric, fn, space),
            )
        )
    return out


def build_constraints(specs: Sequence[Any], ctx: MetricContext) -> list[Constraint]:
    """``search.constraints`` (name, min and/or max) as search Constraints."""
    out = []
    for spec in specs:
        metric = known_metric(spec.name, "search.constraints")
        _check_task(metric, ctx, "search.constraints")
        out.append(Constraint(metric.name, metric.make(ctx), max=spec.max, min=spec.min))
    return out


def units(names: Sequence[str], ctx: MetricContext) -> dict[str, str]:
    """The unit of each named metric for ``summary.json`` (LM loss per token, else per example)."""
    out = {}
    for name in names:
        unit = METRICS[name].unit_for(ctx)
        if name == "val_loss" and ctx.task_kind not in LM_KINDS:
            unit = "nats/example" if ctx.task_kind == "classification" else "squared label units"
        out[name] = unit
    return out
