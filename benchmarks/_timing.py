"""Steady-state throughput of a `tf.data` dataset in a bare `for` loop, and paired A/B runs.

A measurement is one fresh iterator: a warm-up (autotuning ramps up, buffers
fill, caches fill on the first pass), then a fixed wall-clock window in which a
plain `for` loop counts examples (the leading dimension of the features). Two
datasets are compared by alternating such windows in one process, swapping
which goes first every repetition, so a drift in machine load favours neither;
the ratio of the medians is reported together with the spread of the per-
repetition ratios. Before the timed rounds each dataset runs one untimed
window (the process's first iterators run slower: thread pools start, memory
is first touched), and after every window the process settles: a garbage
collection and `SETTLE_S` of sleep, so the threads of the iterator just
deleted have wound down before the next window starts. Without it, alternating
windows of seed Example 1 (two identical pipelines) drifted from ~600k to
~400k examples/s within a few windows, for either side, and the per-
repetition ratios spread 0.65-1.43; with it they stayed within 5%. Each window also records the process's CPU time (all
threads), so the CPU time per example of two pipelines can be compared too: on
a machine that other work keeps busy, that ratio is steadier than throughput.

The knobs come from the environment so a quick run needs no code change:
`PIPELINE_LAB_BENCH_WINDOW_S` (timed window, default 1.0 s),
`PIPELINE_LAB_BENCH_WARMUP_S` (default 0.3 s), `PIPELINE_LAB_BENCH_SETTLE_S`
(pause after each window, default 0.5 s) and `PIPELINE_LAB_BENCH_REPEATS`
(repetitions per dataset, default 5).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


WINDOW_S = _env_float("PIPELINE_LAB_BENCH_WINDOW_S", 1.0)
WARMUP_S = _env_float("PIPELINE_LAB_BENCH_WARMUP_S", 0.3)
SETTLE_S = _env_float("PIPELINE_LAB_BENCH_SETTLE_S", 0.5)
REPEATS = int(_env_float("PIPELINE_LAB_BENCH_REPEATS", 5))
WARMUP_BATCHES = 2


class RanOut(RuntimeError):
    """The dataset ended inside the warm-up or the window: it needs a `.repeat()`."""


def examples_in(element: Any) -> int:
    """Examples in one batch: the leading dimension of the features (first item)."""
    features = element[0] if isinstance(element, tuple) else element
    return int(features.shape[0])


@dataclass(frozen=True)
class Window:
    """Examples counted in one timed window, its wall-clock and process CPU seconds."""

    examples: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Examples per wall-clock second."""
        return self.examples / self.wall_s

    @property
    def cpu_per_example(self) -> float:
        """CPU seconds (every thread of the process) per example."""
        return self.cpu_s / max(self.examples, 1)


def _drain(iterator: Iterator[Any], seconds: float, min_batches: int) -> Window:
    """Pull batches for `seconds` (and at least `min_batches`) and count their examples."""
    examples = batches = 0
    cpu_start = time.process_time()
    start = now = time.perf_counter()
    end = start + seconds
    for batches, element in enumerate(iterator, start=1):
        examples += examples_in(element)
        now = time.perf_counter()
        if now >= end and batches >= min_batches:
            break
    else:
        raise RanOut(f"the dataset ended after {batches} batches; add .repeat() to it")
    return Window(examples, now - start, time.process_time() - cpu_start)


def measure_window(
    dataset: Any, *, window_s: float = WINDOW_S, warmup_s: float = WARMUP_S
) -> Window:
    """One window over a fresh iterator of `dataset`, after a warm-up, in a bare loop."""
    iterator = iter(dataset)
    try:
        _drain(iterator, warmup_s, WARMUP_BATCHES)
        return _drain(iterator, window_s, 1)
    finally:
        del iterator  # stop its background threads before anything else is timed
        settle()


def settle(seconds: float | None = None) -> None:
    """Collect garbage and pause, so a deleted iterator's threads are gone before the next window."""
    gc.collect()
    time.sleep(SETTLE_S if seconds is None else seconds)


def window_rate(dataset: Any, *, window_s: float = WINDOW_S, warmup_s: float = WARMUP_S) -> float:
    """Examples/s of a fresh iterator over `dataset`, after a warm-up, in a bare loop."""
    return measure_window(dataset, window_s=window_s, warmup_s=warmup_s).rate


@dataclass(frozen=True)
class Paired:
    """Windows of two datasets measured alternately (`a[i]` beside `b[i]`)."""

    a: tuple[Window, ...]
    b: tuple[Window, ...]

    @property
    def a_median(self) -> float:
        """Median examples/s of a."""
        return statistics.median(w.rate for w in self.a)

    @property
    def b_median(self) -> float:
        """Median examples/s of b."""
        return statistics.median(w.rate for w in self.b)

    @property
    def ratio(self) -> float:
        """Median rate of a ÷ median rate of b (above 1: a is faster)."""
        return self.a_median / self.b_median

    @property
    def ratios(self) -> tuple[float, ...]:
        """Rate of a ÷ rate of b in each repetition (the run-to-run spread)."""
        return tuple(x.rate / y.rate for x, y in zip(self.a, self.b, strict=True))

    @property
    def cpu_ratio(self) -> float:
        """Median CPU s/example of b ÷ that of a (above 1: a does less work per example)."""
        a_cost = statistics.median(w.cpu_per_example for w in self.a)
        b_cost = statistics.median(w.cpu_per_example for w in self.b)
        return b_cost / a_cost if a_cost > 0 else float("nan")


def paired_rates(
    a: Any,
    b: Any,
    *,
    repeats: int = REPEATS,
    window_s: float = WINDOW_S,
    warmup_s: float = WARMUP_S,
) -> Paired:
    """Alternate windows over datasets `a` and `b`, `repeats` each, first one swapped each time."""
    windows: dict[str, list[Window]] = {"a": [], "b": []}
    for dataset in (a, b):  # untimed: the first iterators of a process run slower
        measure_window(dataset, window_s=min(window_s, 0.5), warmup_s=warmup_s)
    for index in range(repeats):
        order = (("a", a), ("b", b)) if index % 2 == 0 else (("b", b), ("a", a))
        for key, dataset in order:
            windows[key].append(measure_window(dataset, window_s=window_s, warmup_s=warmup_s))
    return Paired(tuple(windows["a"]), tuple(windows["b"]))
