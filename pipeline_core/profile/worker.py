"""The profiling child process: build, timed iteration, simulated step, readings, messages.

`child_main` runs in a process started with "spawn". It builds the pipeline,
times the consumer's wait for every batch (`next(iterator)`, monotonic ns),
optionally runs a simulated training step, samples readings on a daemon thread
and streams everything to the parent through a pipe. A watcher thread obeys
stop requests, the memory ceiling and hangs even while the loop is stuck
inside `next()`.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from pipeline_core.errors import describe_error
from pipeline_core.metrics import Reading, Sampler, environment, private_mb, process_memory
from pipeline_core.run_settings import RunSettings

_STOP_GRACE_S = 0.35  # child: how long the loop may take to notice a stop before forcing it
_HANG_GRACE_S = 5.0  # past max_seconds, a wait this long (at most max_seconds) is a hang
EMPTY_DATASET = "Cannot profile a dataset with 0 elements"


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
        self.pid = os.getpid()

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
        held = private_mb(self.pid)
        over = s.memory_limit_mb is not None and held > s.memory_limit_mb
        # The parent sets ceiling_event before stop_event when it sees the ceiling first.
        if over or (stop and self.ceiling_event.is_set()):
            self._request_stop("stopped", ceiling_reason(s.memory_limit_mb, len(self.rows)))
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
        if self.payload.get("dataset_graph") is not None:
            return _from_graph(self.payload["dataset_graph"], self.payload["element_spec"])
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
        if self.settings.step_model:
            import keras  # noqa: F401, PLC0415 - part of the baseline, not of the pipeline
        # TensorFlow's own memory, before the pipeline exists: "held by the pipeline" is
        # the private peak minus this. Its devices first: a GPU's driver context (hundreds
        # of MB of host memory) belongs to TensorFlow, not to the pipeline.
        tf.config.list_logical_devices()
        self.send("baseline", process_memory().to_dict())
        try:
            ds = self._dataset()
            if not isinstance(ds, tf.data.Dataset):
                raise TypeError(f"the factory returned {type(ds).__name__}, not a tf.data.Dataset")
            batched = _is_batched(ds.element_spec)
            step = self._step(tf, batched)
        except Exception as exc:  # noqa: BLE001 - any build error ends the run with its reason
            self.finish("failed", f"building the pipeline failed: {describe_error(exc)}", None)
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
            return (
                "failed",
                f"the pipeline raised at batch {len(rows) + 1}: {describe_error(exc)}",
                None,
            )
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


def ceiling_reason(limit_mb: float | None, batches: int) -> str:
    """Why a run stopped at the memory ceiling, with the fix."""
    return (
        f"stopped: memory ceiling {limit_mb} MB exceeded at batch {batches} (private memory of "
        "the pipeline process; pages of memory-mapped files are not counted); raise the "
        "ceiling or shrink the cache, shuffle and prefetch buffers"
    )


def _from_graph(graph: bytes, element_spec: bytes) -> Any:
    """Rebuild a dataset serialized by the parent (`Dataset._as_serialized_graph`)."""
    from pipeline_core._tf import tf as _tf  # noqa: PLC0415

    tf = _tf()
    variant = tf.raw_ops.DatasetFromGraph(graph_def=graph)
    return tf.data.experimental.from_variant(variant, pickle.loads(element_spec))


def _count(element: Any, batched: bool) -> int:
    if not batched:
        return 1
    leaf = _first_leaf(element)
    shape = getattr(leaf, "shape", ())
    return int(shape[0]) if len(shape) else 1


def _exit_child(conn: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.close()
    finally:
        os._exit(0)


def child_main(payload: dict[str, Any], conn: Any, stop_event: Any, ceiling_event: Any) -> None:
    """Entry point of the profiling child process."""
    runner = _Runner(payload, conn, stop_event, ceiling_event)
    try:
        runner.run()
    except BaseException as exc:  # noqa: BLE001 - last resort: tell the parent, then exit
        runner.finish("failed", f"the profiler failed: {describe_error(exc)}", None)
        traceback.print_exc()
    _exit_child(conn)
