"""In-process throughput measurement of a dataset, in examples per second.

Analysis compares many small variants of one pipeline, so it times them in
this process (no child start-up per trial): take a warm-up, then iterate for
a fixed time and count examples. Batched elements count their leading
dimension, so prefixes before and after `batch` compare fairly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline_core._tf import tf as _tf
from pipeline_core.spec import BatchStep, CacheStep, PipelineSpec, RepeatStep


class MeasureError(ValueError):
    """A dataset could not be measured (empty, or it failed while iterating)."""


@dataclass(frozen=True)
class Throughput:
    """Examples and elements seen in the timed window after a warm-up."""

    examples: int
    elements: int
    seconds: float
    warmup_s: float
    exhausted: bool = False

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def us_per_example(self) -> float:
        return 1e6 * self.seconds / self.examples if self.examples else float("inf")


def _examples_in(element, batched: bool) -> int:
    if not batched:
        return 1
    flat = _tf().nest.flatten(element)
    shape = flat[-1].shape
    return int(shape[0]) if shape.rank else 1


def measure_dataset(
    dataset,
    *,
    batched: bool,
    seconds: float = 0.5,
    warmup_s: float = 0.1,
    warmup_elements: int = 1,
    max_warmup_s: float = 10.0,
) -> Throughput:
    """Time `dataset`: skip a warm-up, then count examples for `seconds`.

    Args:
        dataset: any `tf.data.Dataset` of `(features, label)` elements.
        batched: elements are batches (count their leading dimension).
        seconds: length of the timed window.
        warmup_s: minimum warm-up time (buffers fill, autotune settles).
        warmup_elements: minimum warm-up elements (e.g. one epoch to fill a cache).
        max_warmup_s: warm-up never lasts longer than this.

    Raises:
        MeasureError: the dataset is empty or raised while iterating.
    """
    iterator = iter(dataset)
    start = time.perf_counter()
    seen = 0
    try:
        for _ in iterator:
            seen += 1
            elapsed = time.perf_counter() - start
            warm = elapsed >= warmup_s and seen >= warmup_elements
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
        t0 = time.perf_counter()
        for element in iterator:
            elements += 1
            examples += _examples_in(element, batched)
            if time.perf_counter() - t0 >= seconds:
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
    return Throughput(
        examples=examples,
        elements=elements,
        seconds=elapsed,
        warmup_s=warmup,
        exhausted=exhausted,
    )


def is_batched(spec: PipelineSpec) -> bool:
    """The spec's elements are batches (a batch step is present)."""
    return any(isinstance(step, BatchStep) for step in spec.steps)


def measure_spec(
    spec: PipelineSpec,
    *,
    seconds: float = 0.5,
    warmup_s: float = 0.1,
    max_warmup_s: float = 10.0,
) -> Throughput:
    """Build `spec` and measure its steady state, repeating it so epochs never end early.

    When the spec caches, the warm-up covers one epoch (up to `max_warmup_s`)
    so the measurement sees the cache being read, as in training.
    """
    from pipeline_core.build import build  # noqa: PLC0415  (builder loads TensorFlow)

    dataset = build(spec)
    count = int(dataset.cardinality())
    warmup_elements = 1
    if count > 0 and any(isinstance(s, CacheStep) for s in spec.steps):
        warmup_elements = count
    infinite = count == _tf().data.INFINITE_CARDINALITY or any(
        isinstance(s, RepeatStep) and s.count is None for s in spec.steps
    )
    if not infinite:
        dataset = dataset.repeat()
    return measure_dataset(
        dataset,
        batched=is_batched(spec),
        seconds=seconds,
        warmup_s=warmup_s,
        warmup_elements=warmup_elements,
        max_warmup_s=max_warmup_s,
    )


def measure_peak_rss(
    spec: PipelineSpec, *, max_batches: int = 50, max_seconds: float = 5.0, hz: float = 10.0
) -> float:
    """Iterate `spec` briefly in this process while sampling its memory; the peak RSS in MB.

    Run it in a child process (see `analysis.jobs`), so the figure is the
    pipeline's own (TensorFlow included) and not the caller's.
    """
    from pipeline_core.build import build  # noqa: PLC0415
    from pipeline_core.metrics import Sampler  # noqa: PLC0415

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
