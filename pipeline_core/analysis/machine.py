"""Machine limit: what the pipeline's work could reach on all cores.

The whole pipeline is run on one core (every map and interleave sequential,
no prefetch, a private thread pool of one thread, one intra-op thread), which
gives the single-core rate of its CPU work. Cores × that rate is the limit
for CPU-bound work; the pipeline's measured rate is then placed against it
("you are at 83% of what 2 cores can do"). Work that waits instead of
computing (I/O, sleeps) overlaps beyond the cores, so it can exceed 100%:
the verdict then says the pipeline is not CPU-bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.measure import WINDOW_S, measure_spec
from pipeline_core.spec import InterleaveStep, MapStep, PipelineSpec, PrefetchStep


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MachineLimit:
    """Single-core rate × cores against the rate the pipeline reaches."""

    single_core_examples_per_s: float
    cores: int
    examples_per_s: float

    @property
    def limit_examples_per_s(self) -> float:
        return self.single_core_examples_per_s * self.cores

    def fraction(self) -> float:
        """Measured rate ÷ limit (above 1: the work is not CPU-bound)."""
        limit = self.limit_examples_per_s
        return self.examples_per_s / limit if limit > 0 else 0.0

    def verdict(self) -> str:
        share = self.fraction()
        cores = f"{self.cores} core{'s' if self.cores != 1 else ''}"
        if share > 1.05:
            return (
                f"you are at {share:.0%} of what {cores} can do for CPU work: the pipeline "
                "mostly waits (I/O, sleeps), so more parallelism than cores still helps"
            )
        return f"you are at {share:.0%} of what {cores} can do"

    def to_dict(self) -> dict[str, Any]:
        return {
            "single_core_examples_per_s": self.single_core_examples_per_s,
            "cores": self.cores,
            "limit_examples_per_s": self.limit_examples_per_s,
            "examples_per_s": self.examples_per_s,
            "fraction": self.fraction(),
            "verdict": self.verdict(),
        }


def single_core_spec(spec: PipelineSpec) -> PipelineSpec:
    """`spec` with all work on one thread: sequential steps, no prefetch, one-thread pools."""
    steps = []
    for step in spec.steps:
        if isinstance(step, PrefetchStep):
            continue
        if isinstance(step, MapStep | InterleaveStep) or step.op == "batch":
            step = step.model_copy(update={"num_parallel_calls": None})
        steps.append(step)
    options = spec.options.model_copy(
        update={"private_threadpool_size": 1, "max_intra_op_parallelism": 1}
    )
    return spec.replace(steps=steps, options=options)


def machine_limit(
    spec: PipelineSpec,
    *,
    seconds: float = WINDOW_S,
    cores: int | None = None,
    examples_per_s: float | None = None,
    measure: Callable[[PipelineSpec], float] | None = None,
) -> MachineLimit:
    """Measure the single-core rate of `spec` and place its real rate against cores × it.

    Args:
        spec: the pipeline.
        seconds: timed window of each measurement.
        cores: cores to scale by (default: the cores this process may use).
        examples_per_s: the pipeline's rate if already measured (else measured here).
        measure: spec -> examples/s (default: in-process `measure_spec`).
    """
    if measure is None:

        def measure(s: PipelineSpec) -> float:
            return measure_spec(s, seconds=seconds).examples_per_s

    single = measure(single_core_spec(spec))
    rate = measure(spec) if examples_per_s is None else examples_per_s
    return MachineLimit(
        single_core_examples_per_s=single,
        cores=cores or available_cores(),
        examples_per_s=rate,
    )
