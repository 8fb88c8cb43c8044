"""Auto-tuning: adaptive search over the spec's knobs, each trial measured, best applied.

`tune(spec)` generates the candidate space (`space.search_space`), runs
cyclic coordinate descent (`search.coordinate_search`) within a time budget
with in-process measurements as the objective, then re-measures the winner
over a longer window (the maximum of noisy samples is biased upwards; the
baseline's trial is not and is reused) so the reported speedup is not a
lucky sample. `TuneResult.apply()` returns the winning, validated spec.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.measure import measure_spec
from pipeline_core.analysis.search import SearchResult, Trial, coordinate_search, grid_search
from pipeline_core.analysis.space import SearchSpace, search_space
from pipeline_core.spec import PipelineSpec

METHODS = ("coordinate", "grid")


class TuneError(ValueError):
    """Tuning could not run (bad options, or the pipeline as written fails)."""


@dataclass(frozen=True)
class TuneResult:
    """Every trial, the baseline (its trial) and the winner (re-measured), and the winning spec."""

    space: SearchSpace
    search: SearchResult
    baseline_examples_per_s: float
    best_examples_per_s: float
    best_settings: dict[str, Any]
    elapsed_s: float
    method: str = "coordinate"

    def speedup(self) -> float:
        """Winner (re-measured after the search) ÷ baseline (its search trial)."""
        base = self.baseline_examples_per_s
        return self.best_examples_per_s / base if base > 0 else 0.0

    def apply(self) -> PipelineSpec:
        """The spec with the winning settings (validated; equal to the input when no gain)."""
        return self.space.realize(self.best_settings)

    def changes(self) -> dict[str, tuple[str, str]]:
        """knob -> (as written, tuned) for the knobs the winner changes."""
        base = self.space.baseline()
        describe = self.space.describe
        before, after = describe(base), describe(self.best_settings)
        return {k: (before[k], after[k]) for k in base if base[k] != self.best_settings[k]}

    def trials_table(self) -> list[dict[str, Any]]:
        """One row per trial: index, phase, each knob (readable), examples/s, seconds, error."""
        rows = []
        for t in self.search.trials:
            rows.append(
                {
                    "trial": t.index,
                    "phase": t.phase,
                    **self.space.describe(t.settings),
                    "examples_per_s": t.score,
                    "seconds": round(t.seconds, 3),
                    "error": t.error,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.space.spec.name,
            "method": self.method,
            "elapsed_s": self.elapsed_s,
            "trials": len(self.search.trials),
            "grid_size": self.space.size(),
            "stopped_by_budget": self.search.stopped_by_budget,
            "baseline_examples_per_s": self.baseline_examples_per_s,
            "best_examples_per_s": self.best_examples_per_s,
            "speedup": self.speedup(),
            "best_settings": self.space.describe(self.best_settings),
            "changes": {k: list(v) for k, v in self.changes().items()},
            "best_spec": self.apply().to_dict(),
            "trials_table": self.trials_table(),
        }


def tune(
    spec: PipelineSpec,
    *,
    budget_s: float = 30.0,
    trial_seconds: float = 0.4,
    confirm_seconds: float = 1.0,
    tune_batch_size: bool = False,
    allow_reorder: bool = False,
    method: str = "coordinate",
    space: SearchSpace | None = None,
    measure: Callable[[PipelineSpec, float], float] | None = None,
    on_trial: Callable[[Trial, float], None] | None = None,
) -> TuneResult:
    """Search the spec's knobs for the highest examples/s.

    Args:
        spec: the pipeline as written (the baseline).
        budget_s: wall-clock budget of the search (re-measuring the winner adds
            about `confirm_seconds`).
        trial_seconds: timed window of each trial.
        confirm_seconds: timed window of the winner's re-measurement.
        tune_batch_size: also search batch sizes.
        allow_reorder: also try non-deterministic element order.
        method: "coordinate" (adaptive, the default) or "grid" (exhaustive, ignores budget).
        space: a prepared search space (default: `search_space(spec, ...)`).
        measure: `(spec, seconds) -> examples/s` (default: in-process `measure_spec`).
        on_trial: progress callback `(trial, fraction of the budget used)`.

    Raises:
        TuneError: unknown method, or the pipeline as written cannot run.
    """
    if method not in METHODS:
        raise TuneError(
            f"The `method` argument should be one of {', '.join(METHODS)}. Received: {method!r}"
        )
    if budget_s <= 0:
        raise TuneError(f"The `budget_s` argument should be > 0. Received: budget_s={budget_s}")
    if measure is None:

        def measure(s: PipelineSpec, seconds: float) -> float:
            return measure_spec(
                s, seconds=seconds, max_warmup_s=max(1.0, budget_s / 6)
            ).examples_per_s

    space = space or search_space(
        spec, tune_batch_size=tune_batch_size, allow_reorder=allow_reorder
    )
    start = time.monotonic()

    def objective(settings: dict[str, Any]) -> float:
        return measure(space.realize(settings), trial_seconds)

    def progress(trial: Trial) -> None:
        if on_trial is not None:
            on_trial(trial, min(1.0, (time.monotonic() - start) / budget_s))

    baseline = space.baseline()
    if method == "grid":
        found = grid_search(space.values(), baseline, objective, on_trial=progress)
    else:
        found = coordinate_search(
            space.values(), baseline, objective, budget_s=budget_s, on_trial=progress
        )
    if found.baseline_score is None:
        error = found.trials[0].error if found.trials else "no trial ran"
        raise TuneError(f"the pipeline as written failed, so there is nothing to tune: {error}")
    best, best_rate = _confirm(found, measure=lambda s: measure(space.realize(s), confirm_seconds))
    return TuneResult(
        space=space,
        search=found,
        baseline_examples_per_s=found.baseline_score,
        best_examples_per_s=best_rate,
        best_settings=best,
        elapsed_s=time.monotonic() - start,
        method=method,
    )


def _confirm(found: SearchResult, *, measure: Callable[[dict[str, Any]], float]):
    """Re-measure the search's winner; keep it only if it still beats the baseline.

    Only the winner is re-measured: it was picked as the maximum of many noisy
    samples, so its search figure is biased upwards, while the baseline's trial
    was not selected and stands as measured. Returns `(settings, examples/s)`.
    """
    baseline = dict(found.baseline)
    if dict(found.best) == baseline:
        return baseline, found.baseline_score
    best_rate = measure(dict(found.best))
    if best_rate <= found.baseline_score:
        return baseline, found.baseline_score
    return dict(found.best), best_rate
