"""Profile a pipeline in a child process: timed batches, live snapshots, readings, limits.

`start_profile(spec_or_factory, settings=...)` starts a child process (the
"spawn" start method: TensorFlow and fork do not mix) that builds the
pipeline, times the consumer's wait for every batch (`next(iterator)`,
monotonic ns), optionally runs a simulated training step, samples readings
on a daemon thread and streams everything to the parent. The parent-side
`RunHandle` drains the stream on its own thread, so `snapshot()` never
blocks, `stop()` ends the run within a second, and a child that raises,
crashes, runs out of memory or hangs ends as a failed run with a reason
while the caller keeps running. `profile(...)` is the blocking form.

Only the first batch (warm-up: iterator creation, buffer fill) is kept apart:
steady-state figures exclude it.
"""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from pipeline_core.metrics import MB, Reading, Sampler, environment, summarize_readings

STEP_MODELS = ("small",)
_STOP_GRACE_S = 0.35  # child: how long the loop may take to notice a stop before forcing it
_KILL_AFTER_S = 0.7  # parent: kill a child that has not ended this long after a stop
_HANG_GRACE_S = 5.0  # past max_seconds, a wait this long (at most max_seconds) is a hang
_SILENCE_S = 30.0  # a started child that sends nothing this long is stuck
_START_LIMIT_S = 180.0  # time allowed to import TensorFlow and build the pipeline
_RECENT = 50
_ROLLING_WINDOW_S = 2.0
EMPTY_DATASET = "Cannot profile a dataset with 0 elements"


class ProfileError(ValueError):
    """A profile cannot start: bad settings or a source that cannot reach the child."""


# --- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """Limits and the simulated training step of one run.

    Attributes:
        max_batches: stop after this many batches (None = no batch limit).
        max_seconds: stop after this long iterating (None = no time limit).
        memory_limit_mb: stop when the child's RSS passes this (None = half the
            memory available when the run starts).
        step_ms: simulate a training step of this many ms after each batch.
        step_model: "small" trains a small real Keras model on each batch instead.
        sample_hz: readings (and live snapshots) per second, 4-50.
        name: run name (default: the spec's name or the factory's name).
    """

    max_batches: int | None = 200
    max_seconds: float | None = 30.0
    memory_limit_mb: int | None = None
    step_ms: float | None = None
    step_model: str | None = None
    sample_hz: float = 5.0
    name: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_batches is not None and self.max_batches < 1:
            problems.append(f"max_batches should be >= 1 or None. Received: {self.max_batches}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            problems.append(f"max_seconds should be > 0 or None. Received: {self.max_seconds}")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 1:
            problems.append(
                f"memory_limit_mb should be >= 1 or None. Received: {self.memory_limit_mb}"
            )
        if self.step_ms is not None and self.step_ms < 0:
            problems.append(f"step_ms should be >= 0 or None. Received: {self.step_ms}")
        if self.step_model not in (None, *STEP_MODELS):
            problems.append(f"step_model should be None or 'small'. Received: {self.step_model!r}")
        if self.step_ms is not None and self.step_model is not None:
            problems.append("choose either step_ms or step_model, not both")
        if not 4 <= self.sample_hz <= 50:
            problems.append(f"sample_hz should be between 4 and 50. Received: {self.sample_hz}")
        if problems:
            raise ProfileError("invalid run settings: " + "; ".join(problems))

    @property
    def has_step(self) -> bool:
        """A simulated training step runs after each batch."""
        return self.step_ms is not None or self.step_model is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_memory_limit_mb() -> int:
    """Half of the memory available now: a ceiling that leaves the machine usable."""
    return max(256, int(psutil.virtual_memory().available / MB * 0.5))


# --- results ----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class RunResult:
    """A finished run: the per-batch series, readings and methods for derived figures.

    Series are aligned per batch: `waits_ns` (the consumer's wait for the batch),
    `examples` (leading dimension of its features), `ends_ns` (when it arrived,
    ns since just before the iterator was created), `steps_ns` (simulated step).
    """

    status: str
    reason: str | None
    end_reason: str | None
    name: str
    settings: RunSettings
    waits_ns: tuple[int, ...]
    examples: tuple[int, ...]
    ends_ns: tuple[int, ...]
    steps_ns: tuple[int, ...]
    readings: tuple[Reading, ...] = ()
    environment: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    run_id: int | None = None
    elapsed_s: float = 0.0

    @property
    def batches(self) -> int:
        return len(self.waits_ns)

    @property
    def total_examples(self) -> int:
        return sum(self.examples)

    @property
    def first_batch_s(self) -> float | None:
        """Seconds from creating the iterator to the first batch (warm-up)."""
        return self.ends_ns[0] / 1e9 if self.ends_ns else None

    def _steady_span_s(self) -> float | None:
        if len(self.ends_ns) < 2:
            return None
        span = (self.ends_ns[-1] - self.ends_ns[0]) / 1e9
        return span if span > 0 else None

    def examples_per_second(self, *, include_first: bool = False) -> float | None:
        """Examples per second; steady state (after the first batch) unless `include_first`."""
        if include_first:
            if not self.ends_ns or self.ends_ns[-1] <= 0:
                return None
            return self.total_examples / (self.ends_ns[-1] / 1e9)
        span = self._steady_span_s()
        return sum(self.examples[1:]) / span if span else None

    def batches_per_second(self, *, include_first: bool = False) -> float | None:
        """Batches per second; steady state unless `include_first`."""
        if include_first:
            if not self.ends_ns or self.ends_ns[-1] <= 0:
                return None
            return self.batches / (self.ends_ns[-1] / 1e9)
        span = self._steady_span_s()
        return (self.batches - 1) / span if span else None

    def _steady_waits_ms(self) -> list[float]:
        waits = self.waits_ns[1:] or self.waits_ns
        return [w / 1e6 for w in waits]

    def latency_ms(self) -> dict[str, float | None]:
        """Steady-state wait per batch: p50, p90, p99 and max, in ms."""
        waits = self._steady_waits_ms()
        return {
            "p50": _percentile(waits, 50),
            "p90": _percentile(waits, 90),
            "p99": _percentile(waits, 99),
            "max": max(waits, default=None),
        }

    def stall_count(self, *, factor: float = 5.0) -> int:
        """Steady-state waits longer than `factor` x the median (and over 1 ms)."""
        waits = self._steady_waits_ms()
        median = _percentile(waits, 50)
        if median is None:
            return 0
        return sum(1 for w in waits if w > factor * median and w > 1.0)

    def input_bound_percent(self) -> float | None:
        """Share of the training loop spent waiting for input: wait / (wait + step), steady
        state. None when no step was simulated."""
        if not self.settings.has_step or self.batches == 0:
            return None
        sl = slice(1, None) if self.batches > 1 else slice(None)
        wait = sum(self.waits_ns[sl])
        step = sum(self.steps_ns[sl])
        return 100.0 * wait / (wait + step) if wait + step > 0 else None

    def readings_summary(self) -> dict[str, Any]:
        """Mean CPU, peak RSS, minimum available memory, GPU figures."""
        return summarize_readings(self.readings)

    def verdict(self) -> str:
        """One line on what the run says about the pipeline."""
        if self.status == "failed":
            return f"Failed: {self.reason}"
        rate = self.examples_per_second()
        rate_text = f"{rate:,.0f} examples/s" if rate else "too few batches for a rate"
        share = self.input_bound_percent()
        if share is None:
            return (
                f"The pipeline delivers {rate_text} (p50 wait "
                f"{_ms(self.latency_ms()['p50'])}); simulate a training step to see whether "
                "it would keep an accelerator busy."
            )
        if share >= 50:
            return (
                f"Input-bound: the training loop waits for input {share:.0f}% of the time "
                "- speed up the pipeline (parallel map, prefetch, cache, vectorized maps)."
            )
        if share >= 10:
            return (
                f"Partly input-bound: {share:.0f}% of the loop is spent waiting for input; "
                "more parallelism or prefetch would help."
            )
        return f"Not input-bound: input waits are {share:.1f}% of the loop; the pipeline keeps up."

    def to_summary_dict(self) -> dict[str, Any]:
        """JSON-able key figures (the CLI's --json and the stored summary)."""
        latency = self.latency_ms()
        readings = self.readings_summary()
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "end_reason": self.end_reason,
            "batches": self.batches,
            "examples": self.total_examples,
            "elapsed_s": self.elapsed_s,
            "first_batch_s": self.first_batch_s,
            "examples_per_s": self.examples_per_second(),
            "examples_per_s_with_first": self.examples_per_second(include_first=True),
            "batches_per_s": self.batches_per_second(),
            "latency_ms": latency,
            "stalls": self.stall_count(),
            "step": _step_text(self.settings),
            "input_bound_percent": self.input_bound_percent(),
            **readings,
            "verdict": self.verdict(),
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _step_text(settings: RunSettings) -> str:
    if settings.step_model:
        return f"model:{settings.step_model}"
    if settings.step_ms is not None:
        return f"{settings.step_ms:g} ms"
    return "none"


@dataclass(frozen=True)
class Snapshot:
    """The state of a run so far, for live charts (copied; safe to keep).

    `recent_waits_ms` holds the last 50 waits; `throughput` is examples/s over
    the last 2 s of batches. The full series so far are in `waits_ms`,
    `batch_times_s` (arrival, s since the iterator was created), `batch_examples`
    and `readings`.
    """

    status: str
    batches: int
    examples: int
    elapsed_s: float
    recent_waits_ms: tuple[float, ...]
    throughput: float | None
    latest_reading: Reading | None
    readings_count: int
    reason: str | None
    done: bool
    waits_ms: tuple[float, ...]
    batch_times_s: tuple[float, ...]
    batch_examples: tuple[int, ...]
    readings: tuple[Reading, ...]
    gpu: str


# --- the child process --------------------------------------------------------------------


def _first_leaf(value: Any) -> Any:
    while isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, dict) and value:
        return _first_leaf(next(iter(value.values())))
    return value


def _is_batched(element_spec: Any) -> bool:
    """By the (features, label) contract: a batched label has one more dimension."""
    if isinstance(element_spec, tuple) and len(element_spec) == 2:
        label = element_spec[1]
        rank = label.shape.rank
        if rank is not None:
            return rank >= (2 if label.dtype.is_floating else 1)
    features = _first_leaf(element_spec)
    return getattr(features.shape, "rank", 0) not in (0, None)


class _ModelStep:
    """A small real Keras model trained with `train_on_batch` on each batch."""

    def __init__(self, tf: Any, batched: bool) -> None:
        self.tf = tf
        self.batched = batched
        self.model = None
        self.units = 0
        self.soft = False

    def _inputs(self, element: Any) -> tuple[Any, Any]:
        tf = self.tf
        if isinstance(element, tuple) and len(element) == 2:
            features, label = element
        else:
            features, label = element, None
        features = tf.cast(_first_leaf(features), tf.float32)
        if not self.batched:
            features = features[None, ...]
            label = None if label is None else label[None, ...]
        n = tf.shape(features)[0]
        x = tf.reshape(features, [n, -1])
        if label is None:
            label = tf.zeros([n], tf.int64)
        return x, label

    def _build(self, x: Any, label: Any) -> None:
        import keras  # noqa: PLC0415

        self.soft = label.dtype.is_floating and label.shape.rank == 2
        if self.soft:
            self.units = int(label.shape[-1])
            loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        else:
            self.units = max(16, 2 * (int(self.tf.reduce_max(label)) + 1))
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.model = keras.Sequential(
            [
                keras.Input(shape=(int(x.shape[-1]),)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(self.units),
            ]
        )
        self.model.compile(optimizer="adam", loss=loss)

    def __call__(self, element: Any) -> None:
        x, label = self._inputs(element)
        if self.model is None:
            self._build(x, label)
        if not self.soft:
            label = self.tf.minimum(self.tf.cast(label, self.tf.int64), self.units - 1)
        self.model.train_on_batch(x, label)


class _Runner:
    """The child's work: build, iterate with timing, report, obey limits."""

    def __init__(
        self, payload: dict[str, Any], conn: Any, stop_event: Any, ceiling_event: Any
    ) -> None:
        self.payload = payload
        self.ceiling_event = ceiling_event
        self.settings = RunSettings(**payload["settings"])
        self.conn = conn
        self.stop_event = stop_event
        self.lock = threading.Lock()
        self.finished = False
        self.rows: list[tuple[int, int, int, int]] = []
        self.sent_rows = 0
        self.readings: list[dict[str, Any]] = []
        self.stop_reason: tuple[str, str] | None = None
        self.stop_asked_at: float | None = None
        self.waiting_since: float | None = None
        self.t0: float | None = None
        self.proc = psutil.Process()

    # messages
    def send(self, kind: str, data: Any) -> None:
        with self.lock:
            if not self.finished:
                self.conn.send((kind, data))

    def _take(self) -> dict[str, Any]:
        end = len(self.rows)
        rows, self.sent_rows = self.rows[self.sent_rows : end], end
        readings, self.readings = self.readings, []
        elapsed = time.monotonic() - self.t0 if self.t0 else 0.0
        return {"rows": rows, "readings": readings, "elapsed_s": elapsed}

    def flush(self) -> None:
        with self.lock:
            if not self.finished:
                self.conn.send(("tick", self._take()))

    def finish(self, status: str, reason: str | None, end_reason: str | None) -> bool:
        with self.lock:
            if self.finished:
                return False
            data = self._take()
            data.update(status=status, reason=reason, end_reason=end_reason)
            self.conn.send(("done", data))
            self.finished = True
            return True

    # watching: stop requests, memory ceiling, hangs
    def _request_stop(self, status: str, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = (status, reason)
            self.stop_asked_at = time.monotonic()

    def _check(self) -> None:
        s = self.settings
        stop = self.stop_event.is_set()
        rss = self.proc.memory_info().rss / MB
        over = s.memory_limit_mb is not None and rss > s.memory_limit_mb
        # The parent sets ceiling_event before stop_event when it sees the ceiling first.
        if over or (stop and self.ceiling_event.is_set()):
            self._request_stop(
                "stopped",
                f"stopped: memory ceiling {s.memory_limit_mb} MB exceeded at batch {len(self.rows)}",
            )
        if stop:
            self._request_stop("stopped", f"stopped by request after {len(self.rows)} batches")
        now = time.monotonic()
        if self.stop_reason and now - self.stop_asked_at > _STOP_GRACE_S:
            self._force(*self.stop_reason, None)
        waiting = self.waiting_since
        if s.max_seconds is not None and waiting is not None and self.t0 is not None:
            over = now - self.t0 - s.max_seconds
            if over > max(1.0, min(_HANG_GRACE_S, s.max_seconds)):
                self._force(
                    "failed",
                    f"the pipeline hangs: no batch for {now - waiting:.1f} s and the time limit of "
                    f"{s.max_seconds:g} s has passed (after {len(self.rows)} batches); check the "
                    "source (a generator that never yields?) or make elements cheaper",
                    None,
                )

    def _force(self, status: str, reason: str, end_reason: str | None) -> None:
        """End the run from the watcher while the loop is stuck inside `next()`."""
        if self.finish(status, reason, end_reason):
            _exit_child(self.conn)

    def watch(self) -> None:
        tick = 1.0 / self.settings.sample_hz
        next_flush = time.monotonic() + tick
        while not self.finished:
            self._check()
            if time.monotonic() >= next_flush:
                next_flush += tick
                self.flush()
            time.sleep(0.05)

    # the work
    def _dataset(self) -> Any:
        if self.payload.get("spec") is not None:
            from pipeline_core.build import build  # noqa: PLC0415

            return build(self.payload["spec"], generator=self.payload.get("generator"))
        return self.payload["factory"]()

    def _step(self, tf: Any, batched: bool) -> Callable[[Any], None] | None:
        s = self.settings
        if s.step_model:
            return _ModelStep(tf, batched)
        if s.step_ms is not None:
            seconds = s.step_ms / 1000
            return lambda _element: time.sleep(seconds)
        return None

    def run(self) -> None:
        from pipeline_core._tf import tf as _tf  # noqa: PLC0415

        tf = _tf()
        self.send("env", environment())
        try:
            ds = self._dataset()
            if not isinstance(ds, tf.data.Dataset):
                raise TypeError(f"the factory returned {type(ds).__name__}, not a tf.data.Dataset")
            batched = _is_batched(ds.element_spec)
            step = self._step(tf, batched)
        except Exception as exc:  # noqa: BLE001 - any build error ends the run with its reason
            self.finish("failed", f"building the pipeline failed: {_describe(exc)}", None)
            return
        sampler = Sampler(hz=self.settings.sample_hz, on_reading=self._on_reading, keep=False)
        self._on_reading(sampler.sample())
        sampler.start()
        threading.Thread(target=self.watch, name="pl-watch", daemon=True).start()
        status, reason, end_reason = self._loop(ds, step, batched)
        sampler.stop()
        self._on_reading(sampler.sample())
        self.finish(status, reason, end_reason)

    def _on_reading(self, reading: Reading) -> None:
        data = reading.to_dict()
        with self.lock:
            self.readings.append(data)

    def _loop(self, ds: Any, step: Callable | None, batched: bool) -> tuple[str, str | None, str]:
        s = self.settings
        clock = time.perf_counter_ns
        rows = self.rows
        max_batches = s.max_batches or sys.maxsize
        deadline_ns = int(s.max_seconds * 1e9) if s.max_seconds else sys.maxsize
        self.t0 = time.monotonic()
        self.send("started", {"t": time.time()})
        start = clock()
        try:
            self.waiting_since = time.monotonic()
            iterator = iter(ds)
            before = start
            while self.stop_reason is None:
                self.waiting_since = time.monotonic()
                try:
                    element = next(iterator)
                except StopIteration:
                    break
                after = clock()
                self.waiting_since = None
                n = _count(element, batched)
                step_ns = 0
                if step is not None:
                    step(element)
                    step_ns = clock() - after
                rows.append((after - before, n, after - start, step_ns))
                if len(rows) >= max_batches:
                    return "completed", None, f"batch limit ({max_batches})"
                if after - start >= deadline_ns:
                    return "completed", None, f"time limit ({s.max_seconds:g} s)"
                before = clock()
        except Exception as exc:  # noqa: BLE001 - report any pipeline error as the reason
            self.waiting_since = None
            return "failed", f"the pipeline raised at batch {len(rows) + 1}: {_describe(exc)}", None
        self.waiting_since = None
        if self.stop_reason is not None:
            return self.stop_reason[0], self.stop_reason[1], None
        if not rows:
            return (
                "failed",
                f"{EMPTY_DATASET}: the pipeline produced no batch; check the source size, "
                "take/filter steps and drop_remainder",
                None,
            )
        return "completed", None, "end of data"


def _count(element: Any, batched: bool) -> int:
    if not batched:
        return 1
    leaf = _first_leaf(element)
    shape = getattr(leaf, "shape", ())
    return int(shape[0]) if len(shape) else 1


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _exit_child(conn: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.close()
    finally:
        os._exit(0)


def _child_main(payload: dict[str, Any], conn: Any, stop_event: Any, ceiling_event: Any) -> None:
    """Entry point of the profiling child process."""
    runner = _Runner(payload, conn, stop_event, ceiling_event)
    try:
        runner.run()
    except BaseException as exc:  # noqa: BLE001 - last resort: tell the parent, then exit
        runner.finish("failed", f"the profiler failed: {_describe(exc)}", None)
        traceback.print_exc()
    _exit_child(conn)


# --- the parent side ------------------------------------------------------------------------


@dataclass
class _Live:
    """Mutable state the monitor thread fills (guarded by RunHandle._lock)."""

    status: str = "starting"
    reason: str | None = None
    end_reason: str | None = None
    waits_ns: list[int] = field(default_factory=list)
    examples: list[int] = field(default_factory=list)
    ends_ns: list[int] = field(default_factory=list)
    steps_ns: list[int] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    total_examples: int = 0
    started_at: float | None = None
    child_elapsed: float = 0.0
    ended_at: float | None = None


@contextlib.contextmanager
def _main_hidden_from_spawn():
    """Keep a spawned child from re-running the parent's `__main__` script file.

    "spawn" re-executes the `__main__` module's file in the child when it has no
    importable name. Under Streamlit that file is the page script itself (its
    module is put in `sys.modules["__main__"]`), which must not run in the child.
    Hiding `__file__` while the child starts makes spawn skip it.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main.__spec__, "name", None) or "__file__" not in vars(main):
        yield
        return
    saved = main.__file__
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = saved


def _signal_text(code: int) -> str:
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return name


def _exit_reason(exitcode: int | None, batches: int) -> str:
    if exitcode is not None and exitcode < 0:
        name = _signal_text(exitcode)
        hint = {
            "SIGKILL": "killed from outside, often by the system when memory ran out",
            "SIGSEGV": "the pipeline crashed (segmentation fault in native code)",
            "SIGABRT": "the pipeline aborted (a native library called abort)",
        }.get(name, "ended by a signal")
        return f"the profiling process was killed by {name} after {batches} batches: {hint}"
    return (
        f"the profiling process exited with code {exitcode} after {batches} batches without "
        "reporting a result"
    )


class RunHandle:
    """A running profile. Poll `snapshot()`, call `stop()`, wait with `result()`."""

    def __init__(
        self,
        payload: dict[str, Any],
        *,
        settings: RunSettings,
        name: str,
        spec: dict[str, Any] | None,
        store: Any = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.spec = spec
        self.store = store
        self.store_error: str | None = None
        self.run_id: int | None = None
        self._lock = threading.Lock()
        self._live = _Live()
        self._done = threading.Event()
        self._stop_at: float | None = None
        self._ceiling_hit = False
        self._unsaved_rows: list[tuple] = []
        self._unsaved_readings: list[dict[str, Any]] = []
        self._result: RunResult | None = None
        self._store_call(self._create_stored_run, creating=True)
        ctx = multiprocessing.get_context("spawn")
        self._stop_event = ctx.Event()
        self._ceiling_event = ctx.Event()
        receiver, sender = ctx.Pipe(duplex=False)
        self._conn = receiver
        self._process = ctx.Process(
            target=_child_main,
            args=(payload, sender, self._stop_event, self._ceiling_event),
            name=f"pipeline-lab-profile-{name}"[:60],
            daemon=True,
        )
        # A factory defined in a script's __main__ needs that script in the child.
        needs_main = any(
            getattr(payload.get(key), "__module__", None) == "__main__"
            for key in ("factory", "generator")
        )
        with contextlib.nullcontext() if needs_main else _main_hidden_from_spawn():
            self._process.start()
        sender.close()  # only the child writes: its death then reads as end-of-file here
        self._started = time.monotonic()
        self._last_message = self._started
        self._thread = threading.Thread(target=self._monitor, name="pl-run-monitor", daemon=True)
        self._thread.start()

    # --- public -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def done(self) -> bool:
        """The run has ended (any status) and its result is ready."""
        return self._done.is_set()

    def stop(self) -> None:
        """Ask the run to end now; it ends within a second, partial result kept as "stopped"."""
        if self._stop_at is None and not self.done:
            self._stop_at = time.monotonic()
            self._stop_event.set()

    def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the end of the run and return its result.

        Raises:
            TimeoutError: the run is still going after `timeout` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(
                f"the run is still going after {timeout} s; call stop() or wait longer"
            )
        assert self._result is not None
        return self._result

    def snapshot(self) -> Snapshot:
        """The latest state, without blocking."""
        with self._lock:
            live = self._live
            waits = tuple(w / 1e6 for w in live.waits_ns)
            ends = tuple(e / 1e9 for e in live.ends_ns)
            examples = tuple(live.examples)
            readings = tuple(live.readings)
            status, reason = live.status, live.reason
            total = live.total_examples
            if live.ended_at is not None:
                elapsed = live.child_elapsed
            elif live.started_at is not None:
                elapsed = time.monotonic() - live.started_at
            else:
                elapsed = 0.0
        gpu = "unknown"
        if readings:
            gpu = "available" if readings[-1].gpu is not None else "no GPU"
        env_gpu = self._live.environment.get("gpu_status")
        if env_gpu:
            gpu = env_gpu
        return Snapshot(
            status=status,
            batches=len(waits),
            examples=total,
            elapsed_s=elapsed,
            recent_waits_ms=waits[-_RECENT:],
            throughput=_rolling(ends, examples),
            latest_reading=readings[-1] if readings else None,
            readings_count=len(readings),
            reason=reason,
            done=self.done,
            waits_ms=waits,
            batch_times_s=ends,
            batch_examples=examples,
            readings=readings,
            gpu=gpu,
        )

    # --- monitor thread ------------------------------------------------------------
    def _monitor(self) -> None:
        try:
            self._watch_child()
        except Exception as exc:  # noqa: BLE001 - the caller must never be taken down
            self._end("failed", f"the profiler's monitor failed: {_describe(exc)}", None)
        finally:
            self._cleanup()

    def _watch_child(self) -> None:
        last_save = time.monotonic()
        while True:
            ended = self._drain()
            if ended:
                return
            if self._check_limits():
                return
            if time.monotonic() - last_save > 1.0:
                self._save_series()
                last_save = time.monotonic()

    def _drain(self) -> bool:
        """Read every waiting message; True once the run has ended."""
        try:
            if not self._conn.poll(0.05):
                return False
            while True:
                kind, data = self._conn.recv()
                self._last_message = time.monotonic()
                if self._apply(kind, data):
                    return True
                if not self._conn.poll(0):
                    return False
        except (EOFError, OSError):
            self._process.join(timeout=2.0)
            self._end("failed", _exit_reason(self._process.exitcode, self._batches()), None)
            return True

    def _apply(self, kind: str, data: Any) -> bool:
        if kind == "env":
            with self._lock:
                self._live.environment = data
            self._store_call(lambda s: s.set_environment(self.run_id, data))
            return False
        if kind == "started":
            with self._lock:
                self._live.status = "running"
                self._live.started_at = time.monotonic()
            return False
        self._add(data)
        if kind == "done":
            self._end(data["status"], data["reason"], data["end_reason"], data["elapsed_s"])
            return True
        return False

    def _add(self, data: dict[str, Any]) -> None:
        rows = data["rows"]
        readings = [Reading.from_dict(r) for r in data["readings"]]
        with self._lock:
            live = self._live
            first = len(live.waits_ns)
            for wait, n, end, step in rows:
                live.waits_ns.append(wait)
                live.examples.append(n)
                live.ends_ns.append(end)
                live.steps_ns.append(step)
                live.total_examples += n
            live.readings.extend(readings)
            live.child_elapsed = data["elapsed_s"]
        self._unsaved_rows.extend(
            (first + i, end / 1e9, wait / 1e6, n, step / 1e6)
            for i, (wait, n, end, step) in enumerate(rows)
        )
        self._unsaved_readings.extend(data["readings"])

    def _batches(self) -> int:
        with self._lock:
            return len(self._live.waits_ns)

    def _check_limits(self) -> bool:
        now = time.monotonic()
        alive = self._process.is_alive()
        if not alive and not self._conn.poll(0):
            self._end("failed", _exit_reason(self._process.exitcode, self._batches()), None)
            return True
        limit = self.settings.memory_limit_mb
        if limit is not None and not self._ceiling_hit and alive:
            try:
                rss = psutil.Process(self._process.pid).memory_info().rss / MB
            except psutil.Error:
                rss = 0.0
            if rss > limit:
                self._ceiling_hit = True
                self._ceiling_batch = self._batches()
                self._ceiling_event.set()
                self.stop()
        if self._stop_at is not None and now - self._stop_at > _KILL_AFTER_S:
            if self._ceiling_hit:
                reason = (
                    f"stopped: memory ceiling {limit} MB exceeded at batch {self._ceiling_batch}"
                )
            else:
                reason = f"stopped by request after {self._batches()} batches"
            self._kill()
            self._end("stopped", reason, None)
            return True
        started = self._live.started_at
        silent = now - self._last_message
        if started is None and now - self._started > _START_LIMIT_S:
            self._kill()
            self._end(
                "failed",
                f"the pipeline did not start within {_START_LIMIT_S:.0f} s (building it or "
                "importing TensorFlow hung)",
                None,
            )
            return True
        if started is not None and silent > _SILENCE_S:
            self._kill()
            self._end(
                "failed",
                f"the profiling process stopped responding for {silent:.0f} s after "
                f"{self._batches()} batches (stuck in native code?)",
                None,
            )
            return True
        return False

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=2.0)

    def _end(
        self, status: str, reason: str | None, end_reason: str | None, elapsed: float | None = None
    ) -> None:
        with self._lock:
            live = self._live
            if live.ended_at is not None:
                return
            live.status, live.reason, live.end_reason = status, reason, end_reason
            live.ended_at = time.monotonic()
            if elapsed is None and live.started_at is not None:
                elapsed = live.ended_at - live.started_at
            live.child_elapsed = elapsed or live.child_elapsed
            result = RunResult(
                status=status,
                reason=reason,
                end_reason=end_reason,
                name=self.name,
                settings=self.settings,
                waits_ns=tuple(live.waits_ns),
                examples=tuple(live.examples),
                ends_ns=tuple(live.ends_ns),
                steps_ns=tuple(live.steps_ns),
                readings=tuple(live.readings),
                environment=dict(live.environment),
                spec=self.spec,
                run_id=self.run_id,
                elapsed_s=live.child_elapsed,
            )
        self._save_series()
        self._store_call(
            lambda s: s.finish_run(
                self.run_id, status=status, error=reason, summary=result.to_summary_dict()
            )
        )
        self._result = result

    def _cleanup(self) -> None:
        if self._process.is_alive():
            self._process.join(timeout=2.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=2.0)
        self._conn.close()
        if self._result is None:  # the monitor ended without a verdict
            self._end("failed", "the profiler ended without a result", None)
        self._done.set()

    # --- store --------------------------------------------------------------------
    def _create_stored_run(self, store: Any) -> None:
        self.run_id = store.create_run(
            name=self.name, spec=self.spec, settings=self.settings.to_dict()
        )

    def _save_series(self) -> None:
        rows, self._unsaved_rows = self._unsaved_rows, []
        readings, self._unsaved_readings = self._unsaved_readings, []
        if self.run_id is None:
            return
        self._store_call(lambda s: s.append_batches(self.run_id, rows))
        self._store_call(lambda s: s.append_readings(self.run_id, readings))

    def _store_call(self, fn: Callable[[Any], Any], *, creating: bool = False) -> None:
        if self.store is None or (self.run_id is None and not creating):
            return
        try:
            fn(self.store)
        except Exception as exc:  # noqa: BLE001 - a store failure must not end the run
            self.store_error = f"the run store failed: {_describe(exc)}"


def _rolling(ends: tuple[float, ...], examples: tuple[int, ...]) -> float | None:
    if len(ends) < 2:
        return None
    last = ends[-1]
    i = bisect.bisect_left(ends, last - _ROLLING_WINDOW_S)
    i = min(i, len(ends) - 2)
    span = last - ends[i]
    return sum(examples[i + 1 :]) / span if span > 0 else None


# --- entry points ---------------------------------------------------------------------------


def _is_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")


def _payload(source: Any, generator: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    from pipeline_core.spec import PipelineSpec, load_spec  # noqa: PLC0415

    if _is_dataset(source):
        raise ProfileError(
            "a tf.data.Dataset cannot be sent to the profiling process; pass a module-level "
            "function that returns it, e.g. start_profile(make_dataset, settings=...)"
        )
    if callable(source) and not isinstance(source, PipelineSpec):
        try:
            pickle.dumps(source)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ProfileError(
                f"the dataset factory {source!r} cannot be sent to the profiling process "
                f"({exc}); define it at module level (not a lambda or nested function)"
            ) from None
        name = f"{getattr(source, '__module__', '?')}.{getattr(source, '__qualname__', source)}"
        return {"factory": source}, None, name
    spec = load_spec(source)
    if generator is not None:
        try:
            pickle.dumps(generator)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ProfileError(
                f"the generator cannot be sent to the profiling process ({exc}); "
                "define it at module level"
            ) from None
    return {"spec": spec.to_dict(), "generator": generator}, spec.to_dict(), spec.name


def start_profile(
    spec_or_factory: Any,
    *,
    settings: RunSettings | None = None,
    store: Any = None,
    name: str | None = None,
    generator: Any = None,
) -> RunHandle:
    """Start profiling in a child process and return its handle at once.

    Args:
        spec_or_factory: a `PipelineSpec` (or its dict / JSON text / file path), or a
            picklable zero-argument function returning a `tf.data.Dataset`.
        settings: limits and the simulated step (default `RunSettings()`).
        store: a `RunStore` to record the run in as it goes (None: not stored).
        name: the run's name (default: settings.name, the spec's or the factory's name).
        generator: a picklable callable for a spec with a "custom" generator source.

    Raises:
        ProfileError: the settings are invalid or the factory cannot be pickled.
        SpecError: the spec is invalid.
    """
    settings = settings or RunSettings()
    if settings.memory_limit_mb is None:
        from dataclasses import replace  # noqa: PLC0415

        settings = replace(settings, memory_limit_mb=default_memory_limit_mb())
    payload, spec, default_name = _payload(spec_or_factory, generator)
    payload["settings"] = settings.to_dict()
    run_name = name or settings.name or default_name
    return RunHandle(payload, settings=settings, name=run_name, spec=spec, store=store)


def profile(
    spec_or_factory: Any,
    *,
    settings: RunSettings | None = None,
    store: Any = None,
    name: str | None = None,
    generator: Any = None,
    on_snapshot: Callable[[Snapshot], None] | None = None,
) -> RunResult:
    """Profile and wait for the result (see `start_profile`); `on_snapshot` gets live
    snapshots about `sample_hz` times a second. Ctrl-C stops the run and keeps its result."""
    handle = start_profile(
        spec_or_factory, settings=settings, store=store, name=name, generator=generator
    )
    interval = 1.0 / (settings or RunSettings()).sample_hz
    try:
        while not handle.done:
            if on_snapshot is not None:
                on_snapshot(handle.snapshot())
            handle._done.wait(interval)
    except KeyboardInterrupt:
        handle.stop()
    return handle.result()
