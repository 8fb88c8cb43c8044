"""Adaptive search over a discrete knob space with a time budget.

`coordinate_search` is cyclic coordinate descent: starting from the
pipeline as written (and any seed points, such as measured
recommendations), it tries every value of one knob while the others stay
at the best settings so far, keeps a value only when it beats the incumbent
by `min_gain`, and moves on. When a whole cycle of knobs brings no
improvement it keeps using the budget while untried points remain: points
two knob changes away from the best, then the rest of the grid, descending
again from any point that wins. `grid_search` tries every combination (the
reference the benchmarks compare against). Both take any objective
`settings -> score` (higher is better), so they are tested on synthetic
landscapes without TensorFlow.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

Settings = Mapping[str, Any]
Objective = Callable[[Settings], float]


@dataclass(frozen=True)
class Trial:
    """One evaluated point: its settings, score (None when it failed) and cost."""

    index: int
    settings: Mapping[str, Any]
    score: float | None
    seconds: float
    phase: str = "search"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None and math.isfinite(self.score)


@dataclass(frozen=True)
class SearchResult:
    """Every trial in order, the baseline and the best settings found."""

    trials: tuple[Trial, ...]
    baseline: Mapping[str, Any]
    best: Mapping[str, Any]
    baseline_score: float | None
    best_score: float | None
    elapsed_s: float
    stopped_by_budget: bool = False
    knobs: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def untried(self) -> int:
        """Grid points never evaluated (0 once the search has tried them all)."""
        return max(0, grid_size(self.knobs) - len(self.trials)) if self.knobs else 0

    def speedup(self) -> float | None:
        """Best score ÷ baseline score (None when either is missing)."""
        if not self.baseline_score or self.best_score is None:
            return None
        return self.best_score / self.baseline_score


class _Budget(Exception):
    """Raised inside the search when the time or trial budget is spent."""


class _Runner:
    """Evaluates settings once each (memoized), records trials, enforces the budget."""

    def __init__(self, objective, *, budget_s, max_trials, clock, on_trial):
        self.objective = objective
        self.budget_s = budget_s
        self.max_trials = max_trials
        self.clock = clock
        self.on_trial = on_trial
        self.start = clock()
        self.trials: list[Trial] = []
        self.scores: dict[tuple, float | None] = {}

    def spent(self) -> bool:
        over_time = self.budget_s is not None and self.clock() - self.start >= self.budget_s
        over_count = self.max_trials is not None and len(self.trials) >= self.max_trials
        return over_time or over_count

    def score(self, settings: Settings, *, phase: str = "search", force: bool = False):
        key = _key(settings)
        if key in self.scores:
            return self.scores[key]
        if self.spent() and not force:
            raise _Budget
        t0 = self.clock()
        error = None
        try:
            value = float(self.objective(dict(settings)))
        except Exception as exc:  # a candidate that fails to build or run is recorded
            value, error = None, f"{type(exc).__name__}: {exc}"
        trial = Trial(
            index=len(self.trials),
            settings=dict(settings),
            score=value,
            seconds=self.clock() - t0,
            phase=phase,
            error=error,
        )
        self.trials.append(trial)
        self.scores[key] = value if trial.ok else None
        if self.on_trial is not None:
            self.on_trial(trial)
        return self.scores[key]

    def result(self, baseline, best, *, stopped):
        return SearchResult(
            trials=tuple(self.trials),
            baseline=dict(baseline),
            best=dict(best),
            baseline_score=self.scores.get(_key(baseline)),
            best_score=self.scores.get(_key(best)),
            elapsed_s=self.clock() - self.start,
            stopped_by_budget=stopped,
        )


def _key(settings: Settings) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in settings.items()))


def _better(a: float | None, b: float | None, min_gain: float) -> bool:
    """`a` beats `b` by more than the relative margin `min_gain`."""
    if a is None:
        return False
    return b is None or a > b * (1.0 + min_gain)


def coordinate_search(
    knobs: Mapping[str, Sequence[Any]],
    start: Settings,
    objective: Objective,
    *,
    budget_s: float | None = 30.0,
    max_trials: int | None = None,
    min_gain: float = 0.03,
    seeds: Sequence[Settings] = (),
    explore: bool = True,
    clock: Callable[[], float] = time.monotonic,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Cyclic coordinate descent from `start` over `knobs` (name -> values), then exploration.

    Once a whole cycle of knobs brings no improvement, the budget is not
    handed back while untried points remain: the search tries the points two
    knob changes away from the best so far (interactions one knob at a time
    cannot see, e.g. vectorizing pays only with more parallelism), then the
    rest of the grid in a seeded random order, and starts descending again
    from any point that beats the best.

    Args:
        knobs: the values each setting may take; `start` must hold a value for each.
        start: the baseline settings (the pipeline as written); always evaluated first.
        objective: settings -> score, higher is better; an exception marks the trial failed.
        budget_s: wall-clock budget (the baseline is evaluated even past it); None: no limit.
        max_trials: optional cap on evaluated points.
        min_gain: relative improvement a move must bring to be kept (noise guard).
        seeds: settings to try right after the baseline (e.g. measured recommendations);
            knobs they leave out keep their `start` value, unknown knobs are ignored.
        explore: keep searching after the descent converges (see above).
        clock: injectable monotonic clock.
        on_trial: called after each evaluation (progress reporting).

    Returns:
        A `SearchResult` with every trial and the best settings found.
    """
    missing = [name for name in knobs if name not in start]
    if missing:
        raise ValueError(
            f"The `start` settings lack a value for knobs {missing}; give the pipeline's "
            f"current value for each. Received: start={dict(start)}"
        )
    runner = _Runner(
        objective, budget_s=budget_s, max_trials=max_trials, clock=clock, on_trial=on_trial
    )
    current = dict(start)
    runner.score(current, phase="baseline", force=True)
    names = [n for n in knobs if len(knobs[n]) > 1]
    stopped = False
    try:
        current = _try_seeds(runner, knobs, current, seeds, min_gain)
        current = _descend(runner, knobs, names, current, min_gain)
        if explore:
            current = _explore(runner, knobs, names, current, min_gain)
    except _Budget as spent:
        current, stopped = spent.args[0], True
    result = runner.result(start, current, stopped=stopped)
    return replace(result, knobs={n: tuple(v) for n, v in knobs.items()})


def _try_seeds(runner, knobs, current, seeds, min_gain):
    """Evaluate each seed (restricted to known knobs and values); the best so far."""
    best, best_score = current, runner.scores[_key(current)]
    for seed in seeds:
        point = {
            **current,
            **{k: v for k, v in seed.items() if k in knobs and v in tuple(knobs[k])},
        }
        try:
            score = runner.score(point, phase="seed")
        except _Budget:
            raise _Budget(best) from None
        if _better(score, best_score, min_gain):
            best, best_score = point, score
    return best


def _best_value(runner, knobs, name, current, min_gain):
    """Try every value of knob `name` around `current`; the winner (maybe `current`)."""
    winner = current
    winner_score = runner.scores[_key(current)]
    for value in knobs[name]:
        candidate = {**current, name: value}
        try:
            score = runner.score(candidate)
        except _Budget:
            raise _Budget(winner) from None
        if _better(score, winner_score, min_gain if winner is current else 0.0):
            winner, winner_score = candidate, score
    return winner


def _descend(runner, knobs, names, current, min_gain):
    """Cycle over knobs until a full cycle brings no improvement; the final settings."""
    last_change = None
    while names:
        for name in names:
            if name == last_change:
                return current  # every knob was tried since the last improvement
            winner = _best_value(runner, knobs, name, current, min_gain)
            if winner is not current:
                current, last_change = winner, name
        if last_change is None:
            return current
    return current


def _pairs(knobs, names, current):
    """Untried-or-not points two knob changes away from `current`, in a fixed order."""
    for a, b in itertools.combinations(names, 2):
        for va in knobs[a]:
            for vb in knobs[b]:
                if va != current[a] and vb != current[b]:
                    yield {**current, a: va, b: vb}


def _rest_of_grid(knobs, names, current, *, seed: int = 0, limit: int = 20_000):
    """Grid points in a seeded random order (sampled when the grid is huge)."""
    rng = random.Random(seed)
    if grid_size({n: knobs[n] for n in names}) <= limit:
        points = [
            {**current, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*(knobs[n] for n in names))
        ]
        rng.shuffle(points)
        yield from points
        return
    for _ in range(limit):
        yield {**current, **{n: rng.choice(tuple(knobs[n])) for n in names}}


def _explore(runner, knobs, names, current, min_gain):
    """After convergence: pairs around the best, then the rest of the grid; re-descend on gains."""
    while True:
        improved = False
        for phase, points in (
            ("explore", _pairs(knobs, names, current)),
            ("explore", _rest_of_grid(knobs, names, current)),
        ):
            for point in points:
                if _key(point) in runner.scores:
                    continue
                try:
                    score = runner.score(point, phase=phase)
                except _Budget:
                    raise _Budget(current) from None
                if _better(score, runner.scores[_key(current)], min_gain):
                    current = _descend(runner, knobs, names, point, min_gain)
                    improved = True
                    break
            if improved:
                break
        if not improved:
            return current


def grid_search(
    knobs: Mapping[str, Sequence[Any]],
    start: Settings,
    objective: Objective,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Evaluate every combination of knob values (exhaustive reference, no budget)."""
    runner = _Runner(objective, budget_s=None, max_trials=None, clock=clock, on_trial=on_trial)
    runner.score(dict(start), phase="baseline")
    names = list(knobs)
    for combo in itertools.product(*(knobs[n] for n in names)):
        runner.score({**start, **dict(zip(names, combo, strict=True))}, phase="grid")
    ok = [t for t in runner.trials if t.ok]
    best = max(ok, key=lambda t: t.score).settings if ok else dict(start)
    result = runner.result(start, best, stopped=False)
    return replace(result, knobs={n: tuple(v) for n, v in knobs.items()})


def grid_size(knobs: Mapping[str, Sequence[Any]]) -> int:
    """Number of combinations an exhaustive grid would evaluate."""
    return math.prod(len(v) for v in knobs.values()) if knobs else 1
