"""Machine limit: what the pipeline's work could reach on all cores, and the consumer.

The whole pipeline is put on one thread (every map and interleave sequential,
no prefetch, a private thread pool of one thread, one intra-op thread), and
one such copy runs per core, side by side, each behind a prefetch of one
element, while one Python loop pulls them in turn (`copies_dataset`). Their
rate is what the cores can do for this pipeline's work, the consumer's
included, with no thread handing one element to another inside a copy: the
cores' limit. One core's rate is that ÷ cores.

Why copies side by side and not cores × one copy alone: a copy alone is not
one core's worth. Its Python loop and its pool thread overlap (one copy of
seed Example 3, tuned, used 1.15 CPU seconds a second), and on this 2-core VM
a lone thread that hands every element to another pays for waking an idle
core each time. Measured 2026-12-07 (Ex. 3 as written, on one thread): alone
10,700-13,800 examples/s; two copies at once in two processes 22,000-29,000
each. Two copies side by side in one process read 47,000-51,000 together,
about what the two processes did.

The consumer's own cost does not spread over cores: one Python thread pulls
every element. So the limit is also at most the rate at which a Python loop
can pull ready elements of this shape (`consumer_rate`: the first elements
cached in memory and repeated). A fast, cached pipeline meets that limit
long before the cores' one. The pipeline's measured rate is placed against
the lower of the two ("you are at 83% of what 2 cores can do"). Work that
waits instead of computing (I/O, sleeps) overlaps beyond the cores, so it can
exceed 100%: the verdict then says the pipeline is not CPU-bound. A memory
cache is filled once per copy while the limit is measured, so when `cores`
copies' buffers would pass half the memory available, fewer copies run and
their rate is scaled to the cores (`copies_that_fit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import is_batched
from pipeline_core.analysis.measure import (
    WINDOW_S,
    cache_pass_examples,
    measure_dataset,
    measure_spec,
    repeated,
)
from pipeline_core.build import build
from pipeline_core.metrics import available_cores
from pipeline_core.spec import PipelineSpec, load_spec
from pipeline_core.steps import InterleaveStep, MapStep, PrefetchStep

CONSUMER_ELEMENTS = 16  # ready elements a consumer-only measurement cycles through
# The cores' copies are pulled by one Python loop too: when they reach this share of the
# loop's own rate over ready elements, the loop is what holds them (`bound_by`).
CONSUMER_HELD = 0.8
# The field of the image_folder/tfrecord/csv source models for parallel decode (tunable as
# `source.parallel`); sources without it have nothing to set.
SOURCE_PARALLEL_FIELD = "num_parallel_calls"


@dataclass(frozen=True)
class MachineLimit:
    """One core's rate (with every core running a copy) × cores, and the consumer's rate,
    against the rate the pipeline reaches (`consumer_examples_per_s` None: not measured,
    the cores' limit alone)."""

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
        """ "consumer" when the cores' copies reach `CONSUMER_HELD` of what a Python loop
        pulls from ready elements (that one loop pulls the copies too, so it is what
        holds them), else "cores"."""
        consumer = self.consumer_examples_per_s
        held = consumer and self.cores_limit_examples_per_s >= CONSUMER_HELD * consumer
        return "consumer" if held else "cores"

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
                f"({self.limit_examples_per_s:,.0f} examples/s: the loop, not the {cores}, "
                "holds this pipeline back): larger batches would raise the limit"
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


def copies_dataset(spec: PipelineSpec | str, copies: int) -> Any:
    """`copies` copies of `spec` on one thread each (`single_core_spec`), repeated, side by
    side: each behind a prefetch of one element, pulled in turn. The thread pool has one
    thread per copy and every op one intra-op thread."""
    spec = load_spec(spec) if isinstance(spec, str) else spec
    single = single_core_spec(spec)
    copies = max(int(copies), 1)
    single = single.replace(
        options=single.options.model_copy(update={"private_threadpool_size": copies})
    )
    parts = [repeated(single).prefetch(1) for _ in range(copies)]
    if copies == 1:
        return parts[0]
    turns = _tf().data.Dataset.range(copies).repeat()
    return _tf().data.Dataset.choose_from_datasets(parts, turns)


def copies_that_fit(spec: PipelineSpec, cores: int, *, estimate: Any = None) -> int:
    """How many one-thread copies of `spec` fit side by side: `cores`, or fewer when that
    many copies' buffers (each fills its own cache) would pass half the memory available
    now. One copy is counted as `analysis.memory.memory_estimate(spec)` (unless `estimate`
    is given): the spec as written, whose prefetch and parallel maps a one-thread copy
    does not have, so it errs toward fewer copies; and its source's element count is the
    one already known (a one-thread copy's source differs in its parallelism, and would
    be counted again: a TFRecord's records read once more)."""
    if estimate is None:
        from pipeline_core.analysis.memory import memory_estimate  # memory imports build

        estimate = memory_estimate(spec)
    per_copy, room = estimate.total_bytes, estimate.available_bytes / 2
    if per_copy <= 0:
        return max(int(cores), 1)
    if not math.isfinite(per_copy):
        return 1
    return max(1, min(int(cores), int(room // per_copy)))


def cores_rate(spec: PipelineSpec, *, cores: int, seconds: float = WINDOW_S) -> float:
    """Examples/s of `cores` one-thread copies of `spec` side by side (`copies_dataset`),
    after a warm-up that fills each copy's memory cache. When fewer copies fit in memory
    (`copies_that_fit`), their rate × cores ÷ copies."""
    copies = copies_that_fit(spec, cores)
    rate = measure_dataset(
        copies_dataset(spec, copies),
        batched=is_batched(spec),
        seconds=seconds,
        warmup_examples=copies * cache_pass_examples(spec),
    ).examples_per_s
    return rate * cores / copies


def machine_limit(
    spec: PipelineSpec,
    *,
    seconds: float = WINDOW_S,
    cores: int | None = None,
    examples_per_s: float | None = None,
    measure: Callable[[PipelineSpec], float] | None = None,
    consumer: Callable[[PipelineSpec], float] | None = None,
) -> MachineLimit:
    """Measure what one-thread copies of `spec` reach on all cores side by side and the
    consumer's rate, and place its real rate against the lower of the two.

    Args:
        spec: the pipeline.
        seconds: timed window of each measurement.
        cores: cores to scale by (default: the cores this process may use).
        examples_per_s: the pipeline's rate if already measured (else measured here).
        measure: spec -> examples/s of the cores' copies side by side (default:
            `cores_rate`); one core's rate is that ÷ cores.
        consumer: spec -> examples/s of a Python loop over ready elements
            (default: `consumer_rate`).
    """
    cores = cores or available_cores()
    if measure is None:

        def measure(s: PipelineSpec) -> float:
            return cores_rate(s, cores=cores, seconds=seconds)

    if consumer is None:

        def consumer(s: PipelineSpec) -> float:
            return consumer_rate(s, seconds=seconds)

    per_core = measure(spec) / cores
    rate = (
        measure_spec(spec, seconds=seconds).examples_per_s
        if examples_per_s is None
        else examples_per_s
    )
    return MachineLimit(
        single_core_examples_per_s=per_core,
        cores=cores,
        examples_per_s=rate,
        consumer_examples_per_s=consumer(spec),
    )
