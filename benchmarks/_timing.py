"""Steady-state throughput of a `tf.data` dataset in a bare `for` loop, and paired A/B runs.

A window: an iterator of the dataset, a warm-up (autotuning ramps up, buffers
fill, caches fill on the first pass), then a fixed wall-clock window in which a
plain `for` loop counts examples (the leading dimension of the features), and
the process's CPU time (all threads) over it. After every window the process
settles: a garbage collection and a short sleep, so an iterator's threads are
done (refilling its buffers, or winding down) before anything else is timed.
Without it, alternating windows of seed Example 1 (two identical pipelines)
drifted from ~600k to ~400k examples/s within a few windows, either side.

Datasets are compared by alternating windows in rounds, the order rotated
every round (two: which goes first is swapped), so a drift in the machine's
speed favours none. `timed_in_processes` (the tuning benchmark, six datasets)
and `paired_in_processes` (the parity benchmark, two) build and time each
dataset in a child process of its own, one running at a time, so nothing one
leaves in a process (thread pools, allocator state, its data) weighs on
another; each reuses an iterator for `FRESH_EVERY` windows, so many short
windows cost little warm-up while AUTOTUNE still gets several fresh starts.
On the 2-core VM a single 0.5 s window of the same iterator moves by ±20% with
the host's load, so the result is the ratio of the medians over many
repetitions, with a paired bootstrap interval that says how far this run's
noise can move it (`Paired.ratio_interval`).

The knobs come from the environment so a quick run needs no code change:
`PIPELINE_LAB_BENCH_WARMUP_S` (default 0.3 s, every window's warm-up),
`PIPELINE_LAB_BENCH_SETTLE_S` (default 0.5 s, a `Timer` in this process),
`PIPELINE_LAB_BENCH_PAIRED_REPEATS` (default 21),
`PIPELINE_LAB_BENCH_PAIRED_WINDOW_S` (default 0.5 s),
`PIPELINE_LAB_BENCH_PAIRED_SETTLE_S` (default 0.3 s),
`PIPELINE_LAB_BENCH_FRESH_EVERY` (default 5) and
`PIPELINE_LAB_BENCH_PAIRED_PROCESSES` (default 3: the repetitions are split among
three pairs of processes, started one pair after another) for the paired processes.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


WARMUP_S = _env_float("PIPELINE_LAB_BENCH_WARMUP_S", 0.3)
SETTLE_S = _env_float("PIPELINE_LAB_BENCH_SETTLE_S", 0.5)
# paired_in_processes (the parity benchmark): many short windows, iterators reused
PAIRED_REPEATS = int(_env_float("PIPELINE_LAB_BENCH_PAIRED_REPEATS", 21))
PAIRED_WINDOW_S = _env_float("PIPELINE_LAB_BENCH_PAIRED_WINDOW_S", 0.5)
PAIRED_SETTLE_S = _env_float("PIPELINE_LAB_BENCH_PAIRED_SETTLE_S", 0.3)
FRESH_EVERY = int(_env_float("PIPELINE_LAB_BENCH_FRESH_EVERY", 5))
PAIRED_PROCESSES = int(_env_float("PIPELINE_LAB_BENCH_PAIRED_PROCESSES", 3))  # pairs, in turn
FRESH_WARMUP_S = 1.0  # a new iterator's warm-up, at least
PRIME_S = 2.0  # each side's untimed first window
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


def settle(seconds: float | None = None) -> None:
    """Collect garbage and pause, so a deleted iterator's threads are gone before the next window."""
    gc.collect()
    time.sleep(SETTLE_S if seconds is None else seconds)


@dataclass(frozen=True)
class Paired:
    """Windows of two datasets measured alternately (`a[i]` beside `b[i]`)."""

    a: tuple[Window, ...]
    b: tuple[Window, ...]
    # the pair of processes each repetition was timed in (empty: one pair for all)
    groups: tuple[int, ...] = ()

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

    def ratio_interval(self, level: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
        """A paired bootstrap interval of `ratio`: how far the noise of this run can move it.

        Repetitions are resampled with replacement (a window of a with the window of
        b beside it), the ratio of medians recomputed, and the central `level` of
        those ratios returned. With `groups` (several pairs of processes), the
        processes are resampled first, then repetitions within each drawn one, so
        what sets one process apart from another (where its threads and memory
        landed) widens the interval instead of hiding in it. Seeded: the same
        windows give the same interval.
        """
        pairs = list(zip(self.a, self.b, strict=True))
        labels = self.groups or (0,) * len(pairs)
        clusters = [
            [p for p, g in zip(pairs, labels, strict=True) if g == k] for k in sorted(set(labels))
        ]
        rng = random.Random(0)
        draws = []
        for _ in range(resamples):
            sample = [
                pair
                for cluster in rng.choices(clusters, k=len(clusters))
                for pair in rng.choices(cluster, k=len(cluster))
            ]
            a_median = statistics.median(x.rate for x, _ in sample)
            b_median = statistics.median(y.rate for _, y in sample)
            draws.append(a_median / b_median)
        draws.sort()
        tail = (1.0 - level) / 2
        low = draws[int(tail * (resamples - 1))]
        high = draws[int(round((1.0 - tail) * (resamples - 1)))]
        return low, high


class Timer:
    """Windows over one dataset, reusing an iterator for `fresh_every` windows.

    A new iterator gets a warm-up of at least `fresh_warmup_s` (AUTOTUNE ramps
    up, buffers fill); a reused one `warmup_s`, which also drains what its buffers
    filled while the other side was timed. After each window the timer settles
    (garbage collection, `SETTLE_S` of sleep): the iterator's threads refill
    its buffers then, not inside the other side's window.
    """

    def __init__(self, dataset: Any, fresh_every: int, fresh_warmup_s: float = 0.0) -> None:
        self.dataset = dataset
        self.fresh_every = max(int(fresh_every), 1)
        self.fresh_warmup_s = fresh_warmup_s
        self._iterator: Iterator[Any] | None = None
        self._used = 0

    def window(self, window_s: float, warmup_s: float) -> Window:
        warm = warmup_s
        if self._iterator is None or self._used >= self.fresh_every:
            self._iterator = None
            gc.collect()  # the old iterator's threads end before the new one starts
            self._iterator, self._used = iter(self.dataset), 0
            warm = max(warmup_s, self.fresh_warmup_s)
        try:
            _drain(self._iterator, warm, WARMUP_BATCHES)
            window = _drain(self._iterator, window_s, 1)
        except BaseException:
            self._iterator = None
            raise
        self._used += 1
        settle()
        return window

    def close(self) -> None:
        self._iterator = None
        gc.collect()


def _alternate(
    sides: list[Any],
    repeats: int,
    window_s: float,
    warmup_s: float,
    prime_s: float,
    first_round: int = 0,
) -> list[tuple[Window, ...]]:
    """An untimed window of `prime_s` each, then `repeats` timed windows each, in rounds.

    The order rotates every round (two sides: the one that goes first is swapped), so a
    drift in the machine's speed favours no side; `first_round` continues the rotation
    of earlier rounds. The windows of `sides[i]` come back at index i, round by round.
    """
    for side in sides:  # untimed: a process's first windows run slower
        side.window(prime_s, warmup_s)
    windows: list[list[Window]] = [[] for _ in sides]
    for index in range(first_round, first_round + repeats):
        shift = index % len(sides)
        for which in [*range(shift, len(sides)), *range(shift)]:
            windows[which].append(sides[which].window(window_s, warmup_s))
    return [tuple(w) for w in windows]


# --- each side in a process of its own -----------------------------------------


def _serve(
    connection: Any,
    make: Callable[[], Any],
    fresh_every: int,
    fresh_warmup_s: float,
    settle_s: float,
) -> None:
    """Child: build the dataset once, then time one window per request until told to stop."""
    global SETTLE_S
    SETTLE_S = settle_s
    try:
        timer = Timer(make(), fresh_every, fresh_warmup_s)
    except Exception as exc:  # reported by the parent, in the row of its case
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", None))
    while (request := connection.recv()) is not None:
        try:
            connection.send(("window", timer.window(*request)))
        except Exception as exc:
            connection.send(("error", f"{type(exc).__name__}: {exc}"))
            return


class _Child:
    """A `Timer` in a child process of its own; `window()` asks it for one window."""

    def __init__(self, make: Callable[[], Any], fresh_every: int, settle_s: float) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, make, fresh_every, FRESH_WARMUP_S, settle_s),
            name="bench-side",
            daemon=True,
        )
        self._process.start()
        child.close()

    def _reply(self, expected: str) -> Any:
        try:
            kind, value = self._connection.recv()
        except EOFError:
            code = self._process.exitcode
            raise RuntimeError(f"the benchmark's child process ended (exit code {code})") from None
        if kind == "error":
            if value.startswith("RanOut: "):
                raise RanOut(value.removeprefix("RanOut: "))
            raise RuntimeError(value)
        if kind != expected:
            raise RuntimeError(f"the benchmark's child process sent {kind!r}, not {expected!r}")
        return value

    def ready(self) -> None:
        self._reply("ready")

    def window(self, window_s: float, warmup_s: float) -> Window:
        self._connection.send((window_s, warmup_s))
        return self._reply("window")

    def close(self) -> None:
        with contextlib.suppress(OSError):  # it has ended already
            self._connection.send(None)
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()


def process_groups(repeats: int, processes: int) -> tuple[int, ...]:
    """Which set of processes times each of `repeats` rounds: `processes` sets, one
    after another, with rounds split as evenly as they go (the first sets take the extra)."""
    processes = max(1, min(int(processes), repeats))
    size, extra = divmod(repeats, processes)
    return tuple(k for k in range(processes) for _ in range(size + (k < extra)))


def timed_in_processes(
    makers: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = PAIRED_REPEATS,
    window_s: float = PAIRED_WINDOW_S,
    warmup_s: float = WARMUP_S,
    fresh_every: int = FRESH_EVERY,
    settle_s: float = PAIRED_SETTLE_S,
    processes: int = 1,
) -> dict[str, tuple[Window, ...]]:
    """The windows of each dataset in `makers`, each built and timed in a process of its own.

    The makers build the datasets in the children; they must be picklable
    (module-level functions, or `functools.partial` of them). One process runs at a
    time (the others wait on their pipes), in rounds whose order rotates, so a drift
    in the machine's speed favours none, and what one leaves behind in a process
    (thread pools, allocator state, its data) cannot slow another. With `processes`
    above 1 the rounds are split among that many sets of processes, started one set
    after another (`process_groups` says which set timed which round): a process can
    run a few percent faster or slower than its twin for its whole life, and one set
    would carry that into the ratio. Window i of every dataset comes from round i:
    `Paired(windows[x], windows[y])` pairs them.
    """
    groups = process_groups(repeats, processes)
    windows: dict[str, list[Window]] = {name: [] for name in makers}
    for group in sorted(set(groups)):
        rounds = groups.count(group)
        timed = _timed_once(makers, rounds, window_s, warmup_s, fresh_every, settle_s,
                            first_round=groups.index(group))  # fmt: skip
        for name, got in timed.items():
            windows[name].extend(got)
    return {name: tuple(got) for name, got in windows.items()}


def _timed_once(
    makers: Mapping[str, Callable[[], Any]],
    repeats: int,
    window_s: float,
    warmup_s: float,
    fresh_every: int,
    settle_s: float,
    first_round: int,
) -> dict[str, tuple[Window, ...]]:
    """`repeats` rounds of `makers`, each in a new process of its own."""
    sides: dict[str, _Child] = {}
    try:
        for name, make in makers.items():
            sides[name] = _Child(make, fresh_every, settle_s)
        for side in sides.values():
            side.ready()
        windows = _alternate(
            list(sides.values()), repeats, window_s, warmup_s, PRIME_S, first_round
        )
        return dict(zip(sides, windows, strict=True))
    finally:
        for side in sides.values():
            side.close()


def paired_in_processes(
    make_a: Callable[[], Any],
    make_b: Callable[[], Any],
    *,
    repeats: int = PAIRED_REPEATS,
    window_s: float = PAIRED_WINDOW_S,
    warmup_s: float = WARMUP_S,
    fresh_every: int = FRESH_EVERY,
    settle_s: float = PAIRED_SETTLE_S,
    processes: int = PAIRED_PROCESSES,
) -> Paired:
    """`timed_in_processes` of two datasets, paired window by window (a ÷ b), in
    `processes` pairs of processes one after another."""
    windows = timed_in_processes(
        {"a": make_a, "b": make_b},
        repeats=repeats,
        window_s=window_s,
        warmup_s=warmup_s,
        fresh_every=fresh_every,
        settle_s=settle_s,
        processes=processes,
    )
    return Paired(windows["a"], windows["b"], process_groups(repeats, processes))
