"""Machine limit: what the pipeline's work could reach on all cores, and the consumer.

The whole pipeline is run on one core (every map and interleave sequential,
no prefetch, a private thread pool of one thread, one intra-op thread), as a
Python loop pulls it, which gives the single-core rate of all its CPU work,
the consumer's included. Cores × that rate is the limit for CPU-bound work.

The consumer's own cost does not spread over cores: one Python thread pulls
every element. So the limit is also at most the rate at which a Python loop
can pull ready elements of this shape (`consumer_rate`: the first elements
cached in memory and repeated). A fast, cached pipeline meets that limit
long before the cores' one. The pipeline's measured rate is placed against
the lower of the two ("you are at 83% of what 2 cores can do"). Work that
waits instead of computing (I/O, sleeps) overlaps beyond the cores, so it can
exceed 100%: the verdict then says the pipeline is not CPU-bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.examples import is_batched
from pipeline_core.analysis.measure import WINDOW_S, measure_dataset, measure_spec
from pipeline_core.build import build
from pipeline_core.metrics import available_cores
from pipeline_core.spec import PipelineSpec
from pipeline_core.steps import InterleaveStep, MapStep, PrefetchStep

CONSUMER_ELEMENTS = 16  # ready elements a consumer-only measurement cycles through
# The field of the image_folder/tfrecord/csv source models for parallel decode (tunable as
# `source.parallel`); sources without it have nothing to set.
SOURCE_PARALLEL_FIELD = "num_parallel_calls"


@dataclass(frozen=True)
class MachineLimit:
    """Single-core rate × cores, and the consumer's rate, against the rate the pipeline
    reaches (`consumer_examples_per_s` None: not measured, the cores' limit alone)."""

    single_core_examples_per_s: float
    cores: int
    examples_per_s: float
    consumer_examples_per_s: float | None = None

    @property
    def cores_limit_examples_per_s(self) -> float:
        return self.single_core_examples_per_s * self.cores

    @property
    def limit_examples_per_s(self) -> float:
        """The lower of the cores' limit and the consumer's."""
        cores = self.cores_limit_examples_per_s
        consumer = self.consumer_examples_per_s
        return min(cores, consumer) if consumer else cores

    def bound_by(self) -> str:
        """ "cores" or "consumer": which limit is the lower."""
        consumer = self.consumer_examples_per_s
        return "consumer" if consumer and consumer < self.cores_limit_examples_per_s else "cores"

    def fraction(self) -> float:
        """Measured rate ÷ limit (above 1: the work is not CPU-bound)."""
        limit = self.limit_examples_per_s
        return self.examples_per_s / limit if limit > 0 else 0.0

    def verdict(self) -> str:
        share = self.fraction()
        cores = f"{self.cores} core{'s' if self.cores != 1 else ''}"
        if self.bound_by() == "consumer":
            return (
                f"you are at {share:.0%} of what one Python loop can pull "
                f"({self.consumer_examples_per_s:,.0f} ready examples/s, below what {cores} "
                "could make): larger batches would raise the limit"
            )
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
            "cores_limit_examples_per_s": self.cores_limit_examples_per_s,
            "consumer_examples_per_s": self.consumer_examples_per_s,
            "limit_examples_per_s": self.limit_examples_per_s,
            "bound_by": self.bound_by(),
            "examples_per_s": self.examples_per_s,
            "fraction": self.fraction(),
            "verdict": self.verdict(),
        }


def consumer_dataset(spec: PipelineSpec | str) -> Any:
    """Ready elements of `spec`: its first `CONSUMER_ELEMENTS` elements, cached in memory
    (filled here) and repeated, so a loop over it times the consumer alone."""
    cached = build(spec).take(CONSUMER_ELEMENTS).cache()
    for _ in cached:  # one full pass fills the memory cache; later iterators read it
        pass
    return cached.repeat()


def consumer_rate(spec: PipelineSpec, *, seconds: float = WINDOW_S) -> float:
    """Examples/s a Python loop pulls from ready elements of `spec` (`consumer_dataset`)."""
    ready = consumer_dataset(spec)
    return measure_dataset(ready, batched=is_batched(spec), seconds=seconds).examples_per_s


def single_core_spec(spec: PipelineSpec) -> PipelineSpec:
    """`spec` with all work on one thread: sequential decode and steps, no prefetch,
    one-thread pools."""
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
    source = spec.source
    if SOURCE_PARALLEL_FIELD in type(source).model_fields:
        source = source.model_copy(update={SOURCE_PARALLEL_FIELD: None})
    return spec.replace(steps=steps, options=options, source=source)


def machine_limit(
    spec: PipelineSpec,
    *,
    seconds: float = WINDOW_S,
    cores: int | None = None,
    examples_per_s: float | None = None,
    measure: Callable[[PipelineSpec], float] | None = None,
    consumer: Callable[[PipelineSpec], float] | None = None,
) -> MachineLimit:
    """Measure the single-core rate of `spec` and the consumer's rate, and place its real
    rate against the lower of cores × single-core and the consumer's.

    Args:
        spec: the pipeline.
        seconds: timed window of each measurement.
        cores: cores to scale by (default: the cores this process may use).
        examples_per_s: the pipeline's rate if already measured (else measured here).
        measure: spec -> examples/s (default: in-process `measure_spec`).
        consumer: spec -> examples/s of a Python loop over ready elements
            (default: `consumer_rate`).
    """
    if measure is None:

        def measure(s: PipelineSpec) -> float:
            return measure_spec(s, seconds=seconds).examples_per_s

    if consumer is None:

        def consumer(s: PipelineSpec) -> float:
            return consumer_rate(s, seconds=seconds)

    single = measure(single_core_spec(spec))
    rate = measure(spec) if examples_per_s is None else examples_per_s
    return MachineLimit(
        single_core_examples_per_s=single,
        cores=cores or available_cores(),
        examples_per_s=rate,
        consumer_examples_per_s=consumer(spec),
    )
