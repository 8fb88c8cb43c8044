"""One pipeline, one number: do stage analysis, the tuner, the recommendations and a
profile run of the same spec agree — and if not, why not.

Stage analysis (its consumer row), the tuner's baseline and the
recommendations' baseline are measured the same way: in one process, a
Python loop pulling the whole pipeline after a warm-up, over `WINDOW_S`
windows, repeated where figures are compared. They differ only by the
machine's noise and by *when* they ran. A profile run is different by
design: a fresh child process timed from its first batch to its limit, one
pass over the data unless the spec repeats, optionally with a simulated
training step. `agreement(...)` puts the figures side by side, checks them
against a tolerance and names, for each figure that differs, the reasons
that apply to it. `recommendation_checks(...)` does the same between each
recommendation and the tuner's measurement of the same change.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.analysis.measure import WARMUP_S, steady_window
from pipeline_core.spec import PipelineSpec, SpecError, load_spec
from pipeline_core.steps import CacheStep, RepeatStep

TOLERANCE = 0.10
SHORT_RUN_BATCHES = 50  # a profile run's steady state of fewer batches is mostly warm-up
SHORT_RUN_S = 2.0
SHORT_WINDOW_S = 0.5  # a window shorter than this holds too few batches to compare
_IN_PROCESS = (
    "in one process, a Python loop pulling the whole pipeline after a "
    f"{WARMUP_S:g} s warm-up (the pipeline repeated so no epoch ends the window)"
)


@dataclass(frozen=True)
class Figure:
    """One measured examples/s of the pipeline: who measured it, how, and caveats."""

    source: str
    examples_per_s: float
    how: str
    caveats: tuple[str, ...] = ()
    in_process: bool = True  # measured the analysis way (warm, repeated, one process)


@dataclass(frozen=True)
class Agreement:
    """The figures side by side and whether they agree within `tolerance`."""

    figures: tuple[Figure, ...]
    tolerance: float = TOLERANCE
    notes: tuple[str, ...] = field(default_factory=tuple)

    def reference(self) -> float:
        """What each figure is compared with: the median of the analysis figures (all
        measured alike), or of every figure when there is none of those."""
        alike = [f.examples_per_s for f in self.figures if f.in_process and f.examples_per_s > 0]
        rates = alike or [f.examples_per_s for f in self.figures if f.examples_per_s > 0]
        return statistics.median(rates) if rates else 0.0

    def deviation(self, figure: Figure) -> float:
        """`figure` ÷ the reference − 1."""
        ref = self.reference()
        return figure.examples_per_s / ref - 1.0 if ref > 0 else math.nan

    def spread(self) -> float:
        """Highest ÷ lowest figure − 1 (0 when they are equal)."""
        rates = [f.examples_per_s for f in self.figures]
        if len(rates) < 2 or min(rates) <= 0:
            return 0.0 if len(rates) < 2 else math.inf
        return max(rates) / min(rates) - 1.0

    def agree(self) -> bool:
        """The highest and the lowest figure are within `tolerance` of each other."""
        return self.spread() <= self.tolerance

    def summary(self) -> str:
        """One sentence: agree or not, with the figures."""
        listed = ", ".join(f"{f.source} {f.examples_per_s:,.0f}" for f in self.figures)
        if len(self.figures) < 2:
            return f"Only one figure so far ({listed or 'none'}); run more to compare."
        if self.agree():
            return f"The figures agree within {self.tolerance:.0%}: {listed} examples/s."
        return (
            f"The figures differ by {self.spread():.0%} (more than {self.tolerance:.0%}): "
            f"{listed} examples/s."
        )

    def explanations(self) -> list[str]:
        """When they disagree: for each figure more than half the tolerance off the
        reference (so both ends of a spread are named), why it may differ."""
        if self.agree():
            return list(self.notes)
        out = []
        for f in self.figures:
            deviation = self.deviation(f)
            if abs(deviation) <= self.tolerance / 2:
                continue
            reasons = list(f.caveats)
            if f.in_process:
                reasons.append(
                    "measured at another time on a shared machine (other work slows some "
                    "windows); run it again, or compare figures from one quiet moment"
                )
            why = "; ".join(reasons)
            out.append(f"{f.source} is {deviation:+.0%} off the median: {why}.")
        return out + list(self.notes)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "measured by": f.source,
                "examples/s": round(f.examples_per_s, 1),
                "vs median": f"{self.deviation(f):+.0%}",
                "caveats": "; ".join(f.caveats),
                "how": f.how,
            }
            for f in self.figures
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "agree": self.agree(),
            "spread": self.spread(),
            "tolerance": self.tolerance,
            "reference": self.reference(),
            "summary": self.summary(),
            "explanations": self.explanations(),
            "figures": self.rows(),
        }


# --- figures from each kind of result ------------------------------------------------


def _window_caveats(seconds: float | None) -> tuple[str, ...]:
    if seconds is None or seconds >= SHORT_WINDOW_S:
        return ()
    return (
        f"timed over short windows ({seconds:g} s), a few batches each, so warm-up and "
        "the machine's hiccups weigh in; use longer windows (1 s or more) to compare",
    )


def stages_figure(report) -> Figure:
    """The stage analysis's consumer row (the rate the pipeline delivers)."""
    window = report.consumer_seconds
    timed = f"one {window:g} s window" if window else "one window"
    return Figure(
        "stage analysis",
        report.delivered.examples_per_s,
        f"consumer row, {timed}: {_IN_PROCESS}",
        _window_caveats(window),
    )


def tuner_figure(result) -> Figure:
    """The tuner's baseline (re-measured alternately when it verified)."""
    rounds = max((len(r.figures) for r in result.verified), default=0)
    window = steady_window(result.trial_seconds) if rounds else result.trial_seconds
    how = (
        f"median of {rounds} windows of {window:g} s alternating with the candidates"
        if rounds
        else f"one {window:g} s window"
    )
    return Figure(
        "tuner, as written",
        result.baseline_examples_per_s,
        f"{how}; {_IN_PROCESS}",
        _window_caveats(window),
    )


def recommendations_figure(recommendations: Sequence) -> Figure | None:
    """The recommendations' baseline (None when no recommendation was kept)."""
    if not recommendations:
        return None
    first = recommendations[0]
    rounds = len(first.rounds) or 1
    return Figure(
        "recommendations, as written",
        first.baseline_examples_per_s,
        f"median of {rounds} windows alternating with the fixes; {_IN_PROCESS}",
    )


def profile_figure(record, spec: PipelineSpec) -> Figure | None:
    """A stored profile run of `spec` (a `store.RunRecord`), with what sets it apart."""
    summary = record.summary or {}
    rate = summary.get("examples_per_s")
    if not rate:
        return None
    batches = int(summary.get("batches") or 0)
    elapsed = float(summary.get("elapsed_s") or 0.0)
    caveats = []
    step = summary.get("step") or "none"
    if step != "none":
        caveats.append(
            f"the run had a simulated training step ({step}): examples/s counts the step's "
            "time too, so it is what training would see, not the pipeline alone"
        )
    if batches - 1 < SHORT_RUN_BATCHES or elapsed < SHORT_RUN_S:
        caveats.append(
            f"the run's steady state is only {max(batches - 1, 0)} batches ({elapsed:.1f} s) "
            "from a fresh process, so warm-up weighs in (autotune ramping up parallelism, "
            "buffers filling); analysis times after a warm-up, repeating the pipeline"
        )
    repeats = any(isinstance(s, RepeatStep) and s.count is None for s in spec.steps)
    if not repeats:
        caveats.append(
            f"the run ended with {summary.get('end_reason') or 'its limit'}: without a repeat "
            "step a profile run covers one pass, while analysis repeats the pipeline"
        )
    if any(isinstance(s, CacheStep) for s in spec.steps):
        caveats.append(
            "the spec caches: a profile run's first pass fills the cache (reading and "
            "decoding as it goes), while analysis times after one pass, from the cache"
        )
    return Figure(
        f"profile run #{record.id}",
        float(rate),
        "a fresh child process, timed from the second batch to the run's limit",
        tuple(caveats),
        in_process=False,
    )


def latest_profile_run(spec: PipelineSpec, store, *, limit: int = 10):
    """The newest completed profile run of exactly `spec` in `store` (None if there is none).

    Only runs named like the spec are opened (the Profile page names a run after its
    spec), at most `limit` of them, newest first.
    """
    named = [i for i in store.list_runs() if i.status == "completed" and i.name == spec.name]
    for info in named[:limit]:
        record = store.get_run(info.id)
        try:
            if record.spec is not None and load_spec(record.spec) == spec:
                return record
        except SpecError:
            continue
    return None


def agreement(
    *,
    stages=None,
    tune=None,
    recommendations: Sequence | None = None,
    profile_run=None,
    spec: PipelineSpec | None = None,
    tolerance: float = TOLERANCE,
) -> Agreement:
    """Side by side: whichever of the four results are given (all of one spec)."""
    figures: list[Figure] = []
    if stages is not None:
        figures.append(stages_figure(stages))
    if tune is not None:
        figures.append(tuner_figure(tune))
    if recommendations:
        found = recommendations_figure(recommendations)
        if found is not None:
            figures.append(found)
    if profile_run is not None and spec is not None:
        found = profile_figure(profile_run, spec)
        if found is not None:
            figures.append(found)
    return Agreement(figures=tuple(figures), tolerance=tolerance)


# --- recommendations against the tuner --------------------------------------------------


def _trial_of(result, settings) -> Any:
    """The tuner's trial of the baseline with `settings` applied (None if never tried)."""
    knobs = result.space.values()
    point = {**result.space.baseline()}
    for name, value in settings.items():
        if name not in knobs or value not in knobs[name]:
            return None
        point[name] = value
    return next((t for t in result.search.trials if dict(t.settings) == point), None)


def recommendation_checks(
    recommendations: Iterable, result, *, tolerance: float = TOLERANCE
) -> list[str]:
    """One line per speed recommendation whose figure does not match the tuner's story:
    its gain differs from the tuner's figure for the same change, or exceeds the tuned
    speedup. An empty list: recommendations and tuner tell the same story."""
    lines = []
    base = result.baseline_examples_per_s
    for rec in recommendations:
        if rec.kind != "speed" or not rec.settings or base <= 0:
            continue
        claim = f"“{rec.title}” measured {rec.gain():.2f}×"
        above = rec.gain() > result.speedup() * (1.0 + tolerance)
        trial = _trial_of(result, rec.settings)
        if trial is None or not trial.ok:
            if above:
                lines.append(
                    f"{claim}, more than the tuned {result.speedup():.2f}×, but the tuner "
                    "did not try that change (outside its space or budget); tune again "
                    "after the recommendations so it starts from them."
                )
            continue
        again = result.remeasured(trial.index)
        tuner_gain = (result.figure(trial.index) or 0.0) / base
        how = f"re-measured {len(again.figures)}×" if again else "in one window"
        if above or abs(tuner_gain / rec.gain() - 1.0) > tolerance:
            verdict = (
                " it is the tuned result."
                if trial.index == result.best_trial
                else " the tuned result is the figure to trust: its candidates were "
                "re-measured alternately with the baseline in one run."
            )
            lines.append(
                f"{claim} against its own baseline; the tuner measured the same change "
                f"(trial #{trial.index}) at {tuner_gain:.2f}× {how} — measured at another "
                f"time on a shared machine;{verdict}"
            )
    return lines


def seeds_of(recommendations: Iterable) -> list[dict[str, Any]]:
    """Tuner settings of the speed recommendations (their fixes as points of the space)."""
    return [dict(r.settings) for r in recommendations if r.kind == "speed" and r.settings]
