"""Stage analysis: throughput of each prefix of the pipeline, and the cost each step adds.

The source alone is timed, then source + steps[0], source + steps[0..1], and
so on. Everything is compared in examples per second (a batch counts its
examples), so batch, take and repeat compare fairly. Each prefix is timed
*drained* (`measure`: pulled inside TensorFlow in chunks), so Python's cost of
pulling one element (~100-250 µs, more than many augmentations) is not charged
to whichever prefix still yields single elements — without that, a prefix
before `batch` pays it per example and a cheap source looks like the
bottleneck. Python's cost is then measured once, where a training loop pays
it: the whole pipeline pulled by a `for` loop (the *consumer* row). That
figure is what the pipeline delivers, what a profile run and the tuner's
baseline measure.

The cost a step adds is the difference in microseconds per example between
its prefix and the one before; the step adding the most is the bottleneck.
Parallel steps and prefetch can make a prefix faster than the one before (a
negative cost).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.measure import WINDOW_S, Throughput, measure_spec, steady_window
from pipeline_core.spec import PipelineSpec

Measure = Callable[[PipelineSpec, str], Throughput]
CONSUMER_LABEL = "consumer (Python for loop)"


@dataclass(frozen=True)
class Stage:
    """One row: the source (`step_index` None), a prefix up to a step, or the consumer."""

    step_index: int | None
    label: str
    examples_per_s: float
    us_per_example: float
    added_us_per_example: float
    kind: str = "step"  # "source", "step" or "consumer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_index": self.step_index,
            "label": self.label,
            "kind": self.kind,
            "examples_per_s": self.examples_per_s,
            "us_per_example": self.us_per_example,
            "added_us_per_example": self.added_us_per_example,
        }


@dataclass(frozen=True)
class StageReport:
    """Every stage of one spec in order, then the consumer; derived figures as methods."""

    spec: PipelineSpec
    stages: tuple[Stage, ...]
    consumer: Stage | None = None
    consumer_seconds: float | None = None  # timed window of the consumer row

    @property
    def rows(self) -> tuple[Stage, ...]:
        """The stages, then the consumer row when measured."""
        return self.stages + ((self.consumer,) if self.consumer is not None else ())

    def bottleneck(self) -> Stage:
        """The pipeline stage that adds the most time per example (never the consumer)."""
        return max(self.stages, key=lambda s: s.added_us_per_example)

    def consumer_bound(self) -> bool:
        """The consumer's per-element cost exceeds what any stage adds."""
        worst = self.bottleneck().added_us_per_example
        return self.consumer is not None and self.consumer.added_us_per_example > worst

    def share(self, stage: Stage) -> float:
        """Share of the positive per-example cost (stages and consumer) `stage` adds (0..1)."""
        total = sum(max(s.added_us_per_example, 0.0) for s in self.rows)
        return max(stage.added_us_per_example, 0.0) / total if total > 0 else 0.0

    def step(self, index: int | None) -> Stage:
        """The stage of steps[index] (None: the source)."""
        return next(s for s in self.stages if s.step_index == index)

    @property
    def final(self) -> Stage:
        """The whole pipeline, drained (its own work, no consumer)."""
        return self.stages[-1]

    @property
    def delivered(self) -> Stage:
        """The rate a training loop sees: the consumer row (the final stage without one)."""
        return self.consumer if self.consumer is not None else self.final

    def to_dict(self) -> dict[str, Any]:
        worst = self.bottleneck()
        return {
            "pipeline": self.spec.name,
            "bottleneck_step": worst.step_index,
            "bottleneck_label": worst.label,
            "bottleneck_share": self.share(worst),
            "consumer_bound": self.consumer_bound(),
            "examples_per_s": self.delivered.examples_per_s,
            "drained_examples_per_s": self.final.examples_per_s,
            "stages": [{**s.to_dict(), "share": self.share(s)} for s in self.rows],
        }


def stage_label(spec: PipelineSpec, index: int | None) -> str:
    if index is None:
        return f"source ({spec.source.type})"
    step = spec.steps[index]
    detail = ""
    if step.op == "map":
        detail = " " + "+".join(a.name for a in step.augmentations)
    return f"steps[{index}] {step.op}{detail}"


def prefixes(spec: PipelineSpec) -> list[tuple[int | None, PipelineSpec]]:
    """`(last step index, prefix spec)` for the source alone and each step in order."""
    out: list[tuple[int | None, PipelineSpec]] = [(None, spec.replace(steps=[]))]
    for k in range(len(spec.steps)):
        out.append((k, spec.replace(steps=spec.steps[: k + 1])))
    return out


def analyze_stages(
    spec: PipelineSpec,
    *,
    seconds: float = WINDOW_S,
    rounds: int = 1,
    consumer: bool = True,
    measure: Measure | None = None,
    on_stage: Callable[[Stage | None, int, int], None] | None = None,
) -> StageReport:
    """Time every prefix of `spec` (drained), then the whole of it as a consumer pulls it.

    Args:
        spec: the pipeline.
        seconds: timed window of each prefix (the consumer row, the figure reported as
            the pipeline's rate, gets `steady_window(seconds)`).
        rounds: measure every row this many times, round after round (so a slow
            spell of a shared machine touches every row alike), and keep the median.
        consumer: also time the whole pipeline through a Python loop (the consumer row).
        measure: `(spec, mode) -> Throughput` (default: `measure_spec` with `seconds`).
        on_stage: progress callback `(stage, done, total)` after each measurement;
            `stage` is the finished row in the last round, else None.

    Raises:
        MeasureError, BuildError: a prefix cannot be built or iterated.
        ValueError: rounds < 1.
    """
    if rounds < 1:
        raise ValueError(f"The `rounds` argument should be >= 1. Received: rounds={rounds}")
    if measure is None:

        def measure(s: PipelineSpec, mode: str) -> Throughput:
            # the consumer row is the figure reported as the pipeline's rate
            window = steady_window(seconds) if mode == "consumer" else seconds
            return measure_spec(s, seconds=window, mode=mode)

    todo: list[tuple[int | None, PipelineSpec, str]] = [
        (index, prefix, "drained") for index, prefix in prefixes(spec)
    ]
    if consumer:
        todo.append((None, spec, "consumer"))
    us: list[list[float]] = [[] for _ in todo]
    total = rounds * len(todo)
    rows: list[Stage] = []
    done = 0
    for round_ in range(rounds):
        previous_us = 0.0
        for k, (index, prefix, mode) in enumerate(todo):
            us[k].append(measure(prefix, mode).us_per_example)
            done += 1
            stage = None
            if round_ == rounds - 1:
                figure = statistics.median(us[k])
                kind = "consumer" if mode == "consumer" else "step"
                if mode == "drained" and index is None:
                    kind = "source"
                stage = Stage(
                    step_index=index,
                    label=CONSUMER_LABEL if kind == "consumer" else stage_label(spec, index),
                    examples_per_s=1e6 / figure if figure > 0 else 0.0,
                    us_per_example=figure,
                    added_us_per_example=figure - previous_us,
                    kind=kind,
                )
                rows.append(stage)
                previous_us = figure
            if on_stage is not None:
                on_stage(stage, done, total)
    stages = tuple(r for r in rows if r.kind != "consumer")
    row = next((r for r in rows if r.kind == "consumer"), None)
    window = steady_window(seconds) if consumer else None
    return StageReport(spec=spec, stages=stages, consumer=row, consumer_seconds=window)


def format_stage_table(report: StageReport) -> str:
    """A plain-text table of the stages and the consumer, the bottleneck marked."""
    worst = report.bottleneck()
    rows = [f"{'stage':<48} {'examples/s':>12} {'µs/example':>11} {'added µs':>10} {'share':>6}"]
    for s in report.rows:
        mark = "  <- bottleneck" if s is worst else ""
        rows.append(
            f"{s.label[:48]:<48} {s.examples_per_s:>12,.0f} {s.us_per_example:>11.1f} "
            f"{s.added_us_per_example:>+10.1f} {report.share(s):>6.0%}{mark}"
        )
    return "\n".join(rows)
