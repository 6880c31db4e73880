"""The one stage engine: every recipe (NAS, pruning, next decoder compression) runs through it.

A :class:`Stage` is a small declaration: its name, the function that does the work, the stages whose
outputs it reads (``after``), the run-directory files it reads and writes, and which of its own files
are resumable work (``checkpoints``). A :class:`Recipe` is an ordered tuple of stages plus one
function giving each stage's *inputs* (the config values, or earlier records, its output depends on).

:func:`run_recipe` is ``elastic-lm run`` (and ``prune``, and ``train``): it locks the run directory,
refuses a changed setting that would waste or destroy resumable work *before touching anything*,
then runs the stages in order. A stage is skipped when its ``stage.json`` was written with the same
inputs (and its required files exist) and no stage it reads ran in this call; ``--from`` redoes a
stage and everything that reads it; ``--until`` stops early; a crash leaves finished stages recorded,
so the same command resumes at the stage that did not finish.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from elastic_lm.config import Config
from elastic_lm.errors import CheckpointError, ConfigError
from elastic_lm.pipeline.lock import is_main_process, locked
from elastic_lm.pipeline.rundir import RunDirectory, hash_inputs

StageFunction = Callable[[Config, RunDirectory], "dict[str, Any] | None"]
Verdict = Literal["fresh", "resume", "continue", "replace"]


@dataclass(frozen=True)
class Stage:
    """One step of a recipe. Paths are relative to the run directory; ``checkpoints`` to the stage's
    own folder (globs of folders holding ``step-*`` checkpoints)."""

    name: str
    run: StageFunction | str  # a function, or "module:function" imported only when the stage runs
    after: tuple[str, ...] = ()  # stages whose outputs it reads: it re-runs when one of them ran
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    required: tuple[str, ...] = ()  # files that must exist (besides stage.json) for it to be done
    checkpoints: tuple[str, ...] = ()  # resumable work: never removed behind the user's back
    continuable: tuple[str, ...] = ()  # settings that may change while that work is resumed
    clean: bool = False  # a run with other inputs empties its folder first (its files are stale)
    keep: tuple[str, ...] = ()  # names in its folder that cleaning leaves (another stage's output)
    # reads what the stage needs before any of its files is touched, so bad data is a one-line
    # error that leaves the run directory as it was
    check: Callable[[Config, RunDirectory], Any] | None = None

    def function(self) -> StageFunction:
        if callable(self.run):
            return self.run
        module_name, function_name = self.run.split(":")
        return getattr(importlib.import_module(module_name), function_name)


@dataclass(frozen=True)
class Recipe:
    """An ordered tuple of stages and the function giving each stage's inputs."""

    name: str
    stages: tuple[Stage, ...]
    inputs: Callable[[str, Config, RunDirectory], dict[str, Any]]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(
            f"stage {name!r} is not in the {self.name} recipe; its stages: {', '.join(self.names)}"
        )

    def between(self, start: str | None, until: str | None) -> tuple[str, ...]:
        """The stages from ``start`` to ``until`` inclusive, in order (None = the ends)."""
        for name in (start, until):
            if name is not None:
                self.stage(name)
        first = self.names.index(start) if start else 0
        last = self.names.index(until) if until else len(self.names) - 1
        if first > last:
            raise ConfigError(f"--from {start} comes after --until {until}; stages run in order {self.names}")
        return self.names[first : last + 1]

    def dependents(self, name: str) -> set[str]:
        """``name`` and every stage that reads its outputs, directly or through others."""
        out = {name}
        for stage in self.stages:
            if out & set(stage.after):
                out.add(stage.name)
        return out


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped"
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def run_recipe(
    recipe: Recipe,
    config: Config,
    *,
    start: str | None = None,
    until: str | None = None,
    stages: dict[str, StageFunction] | None = None,
    redo: bool = True,
    resume: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[StageOutcome]:
    """Run ``recipe``'s stages from ``start`` to ``until``; returns what each stage did.

    ``start`` redoes that stage and every stage reading it, replacing their resumable work when their
    inputs changed (the user asked, with ``--from``); ``redo=False`` runs them without that
    permission (``elastic-lm train``). ``stages`` replaces stage functions (tests, custom recipes).
    With ``resume=False`` existing resumable work is refused, not continued.
    """
    selected = recipe.between(start, until)
    forced = recipe.dependents(start) if start else set()
    replace = forced if redo else set()
    run_dir = RunDirectory(config.run_dir)
    say = log or (lambda _: None)
    with locked(run_dir.path):
        verdicts: dict[str, Verdict] = {}
        for name in selected:  # every refusal comes before anything is written
            stage = recipe.stage(name)
            inputs = recipe.inputs(name, config, run_dir)
            verdicts[name] = check_resumable(stage, inputs, run_dir, replace=name in replace, resume=resume)
        main = is_main_process()
        if main:
            run_dir.save_config(config)
        outcomes: list[StageOutcome] = []
        ran: set[str] = set()
        for name in selected:
            stage = recipe.stage(name)
            inputs = recipe.inputs(name, config, run_dir)  # now: a stage may read records just written
            digest = hash_inputs(inputs)
            if name not in forced and not ran & set(stage.after) and is_done(stage, run_dir, digest):
                record = run_dir.record(name)
                assert record is not None
                say(f"[{name}] done earlier ({record.seconds:.0f} s); skipping")
                outcomes.append(StageOutcome(name, "skipped", 0.0, record.outputs))
                continue
            say(f"[{name}] running")
            started = time.time()
            if stage.check is not None:
                stage.check(config, run_dir)
            if main:
                _prepare(stage, inputs, run_dir, verdicts[name])
            function = (stages or {}).get(name) or stage.function()
            outputs = function(config, run_dir) or {}
            seconds = round(time.time() - started, 3)
            if main:
                seconds = run_dir.mark_done(name, digest, started, outputs).seconds
            say(f"[{name}] finished in {seconds:.1f} s")
            outcomes.append(StageOutcome(name, "ran", seconds, outputs))
            ran.add(name)
    return outcomes


def is_done(stage: Stage, run_dir: RunDirectory, digest: str) -> bool:
    """Recorded with these inputs, and every required output still there."""
    if not run_dir.is_done(stage.name, digest):
        return False
    return all((run_dir.path / path).exists() for path in stage.required)


def check_resumable(
    stage: Stage, inputs: dict[str, Any], run_dir: RunDirectory, *, replace: bool = False, resume: bool = True
) -> Verdict:
    """What to do with ``stage``'s checkpoints; raises a ConfigError naming the changed setting.

    ``fresh``: there are none; ``resume``: they were made with these inputs; ``continue``: only
    ``continuable`` settings changed and the stage did not finish (the advice after a NaN loss:
    lower the learning rate and resume); ``replace``: the user redoes the stage on purpose (``--from``).
    With ``resume=False`` any checkpoint is refused: a fresh start would mix two runs' checkpoints.
    """
    folder = run_dir.stage_dir(stage.name)
    found = [p for pattern in stage.checkpoints for p in folder.glob(pattern) if any(p.glob("step-*"))]
    if not found:
        return "fresh"
    if not resume:
        newest = max((c for p in found for c in p.glob("step-*")), key=lambda c: c.name)
        raise CheckpointError(
            f"run_dir {run_dir.path} already has training checkpoints ({newest.name}); pass --resume "
            "(resume=True) to continue, or use a new run_dir"
        )
    previous = run_dir.started(stage.name) or {}
    if previous.get("inputs_hash") == hash_inputs(inputs):
        return "resume"
    if replace:
        return "replace"
    changed = changed_settings(previous.get("inputs"), inputs)
    finished = run_dir.record(stage.name) is not None
    if changed and not finished and all(key in stage.continuable for key in changed):
        return "continue"
    where = found[0] if len(found) == 1 else folder
    if changed:
        shown = "; ".join(f"{k} was {_short(v[0])}, now {_short(v[1])}" for k, v in list(changed.items())[:3])
        what = f"{shown}{' (and more)' if len(changed) > 3 else ''}"
    else:
        what = "the settings differ from those that made them (not recorded by this older run directory)"
    when = "after that stage finished" if finished else "with other settings"
    raise ConfigError(
        f"{what}: the checkpoints in {where} were written {when}, and this run would replace them; "
        f"set it back to continue them, use another run_dir, or redo the stage on purpose with "
        f"'elastic-lm run CONFIG --from {stage.name}'"
    )


def changed_settings(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted setting names whose value differs, with (before, after); empty when unknown."""
    if not isinstance(before, dict):
        return {}
    old, new = _flatten(before), _flatten(after)
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _prepare(stage: Stage, inputs: dict[str, Any], run_dir: RunDirectory, verdict: Verdict) -> None:
    """Before a stage runs: clear stale files of other inputs (never resumable work the user keeps)."""
    folder = run_dir.stage_dir(stage.name)
    previous = run_dir.started(stage.name)
    stale = folder.exists() and (previous or {}).get("inputs_hash") != hash_inputs(inputs)
    if stale and verdict != "continue":
        if stage.clean:
            for child in folder.iterdir():
                if child.name not in stage.keep:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif verdict == "replace":
            for pattern in stage.checkpoints:
                for path in folder.glob(pattern):
                    shutil.rmtree(path, ignore_errors=True)
    run_dir.invalidate(stage.name)
    run_dir.mark_started(stage.name, inputs)


__all__ = [
    "Recipe",
    "Stage",
    "StageFunction",
    "StageOutcome",
    "changed_settings",
    "check_resumable",
    "is_done",
    "run_recipe",
]
