"""Super-network sampling strategies: which sub-networks run on a batch, and what each learns from.

A strategy is a callable ``strategy(step) -> list[SubnetTask]``. The training loop runs the tasks of
a step in order (so a ``"largest"`` teacher task comes first) and sums their losses before one
optimiser step.

Determinism (resume, DDP): every random choice is drawn from a fresh ``random.Random`` seeded by
``(seed, step)`` only (:func:`step_rng`), so the tasks of a step are a pure function of the seed
and the step. Resuming at step ``s`` replays exactly what an uninterrupted run would have done, and
every DDP rank built with the same seed runs the same sub-networks without any communication. The
only mutable state is that of progressive shrinking (the surviving candidates); all of it is in
``state_dict()``.

The search space is duck-typed: ``sample(rng)``, ``sample_stratified(rng, size_fn, n_bins)``,
``smallest()`` and ``largest()``, each taking a ``random.Random`` where it needs randomness.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from elastic_lm.architecture import Architecture
from elastic_lm.errors import ConfigError

Target = Literal["labels", "teacher", "largest"]
TARGETS: tuple[str, ...] = ("labels", "teacher", "largest")


@dataclass(frozen=True)
class SubnetTask:
    """One forward/backward pass of a step.

    ``target`` says what the sub-network learns from: ``"labels"`` (the data), ``"teacher"`` (an
    external teacher model or its cached logits) or ``"largest"`` (the detached outputs of this
    step's largest sub-network: in-place distillation). ``role`` is for logging
    (``largest`` / ``smallest`` / ``random`` / ``bin``); ``keep_outputs`` marks the task whose
    detached outputs later tasks of the same step distil from.
    """

    arch: Architecture
    target: Target
    role: str
    keep_outputs: bool = False


class SearchSpaceLike(Protocol):
    """The part of the search space that strategies use."""

    def sample(self, rng: random.Random) -> Architecture: ...

    def smallest(self) -> Architecture: ...

    def largest(self) -> Architecture: ...


class StratifiedSpaceLike(SearchSpaceLike, Protocol):
    """A space that can sample by size bin (for ``binned``)."""

    def sample_stratified(
        self, rng: random.Random, size_fn: Callable[[Architecture], float], n_bins: int
    ) -> Architecture: ...


class Strategy(Protocol):
    """What the training loop needs from a strategy."""

    def __call__(self, step: int) -> list[SubnetTask]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def step_rng(seed: int, step: int) -> random.Random:
    """The generator for one step: a pure function of ``(seed, step)``.

    String seeds are hashed with SHA-512 by ``random.Random`` (not Python's salted ``hash``), so the
    result is the same in every process and on every machine.
    """
    return random.Random(f"elastic-lm:{int(seed)}:{int(step)}")


def _check_target(target: str, field: str = "target") -> None:
    if target not in TARGETS:
        raise ConfigError(f"{field}={target!r} is not a training target; use one of {', '.join(TARGETS)}")


class _Seeded:
    """Shared plumbing: a seed, a target and a state dict holding the seed."""

    name = "base"

    def __init__(self, space: SearchSpaceLike, *, seed: int = 0, target: str = "labels") -> None:
        _check_target(target)
        self.space = space
        self.seed = int(seed)
        self.target: Target = target  # type: ignore[assignment]

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.name, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("strategy") != self.name:
            raise ConfigError(
                f"checkpoint strategy {state.get('strategy')!r} does not match {self.name!r}; "
                "resume with the strategy the run was started with"
            )
        self.seed = int(state["seed"])


class StandardStrategy(_Seeded):
    """Train only the largest sub-network (plain training / fine-tuning of the super-network)."""

    name = "standard"

    def __call__(self, step: int) -> list[SubnetTask]:
        return [SubnetTask(self.space.largest(), self.target, "largest")]


class FixedSpace:
    """A one-member 'space': the loop trains one architecture with :class:`StandardStrategy`
    (fine-tuning a pruned model, distilling an exported member or a hand-designed baseline alone)."""

    def __init__(self, arch: Architecture) -> None:
        self.arch = arch

    def largest(self) -> Architecture:
        return self.arch

    smallest = middle = largest

    def sample(self, rng: random.Random) -> Architecture:
        return self.arch


class RandomStrategy(_Seeded):
    """One uniformly sampled sub-network per step."""

    name = "random"

    def __call__(self, step: int) -> list[SubnetTask]:
        rng = step_rng(self.seed, step)
        return [SubnetTask(self.space.sample(rng), self.target, "random")]


class SandwichStrategy(_Seeded):
    """The sandwich rule (Yu & Huang 2019, used by once-for-all style super-networks).

    Largest + ``n_random`` random + smallest each step, so the extremes of the space are always
    trained. All learn from ``target``. ``uniform_random``: the chance that a random member is a
    uniformly narrower one instead (every layer kept, one head count and FFN width for all; DynaBERT's
    width multipliers), which per-layer sampling almost never draws, so those shapes get trained too.
    """

    name = "sandwich"

    def __init__(
        self,
        space: SearchSpaceLike,
        *,
        n_random: int = 2,
        uniform_random: float = 0.0,
        seed: int = 0,
        target: str = "labels",
    ) -> None:
        super().__init__(space, seed=seed, target=target)
        if n_random < 0:
            raise ConfigError(f"n_random={n_random} must be >= 0; use 0 for largest + smallest only")
        if not 0.0 <= uniform_random <= 1.0:
            raise ConfigError(f"uniform_random={uniform_random} must be a probability in [0, 1], e.g. 0.5")
        self.n_random = int(n_random)
        self.uniform_random = float(uniform_random)
        self._uniform: list[Architecture] | None = None

    def _random_member(self, rng: random.Random) -> Architecture:
        if self.uniform_random > 0 and rng.random() < self.uniform_random:  # no draw when off: same stream
            if self._uniform is None:
                from elastic_lm.space.uniform import uniform_members

                top = self.space.largest().key()
                self._uniform = [a for _, a in uniform_members(self.space) if a.key() != top]
            if self._uniform:
                return rng.choice(self._uniform)
        return self.space.sample(rng)

    def _archs(self, step: int) -> list[Architecture]:
        rng = step_rng(self.seed, step)
        middle = [self._random_member(rng) for _ in range(self.n_random)]
        return [self.space.largest(), *middle, self.space.smallest()]

    def __call__(self, step: int) -> list[SubnetTask]:
        largest, *rest = self._archs(step)
        tasks = [SubnetTask(largest, self.target, "largest")]
        roles = ["random"] * self.n_random + ["smallest"]
        tasks += [SubnetTask(a, self.target, r) for a, r in zip(rest, roles, strict=True)]
        return tasks


class InplaceDistillStrategy(SandwichStrategy):
    """Sandwich with in-place distillation (Yu et al. 2020, BigNAS).

    The largest learns from ``target`` (labels by default) and its detached outputs teach the
    random and smallest sub-networks of the same step, so no external teacher is needed.
    """

    name = "inplace-distill"

    def __call__(self, step: int) -> list[SubnetTask]:
        largest, *rest = self._archs(step)
        tasks = [SubnetTask(largest, self.target, "largest", keep_outputs=True)]
        roles = ["random"] * self.n_random + ["smallest"]
        tasks += [SubnetTask(a, "largest", r) for a, r in zip(rest, roles, strict=True)]
        return tasks


class BinnedStrategy(_Seeded):
    """Size-stratified sampling, so small, medium and large sub-networks all get trained.

    Uniform sampling over a combinatorial space concentrates on mid-sized members; the space's
    ``sample_stratified(rng, size_fn, n_bins)`` picks a size bin first, then a member of it.
    """

    name = "binned"

    def __init__(
        self,
        space: StratifiedSpaceLike,
        *,
        size_fn: Callable[[Architecture], float],
        n_bins: int = 4,
        n_per_step: int = 1,
        seed: int = 0,
        target: str = "labels",
    ) -> None:
        super().__init__(space, seed=seed, target=target)
        self.space: StratifiedSpaceLike = space
        if n_bins < 1 or n_per_step < 1:
            raise ConfigError(
                f"n_bins={n_bins}, n_per_step={n_per_step}: both must be >= 1; use e.g. n_bins=4"
            )
        self.size_fn = size_fn
        self.n_bins = int(n_bins)
        self.n_per_step = int(n_per_step)

    def __call__(self, step: int) -> list[SubnetTask]:
        rng = step_rng(self.seed, step)
        sample = self.space.sample_stratified
        return [
            SubnetTask(sample(rng, self.size_fn, self.n_bins), self.target, "bin")
            for _ in range(self.n_per_step)
        ]


class ProgressiveShrinkingStrategy(_Seeded):
    """NAS-BERT progressive search-space shrinking (Xu et al. 2021, section 3.3).

    A pool of ``n_candidates`` sampled architectures (plus the smallest and largest) is split by
    ``size_fn`` (parameters or latency) into ``n_bins`` equal-count bins. At each step listed in
    ``shrink_at``, every bin's candidates are scored by ``score_fn`` (lower is better, e.g.
    validation loss of the super-network with that sub-network selected) and the worse half of each
    bin is dropped, never below ``min_per_bin``. Each step trains ``n_per_step`` candidates, each
    from a uniformly chosen bin, so every size range keeps being trained.

    ``score_fn`` must give the same values on every DDP rank (evaluate on one rank and broadcast,
    or all-reduce); the pool itself lives in ``state_dict()``.
    """

    name = "progressive-shrinking"

    def __init__(
        self,
        space: SearchSpaceLike,
        *,
        size_fn: Callable[[Architecture], float],
        score_fn: Callable[[Architecture], float] | None = None,
        shrink_at: Sequence[int] = (),
        n_candidates: int = 64,
        n_bins: int = 4,
        min_per_bin: int = 1,
        n_per_step: int = 1,
        seed: int = 0,
        target: str = "labels",
    ) -> None:
        super().__init__(space, seed=seed, target=target)
        if n_bins < 1 or min_per_bin < 1 or n_per_step < 1 or n_candidates < 1:
            raise ConfigError(
                f"n_candidates={n_candidates}, n_bins={n_bins}, min_per_bin={min_per_bin}, "
                f"n_per_step={n_per_step}: all must be >= 1"
            )
        if shrink_at and score_fn is None:
            raise ConfigError("shrink_at is set but score_fn is None; pass a score_fn")
        self.size_fn = size_fn
        self.score_fn = score_fn
        self.shrink_at = tuple(sorted(int(s) for s in shrink_at))
        self.min_per_bin = int(min_per_bin)
        self.n_per_step = int(n_per_step)
        self.n_candidates, self.n_bins = int(n_candidates), int(n_bins)
        self.bins: list[list[Architecture]] = self._initial_bins(n_candidates, n_bins)
        self.done: list[int] = []

    def reset_pool(self, space: SearchSpaceLike) -> None:
        """Sample a fresh pool from ``space`` (changed by ELM dynamic modules: the old pool may hold
        head counts that no longer exist). Shrinks already done are not repeated."""
        self.space = space
        self.bins = self._initial_bins(self.n_candidates, self.n_bins)

    def _initial_bins(self, n_candidates: int, n_bins: int) -> list[list[Architecture]]:
        rng = random.Random(f"elastic-lm:pool:{self.seed}")
        pool: dict[str, Architecture] = {}
        for arch in [self.space.smallest(), self.space.largest()]:
            pool.setdefault(arch.key(), arch)
        for _ in range(10 * n_candidates):
            if len(pool) >= n_candidates + 2:
                break
            arch = self.space.sample(rng)
            pool.setdefault(arch.key(), arch)
        ordered = sorted(pool.values(), key=lambda a: (self.size_fn(a), a.key()))
        n_bins = min(n_bins, len(ordered))
        bounds = [round(i * len(ordered) / n_bins) for i in range(n_bins + 1)]
        return [ordered[bounds[i] : bounds[i + 1]] for i in range(n_bins)]

    @property
    def candidates(self) -> list[Architecture]:
        """All surviving candidates, smallest bin first."""
        return [a for b in self.bins for a in b]

    def shrink(self) -> None:
        """Score every bin and keep its better half (at least ``min_per_bin``)."""
        assert self.score_fn is not None
        new_bins = []
        for members in self.bins:
            keep = max(self.min_per_bin, len(members) - len(members) // 2)
            if keep >= len(members):
                new_bins.append(members)
                continue
            scores = [float(self.score_fn(a)) for a in members]
            order = sorted(range(len(members)), key=lambda i: (scores[i], i))
            new_bins.append([members[i] for i in sorted(order[:keep])])
        self.bins = new_bins

    def __call__(self, step: int) -> list[SubnetTask]:
        for at in self.shrink_at:
            if at <= step and at not in self.done:
                self.shrink()
                self.done.append(at)
        rng = step_rng(self.seed, step)
        tasks = []
        for _ in range(self.n_per_step):
            members = self.bins[rng.randrange(len(self.bins))]
            tasks.append(SubnetTask(members[rng.randrange(len(members))], self.target, "bin"))
        return tasks

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["bins"] = [[a.to_json() for a in members] for members in self.bins]
        state["done"] = list(self.done)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bins = [[Architecture.from_json(s) for s in members] for members in state["bins"]]
        self.done = [int(s) for s in state["done"]]


STRATEGIES: dict[str, type[_Seeded]] = {
    cls.name: cls
    for cls in (
        StandardStrategy,
        RandomStrategy,
        SandwichStrategy,
        InplaceDistillStrategy,
        ProgressiveShrinkingStrategy,
        BinnedStrategy,
    )
}


def make_strategy(name: str, space: SearchSpaceLike, **kwargs: Any) -> Strategy:
    """Build a strategy by its config name; unknown names and options are user errors."""
    if name not in STRATEGIES:
        raise ConfigError(f"train.strategy={name!r} is unknown; use one of {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "space"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"option(s) {unknown} are not accepted by strategy {name!r}; allowed: {sorted(allowed)}"
        )
    try:
        return cls(space, **kwargs)
    except TypeError as exc:  # a required option (e.g. size_fn) is missing
        raise ConfigError(f"strategy {name!r}: {exc}") from None


__all__ = [
    "STRATEGIES",
    "BinnedStrategy",
    "FixedSpace",
    "InplaceDistillStrategy",
    "ProgressiveShrinkingStrategy",
    "RandomStrategy",
    "SandwichStrategy",
    "StandardStrategy",
    "Strategy",
    "SubnetTask",
    "make_strategy",
    "step_rng",
]
