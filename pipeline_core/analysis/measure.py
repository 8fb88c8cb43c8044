"""In-process throughput measurement of a dataset, in examples per second.

Analysis compares many small variants of one pipeline, so it times them in
this process (no child start-up per trial): a warm-up, then a timed window
in which examples are counted (`analysis.examples`). Two ways to pull:

- ``consumer``: a Python loop calls `next()` on every element, as a training
  loop and a profile run do. This is the rate the pipeline delivers, Python's
  per-element cost (~100-250 µs an element on a 2-core machine) included.
- ``drained``: the elements are pulled inside TensorFlow, `DRAIN_ELEMENTS` at a
  time (`shard` keeps one in DRAIN_ELEMENTS; batches become their example
  counts, `DRAIN_BATCHES` to a pull), so Python's per-element cost is divided by
  the chunk and the figure is the pipeline's own work. Stage analysis times
  prefixes this way: a prefix that still yields single elements would
  otherwise be charged the consumer's cost, and the source would look slow.

Why these windows (measured on the 2-core development machine, Nov 2026,
while other work ran: 1-minute load 0.2-5; coefficient of variation of 6
windows each): `tf.data`'s autotuner raises parallelism and buffer sizes over
the first second of an iterator, so after a 0.1 s warm-up even 2 s windows of
an image-folder pipeline (JPEG decode + resize 224) varied by 32%, after
`WARMUP_S` = 0.5 s by 5%. Short windows are at the mercy of whatever else the
machine runs: 0.25 s windows varied by 10-60%, 1 s windows by 9-15%, 2 s
windows by 4-5%, on seed Example 3 and on the image folder alike. So every
measurement warms up for 0.5 s; a figure that only ranks (a stage, a tuner
trial) is timed over `WINDOW_S` = 1 s, and a figure that is reported as the
result (the tuner's winner and baseline) over `STEADY_WINDOW_S` = 2 s, the
candidates measured alternately and the median kept (`tuner`, `recommend`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import (
    examples_in,
    examples_per_element,
    examples_tensor,
    is_batched,
    stage_counts,
)
from pipeline_core.build import build
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import Sampler
from pipeline_core.spec import PipelineSpec
from pipeline_core.steps import CacheStep, RepeatStep

WARMUP_S = 0.5  # autotune settles; buffers fill
WINDOW_S = 1.0  # timed window of a figure that ranks (a stage, a trial)
STEADY_WINDOW_S = 2.0  # timed window of a figure reported as the result
DRAIN_ELEMENTS = 16  # unbatched elements per Python pull when drained
DRAIN_BATCHES = 4  # batches per Python pull when drained
MODES = ("consumer", "drained")
_MARK_EVERY_S = 0.01


def steady_window(seconds: float) -> float:
    """Window of a figure reported as a result, given the window of the figures that rank:
    twice it, at most `STEADY_WINDOW_S`, never shorter than it."""
    return max(seconds, min(2 * seconds, STEADY_WINDOW_S))


class MeasureError(PipelineLabError):
    """A dataset could not be measured (empty, or it failed while iterating)."""


@dataclass(frozen=True)
class Throughput:
    """Examples and elements seen in the timed window after a warm-up.

    `marks` holds `(seconds into the window, examples so far)` about every
    10 ms, so the window's steadiness can be judged (`spread`).
    """

    examples: int
    elements: int
    seconds: float
    warmup_s: float
    exhausted: bool = False
    mode: str = "consumer"
    marks: tuple[tuple[float, int], ...] = ()

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def us_per_example(self) -> float:
        return 1e6 * self.seconds / self.examples if self.examples else float("inf")

    def part_rates(self, parts: int = 4) -> tuple[float, ...]:
        """Examples/s in `parts` equal slices of the window (fewer when marks are sparse)."""
        if not self.marks or self.seconds <= 0:
            return ()
        edges = [self.seconds * k / parts for k in range(parts + 1)]
        rates, start = [], (0.0, 0)
        for edge in edges[1:]:
            end = next((m for m in self.marks if m[0] >= edge - 1e-9), self.marks[-1])
            if end[0] > start[0]:
                rates.append((end[1] - start[1]) / (end[0] - start[0]))
                start = end
        return tuple(rates)

    def spread(self) -> float:
        """(max - min) / median of the slices' rates: 0 for a steady window."""
        rates = self.part_rates()
        if len(rates) < 2:
            return 0.0
        middle = statistics.median(rates)
        return (max(rates) - min(rates)) / middle if middle > 0 else math.inf


def _drained(dataset, *, batched: bool):
    """`dataset` pulled in chunks inside TensorFlow (`_chunk_examples` counts a chunk)."""
    if batched:
        counts = dataset.map(lambda *element: examples_tensor(element, batched=True))
        return counts.batch(DRAIN_BATCHES)
    return dataset.shard(DRAIN_ELEMENTS, DRAIN_ELEMENTS - 1)


def _chunk_examples(chunk, *, batched: bool) -> tuple[int, int]:
    """(examples, source elements) in one pulled chunk of a drained dataset."""
    if batched:
        counts = chunk.numpy()
        return int(counts.sum()), int(counts.shape[0])
    return DRAIN_ELEMENTS, DRAIN_ELEMENTS


def measure_dataset(
    dataset,
    *,
    batched: bool,
    seconds: float = WINDOW_S,
    warmup_s: float = WARMUP_S,
    warmup_examples: int = 1,
    max_warmup_s: float = 10.0,
    mode: str = "consumer",
) -> Throughput:
    """Time `dataset`: skip a warm-up, then count examples for `seconds`.

    Args:
        dataset: any `tf.data.Dataset` of `(features, label)` elements.
        batched: elements are batches (count their leading dimension).
        seconds: length of the timed window.
        warmup_s: minimum warm-up time (buffers fill, autotune settles).
        warmup_examples: minimum warm-up examples (e.g. one pass to fill a cache).
        max_warmup_s: warm-up never lasts longer than this.
        mode: "consumer" (a Python loop pulls each element) or "drained" (pulled
            inside TensorFlow in chunks; see the module docstring).

    Raises:
        MeasureError: the dataset is empty or raised while iterating.
        ValueError: unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"The `mode` argument should be one of {MODES}. Received: mode={mode!r}")
    drained = mode == "drained"
    if drained:
        dataset = _drained(dataset, batched=batched)

    def count(element) -> tuple[int, int]:
        if drained:
            return _chunk_examples(element, batched=batched)
        return examples_in(element, batched=batched), 1

    iterator = iter(dataset)
    start = time.perf_counter()
    seen = warm_examples = 0
    try:
        for element in iterator:
            seen += 1
            warm_examples += count(element)[0]
            elapsed = time.perf_counter() - start
            warm = elapsed >= warmup_s and warm_examples >= warmup_examples
            if warm or elapsed >= max_warmup_s:
                break
        else:
            if seen == 0:
                raise MeasureError(
                    "Cannot measure a dataset with 0 elements; check the source and any "
                    "take/batch(drop_remainder) steps."
                )
        warmup = time.perf_counter() - start
        examples = elements = 0
        exhausted = True
        marks: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        next_mark = _MARK_EVERY_S
        for element in iterator:
            got, pulled = count(element)
            examples += got
            elements += pulled
            now = time.perf_counter() - t0
            if now >= next_mark:
                marks.append((now, examples))
                next_mark = now + _MARK_EVERY_S
            if now >= seconds:
                exhausted = False
                break
        elapsed = time.perf_counter() - t0
    except _tf().errors.OpError as exc:
        raise MeasureError(f"the pipeline failed while iterating: {exc.message}") from None
    if elements == 0:
        raise MeasureError(
            f"the dataset ended during the {warmup:.2f} s warm-up ({seen} elements); "
            "use more examples or add a repeat step"
        )
    if not marks or marks[-1][0] < elapsed:
        marks.append((elapsed, examples))
    return Throughput(
        examples=examples,
        elements=elements,
        seconds=elapsed,
        warmup_s=warmup,
        exhausted=exhausted,
        mode=mode,
        marks=tuple(marks),
    )


def cache_pass_examples(spec: PipelineSpec) -> int:
    """Examples one pass through the spec's first memory cache holds (1 without a cache,
    or when the count cannot be known without reading the data)."""
    caches = [i for i, s in enumerate(spec.steps) if isinstance(s, CacheStep) and not s.filename]
    if not caches:
        return 1
    passed = stage_counts(spec)[caches[0] + 1]
    if passed is None or math.isinf(passed):
        return 1
    return int(passed) * examples_per_element(spec, caches[0])


def repeated(spec: PipelineSpec):
    """`build(spec)`, repeated when it ends (so a measurement never runs out of epochs)."""
    dataset = build(spec)
    count = int(dataset.cardinality())
    infinite = count == _tf().data.INFINITE_CARDINALITY or any(
        isinstance(s, RepeatStep) and s.count is None for s in spec.steps
    )
    return dataset if infinite else dataset.repeat()


def measure_spec(
    spec: PipelineSpec,
    *,
    seconds: float = WINDOW_S,
    warmup_s: float = WARMUP_S,
    max_warmup_s: float = 10.0,
    mode: str = "consumer",
) -> Throughput:
    """Build `spec` and measure its steady state, repeating it so epochs never end early.

    When the spec caches in memory, the warm-up covers one pass of what the cache
    holds (up to `max_warmup_s`), so the window sees the cache being read, as in
    training — also when the spec repeats after the cache.
    """
    return measure_dataset(
        repeated(spec),
        batched=is_batched(spec),
        seconds=seconds,
        warmup_s=warmup_s,
        warmup_examples=cache_pass_examples(spec),
        max_warmup_s=max_warmup_s,
        mode=mode,
    )


def measure_peak_rss(
    spec: PipelineSpec, *, max_batches: int = 50, max_seconds: float = 5.0, hz: float = 10.0
) -> float:
    """Iterate `spec` briefly in this process while sampling its memory; the peak RSS in MB.

    Run it in a child process (see `analysis.jobs`), so the figure is the
    pipeline's own (TensorFlow included) and not the caller's.
    """
    dataset = build(spec).take(max_batches)
    sampler = Sampler(hz=hz, gpu=False)
    peak = sampler.sample().rss_mb
    start = time.perf_counter()
    with sampler:
        try:
            for _ in dataset:
                if time.perf_counter() - start >= max_seconds:
                    break
        except _tf().errors.OpError as exc:
            raise MeasureError(f"the pipeline failed while iterating: {exc.message}") from None
    readings = [*sampler.readings(), sampler.sample()]
    return max(peak, *(r.rss_mb for r in readings))
