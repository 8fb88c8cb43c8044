"""Stage analysis: throughput of each prefix of the pipeline, and the cost each step adds.

The source alone is timed, then source + steps[0], source + steps[0..1], and
so on. Everything is compared in examples per second (a batch counts its
examples), so batch, take and repeat compare fairly. The cost a step adds is
the difference in microseconds per example between its prefix and the one
before; the step adding the most is the bottleneck. Parallel steps and
prefetch can make a prefix faster than the one before (a negative cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.measure import Throughput, measure_spec
from pipeline_core.spec import PipelineSpec

Measure = Callable[[PipelineSpec], Throughput]


@dataclass(frozen=True)
class Stage:
    """One prefix: the source (`step_index` None) or the pipeline up to a step."""

    step_index: int | None
    label: str
    examples_per_s: float
    us_per_example: float
    added_us_per_example: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_index": self.step_index,
            "label": self.label,
            "examples_per_s": self.examples_per_s,
            "us_per_example": self.us_per_example,
            "added_us_per_example": self.added_us_per_example,
        }


@dataclass(frozen=True)
class StageReport:
    """Every stage of one spec, in order; derived figures as methods."""

    spec: PipelineSpec
    stages: tuple[Stage, ...]

    def bottleneck(self) -> Stage:
        """The stage that adds the most time per example."""
        return max(self.stages, key=lambda s: s.added_us_per_example)

    def share(self, stage: Stage) -> float:
        """Share of the positive per-example cost that `stage` adds (0..1)."""
        total = sum(max(s.added_us_per_example, 0.0) for s in self.stages)
        return max(stage.added_us_per_example, 0.0) / total if total > 0 else 0.0

    def step(self, index: int | None) -> Stage:
        return next(s for s in self.stages if s.step_index == index)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def to_dict(self) -> dict[str, Any]:
        worst = self.bottleneck()
        return {
            "pipeline": self.spec.name,
            "bottleneck_step": worst.step_index,
            "bottleneck_label": worst.label,
            "bottleneck_share": self.share(worst),
            "examples_per_s": self.final.examples_per_s,
            "stages": [{**s.to_dict(), "share": self.share(s)} for s in self.stages],
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
    seconds: float = 0.5,
    measure: Measure | None = None,
    on_stage: Callable[[Stage, int, int], None] | None = None,
) -> StageReport:
    """Time every prefix of `spec` and attribute cost to each step.

    Args:
        spec: the pipeline.
        seconds: timed window per prefix.
        measure: spec -> Throughput (default: `measure_spec` with `seconds`).
        on_stage: progress callback `(stage, done, total)`.

    Raises:
        MeasureError, BuildError: a prefix cannot be built or iterated.
    """
    if measure is None:

        def measure(s: PipelineSpec) -> Throughput:
            return measure_spec(s, seconds=seconds)

    stages: list[Stage] = []
    previous_us = 0.0
    todo = prefixes(spec)
    for done, (index, prefix) in enumerate(todo, start=1):
        result = measure(prefix)
        us = result.us_per_example
        stage = Stage(
            step_index=index,
            label=stage_label(spec, index),
            examples_per_s=result.examples_per_s,
            us_per_example=us,
            added_us_per_example=us - previous_us,
        )
        stages.append(stage)
        previous_us = us
        if on_stage is not None:
            on_stage(stage, done, len(todo))
    return StageReport(spec=spec, stages=tuple(stages))


def format_stage_table(report: StageReport) -> str:
    """A plain-text table of the stages with the bottleneck marked."""
    worst = report.bottleneck()
    rows = [f"{'stage':<48} {'examples/s':>12} {'µs/example':>11} {'added µs':>10} {'share':>6}"]
    for s in report.stages:
        mark = "  <- bottleneck" if s is worst else ""
        rows.append(
            f"{s.label[:48]:<48} {s.examples_per_s:>12,.0f} {s.us_per_example:>11.1f} "
            f"{s.added_us_per_example:>+10.1f} {report.share(s):>6.0%}{mark}"
        )
    return "\n".join(rows)
