"""Read the plain files a run directory holds into small typed values (the report's only input).

The report never opens a study: it reads what the search, profile, export and train stages saved, in
the formats documented in ``docs/report.md``, into the values of :mod:`elastic_lm.report.records`.
Every missing or malformed file is a :class:`~elastic_lm.errors.DataError` that names the file, the
problem and the command that writes it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elastic_lm.architecture import Architecture
from elastic_lm.errors import DataError
from elastic_lm.report.records import (
    Downstream,
    DownstreamRow,
    LatencyCheck,
    NamedPoint,
    Objective,
    RunData,
    Summary,
    Trial,
)
from elastic_lm.search.pareto import DIRECTIONS

TRIAL_COLUMNS: tuple[str, ...] = ("number", "state", "feasible", "architecture")


# ---------------------------------------------------------------------------------------------- helpers


def _read_json(path: Path, producer: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing; '{producer}' writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}); re-run '{producer}'") from None


def _number(value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where} has bad value {value!r}; expected a number") from None
    if math.isnan(out):
        raise DataError(f"{where} is NaN; the report needs a finite number there")
    return out


def _metrics(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise DataError(f"{where} 'metrics' has bad value {raw!r}; expected an object name -> number")
    return {str(k): _number(v, f"{where} metric {k!r}") for k, v in raw.items() if v is not None}


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


# ----------------------------------------------------------------------------------------------- trials


def _trial(raw: Any, where: str) -> Trial:
    if not isinstance(raw, dict) or "number" not in raw:
        raise DataError(f"{where} has bad value {str(raw)[:60]!r}; expected an object with a 'number'")
    number = int(_number(raw["number"], f"{where} 'number'"))
    arch_raw = raw.get("architecture")
    if isinstance(arch_raw, str) and arch_raw.strip():
        try:
            arch_raw = json.loads(arch_raw)
        except json.JSONDecodeError:
            raise DataError(f"{where} trial {number} 'architecture' is not valid JSON") from None
    architecture = None
    if arch_raw:
        try:
            architecture = Architecture.from_dict(arch_raw)
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{where} trial {number} 'architecture' is not an Architecture: {error}"
            ) from None
    return Trial(
        number=number,
        architecture=architecture,
        metrics=_metrics(raw.get("metrics", {}), f"{where} trial {number}"),
        feasible=_bool(raw.get("feasible", True)),
        state=str(raw.get("state", "COMPLETE")),
    )


def _trials_from_csv(path: Path) -> list[dict[str, Any]]:
    """CSV rows: the fixed columns of :data:`TRIAL_COLUMNS`, every other non-empty column a metric."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = []
    for row in rows:
        record: dict[str, Any] = {k: row[k] for k in TRIAL_COLUMNS if k in row}
        record["metrics"] = {k: v for k, v in row.items() if k not in TRIAL_COLUMNS and v not in ("", None)}
        records.append(record)
    return records


def find_trials_file(run_dir: Path) -> Path:
    """``search/trials.json``, else ``search/trials.csv``; a DataError naming both when neither exists."""
    search = run_dir / "search"
    for name in ("trials.json", "trials.csv"):
        if (search / name).is_file():
            return search / name
    raise DataError(
        f"{search / 'trials.json'} (or trials.csv) is missing; 'elastic-lm search CONFIG' writes it"
    )


def load_trials(path: Path) -> tuple[Trial, ...]:
    """Trials from a JSON list or a CSV file, sorted by number; duplicate numbers are an error."""
    if path.suffix == ".csv":
        records: Any = _trials_from_csv(path)
    else:
        records = _read_json(path, "elastic-lm search CONFIG")
    if not isinstance(records, list):
        raise DataError(f"{path} must hold a list of trial records, got {type(records).__name__}")
    trials = sorted((_trial(r, str(path)) for r in records), key=lambda t: t.number)
    numbers = [t.number for t in trials]
    if len(set(numbers)) != len(numbers):
        raise DataError(f"{path} repeats trial numbers; each trial needs its own 'number'")
    return tuple(trials)


# ---------------------------------------------------------------------------------------------- summary


def load_summary(path: Path) -> Summary:
    """``summary.json``: objectives (name, direction, unit), Pareto claim, hypervolume curve."""
    raw = _read_json(path, "elastic-lm search CONFIG")
    if not isinstance(raw, dict) or not raw.get("objectives"):
        raise DataError(f"{path} has no 'objectives'; expected [{{'name', 'direction', 'unit'}}, ...]")
    objectives = []
    for item in raw["objectives"]:
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(f"{path} objective {item!r} lacks a 'name'")
        direction = str(item.get("direction", "minimize"))
        if direction not in DIRECTIONS:
            raise DataError(
                f"{path} objective {item['name']!r} has bad direction {direction!r}; "
                "use 'minimize' or 'maximize'"
            )
        objectives.append(Objective(str(item["name"]), direction, str(item.get("unit", ""))))
    pareto = raw.get("pareto")
    hypervolume = tuple(
        (_number(pair[0], f"{path} hypervolume"), _number(pair[1], f"{path} hypervolume"))
        for pair in raw.get("hypervolume", [])
    )
    return Summary(
        objectives=tuple(objectives),
        strategy=str(raw.get("strategy", path.parent.name)),
        pareto=None if pareto is None else tuple(int(n) for n in pareto),
        hypervolume=hypervolume,
        reference_point={
            str(k): _number(v, f"{path} reference_point")
            for k, v in (raw.get("reference_point") or {}).items()
        },
        finished_at=raw.get("finished_at"),
    )


# --------------------------------------------------------------------------------------------- optional


def load_named_points(path: Path, producer: str) -> tuple[NamedPoint, ...]:
    """``baselines.json`` / ``export/index.json``: ``[{"name", "metrics", ("path")}]``; absent -> ()."""
    if not path.is_file():
        return ()
    raw = _read_json(path, producer)
    if not isinstance(raw, list):
        raise DataError(f"{path} must hold a list of {{'name', 'metrics'}} records")
    points = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(f"{path} entry {i} lacks a 'name'")
        points.append(
            NamedPoint(
                name=str(item["name"]),
                metrics=_metrics(item.get("metrics", {}), f"{path} entry {item['name']!r}"),
                path=str(item.get("path", "")),
                format=str(item.get("format", "")),
            )
        )
    return tuple(points)


def load_latency_checks(path: Path) -> tuple[LatencyCheck, ...]:
    """``profile/latency_check.json``: predicted vs re-measured latency of chosen architectures."""
    if not path.is_file():
        return ()
    raw = _read_json(path, "elastic-lm profile CONFIG")
    if not isinstance(raw, list):
        raise DataError(f"{path} must hold a list of {{'label', 'predicted_ms', 'measured_ms'}} records")
    checks = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise DataError(f"{path} entry {i} is not an object")
        label = str(item.get("label") or item.get("architecture_key") or f"#{i}")
        measured = _number(item.get("measured_ms"), f"{path} entry {i} 'measured_ms'")
        if measured <= 0:
            raise DataError(f"{path} entry {i} 'measured_ms' has bad value {measured}; must be > 0")
        checks.append(
            LatencyCheck(
                label=label,
                predicted_ms=_number(item.get("predicted_ms"), f"{path} entry {i} 'predicted_ms'"),
                measured_ms=measured,
            )
        )
    return tuple(checks)


def load_downstream(path: Path) -> Downstream | None:
    """``evaluate/downstream.json`` (written by the evaluate stage); absent -> None."""
    if not path.is_file():
        return None
    producer = "elastic-lm run CONFIG --from evaluate"
    raw = _read_json(path, producer)
    if not isinstance(raw, dict):
        raise DataError(
            f"{path} must hold an object with 'tasks', 'encoders', 'decoders'; re-run '{producer}'"
        )

    def params(item: dict[str, Any], where: str) -> float | None:
        return None if item.get("params") is None else _number(item["params"], f"{where} 'params'")

    encoders = []
    for i, item in enumerate(raw.get("encoders", [])):
        where = f"{path} encoder {i}"
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(f"{where} lacks a 'name'; re-run '{producer}'")
        scores = {}
        for task, values in (item.get("tasks") or {}).items():
            if not isinstance(values, dict):
                raise DataError(f"{where} task {task!r} is not an object; re-run '{producer}'")
            shown = {k: values[k] for k in ("accuracy", "f1", "num_labels", "test_examples") if k in values}
            scores[str(task)] = _metrics(shown, f"{where} task {task!r}")
        encoders.append(
            DownstreamRow(
                name=str(item["name"]),
                params=params(item, where),
                scores=scores,
                average=_metrics(item.get("average", {}), f"{where} average"),
            )
        )
    decoders = []
    for i, item in enumerate(raw.get("decoders", [])):
        where = f"{path} decoder {i}"
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(f"{where} lacks a 'name'; re-run '{producer}'")
        samples = tuple(
            (str(s.get("prompt", "")), str(s.get("completion", ""))) for s in item.get("samples", [])
        )
        decoders.append(
            DownstreamRow(
                name=str(item["name"]),
                params=params(item, where),
                perplexity=_number(item.get("perplexity"), f"{where} 'perplexity'"),
                samples=samples,
            )
        )
    steps = (raw.get("settings") or {}).get("steps")
    return Downstream(
        tasks=tuple(str(t) for t in raw.get("tasks", [])),
        encoders=tuple(encoders),
        decoders=tuple(decoders),
        steps=None if steps is None else int(steps),
    )


def load_train_curve(path: Path) -> dict[str, list[float]]:
    """``train/metrics.csv`` as columns; rows with an empty cell keep NaN there (plots skip the gap)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    if {"step", "split", "name", "value"} <= set(rows[0]):
        rows = _wide_training_rows(rows)
    if "step" not in rows[0] or "loss" not in rows[0]:
        raise DataError(f"{path} needs 'step' and 'loss' columns, has {list(rows[0])}")
    columns: dict[str, list[float]] = {}
    for name in rows[0]:
        values = []
        for row in rows:
            cell = row.get(name)
            try:
                values.append(float(cell) if cell not in ("", None) else math.nan)
            except ValueError:
                values = []
                break
        if values:
            columns[name] = values
    return columns


def _wide_training_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The training loop's long format (``step, split, name, value``) as one row per step.

    Training rows keep their metric names (``loss``, ``lr``...); validation rows become ``val/NAME``.
    """
    by_step: dict[str, dict[str, str]] = {}
    for row in rows:
        name = row["name"] if row["split"] == "train" else f"{row['split']}/{row['name']}"
        by_step.setdefault(row["step"], {"step": row["step"]})[name] = row["value"]
    names = list(dict.fromkeys(n for r in by_step.values() for n in r))
    return [{n: r.get(n, "") for n in names} for r in by_step.values()]


def load_run(run_dir: Path, compare: tuple[Path, ...] = ()) -> RunData:
    """Load a run directory; ``compare`` adds other runs' hypervolume curves (one line per strategy)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; 'elastic-lm run CONFIG' creates it")
    trials_file = find_trials_file(run_dir)
    summary = load_summary(run_dir / "search" / "summary.json")
    extra = []
    seen = {summary.strategy}
    for other in compare:
        found = load_summary(find_summary(other))
        if found.strategy in seen:  # two runs of one strategy: tell their lines apart by folder
            found = replace(found, strategy=f"{found.strategy} ({Path(other).resolve().name})")
        seen.add(found.strategy)
        extra.append(found)
    stamp = summary.finished_at or datetime.fromtimestamp(trials_file.stat().st_mtime, UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    return RunData(
        run_dir=run_dir,
        name=run_dir.resolve().name,
        date=stamp,
        trials=load_trials(trials_file),
        summary=summary,
        trials_file=trials_file,
        extra_summaries=tuple(extra),
        baselines=load_named_points(run_dir / "search" / "baselines.json", "a baseline script"),
        latency=load_latency_checks(run_dir / "profile" / "latency_check.json"),
        exports=load_named_points(run_dir / "export" / "index.json", "elastic-lm export RUN_DIR"),
        train_curve=load_train_curve(run_dir / "train" / "metrics.csv"),
        downstream=load_downstream(run_dir / "evaluate" / "downstream.json"),
    )


def find_summary(path: Path) -> Path:
    """A run directory or a summary file given for comparison -> the summary file."""
    path = Path(path)
    candidate = path / "search" / "summary.json" if path.is_dir() else path
    if not candidate.is_file():
        raise DataError(f"{candidate} is missing; 'elastic-lm search CONFIG' writes it")
    return candidate
