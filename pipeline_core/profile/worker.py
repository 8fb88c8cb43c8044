"""The profiling child's work: build, timed iteration, simulated step, readings, messages.

`run_profile` runs in a child process under the supervisor (`pipeline_core.child`).
It builds the pipeline, times the consumer's wait for every batch
(`next(iterator)`, monotonic ns), optionally runs a simulated training step,
samples readings on a daemon thread and streams everything to the parent
through its `Link`. A watcher thread obeys stop requests, the memory ceiling
and hangs even while the loop is stuck inside `next()`. Examples per batch are
counted as `analysis.examples` counts them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import examples_in, is_batched, is_batched_element
from pipeline_core.build import build
from pipeline_core.child import Ending, Link, ceiling_reason
from pipeline_core.errors import describe_error
from pipeline_core.metrics import Reading, Sampler, environment, private_mb, process_memory
from pipeline_core.profile.settings import RunSettings
from pipeline_core.profile.workers import WorkerWatch
from pipeline_core.sources import locate_bad_input
from pipeline_core.spec import load_spec
from pipeline_core.steps import LOCAL, distribute_step, serving_locally

WHAT = "profiling"  # names a profile run in the supervisor's reasons
_STOP_GRACE_S = 0.35  # child: how long the loop may take to notice a stop before forcing it
_HANG_GRACE_S = 5.0  # past max_seconds, a wait this long (at most max_seconds) is a hang
EMPTY_DATASET = "Cannot profile a dataset with 0 elements"


def where(kind: str, batches: int | None) -> str:
    """Where a run was when it ended, for `Ending.reason`: the batch that passed the
    memory ceiling, the batches done, or before the first one (`batches` None)."""
    if batches is None:
        return "before its first batch"
    if kind == "ceiling":
        return f"at batch {batches + 1}"
    return f"after {batches} batches"


def _first_leaf(value: Any) -> Any:
    while isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, dict) and value:
        return _first_leaf(next(iter(value.values())))
    return value


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
        import keras

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

    def __init__(self, payload: dict[str, Any], link: Link) -> None:
        self.payload = payload
        self.settings = RunSettings(**payload["settings"])
        self.link = link
        self.lock = threading.Lock()
        self.rows: list[tuple[int, int, int, int]] = []
        self.sent_rows = 0
        self.readings: list[dict[str, Any]] = []
        self.stop_reason: tuple[str, str] | None = None
        self.stop_asked_at: float | None = None
        self.waiting_since: float | None = None
        self.t0: float | None = None
        self.pid = os.getpid()
        self.length: int | None = None  # elements in one pass of the data, when known
        self.workers: WorkerWatch | None = None  # the local tf.data service's workers

    # messages
    def _take(self) -> dict[str, Any]:
        end = len(self.rows)
        rows, self.sent_rows = self.rows[self.sent_rows : end], end
        readings, self.readings = self.readings, []
        elapsed = time.monotonic() - self.t0 if self.t0 else 0.0
        data = {"rows": rows, "readings": readings, "elapsed_s": elapsed}
        if self.workers is not None:
            data["workers"] = self.workers.take()
        return data

    def flush(self) -> None:
        with self.lock:
            if not self.link.finished:
                self.link.send("tick", self._take())

    def finish(self, status: str, reason: str | None, end_reason: str | None) -> bool:
        """Send the run's last word (False when it already went)."""
        with self.lock:
            if self.link.finished:
                return False
            data = self._take()
            data.update(status=status, reason=reason, end_reason=end_reason)
            return self.link.send_last("done", data)

    # watching: stop requests, memory ceiling, hangs
    def _request_stop(self, status: str, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = (status, reason)
            self.stop_asked_at = time.monotonic()

    def _check(self) -> None:
        s = self.settings
        asked = self.link.stop_requested()
        batches = len(self.rows)
        over = s.memory_limit_mb is not None and private_mb(self.pid) > s.memory_limit_mb
        if over or asked == "ceiling":
            at = where("ceiling", batches)
            self._request_stop("stopped", ceiling_reason(s.memory_limit_mb, WHAT, at))
        elif asked == "stopped":
            self._request_stop("stopped", Ending("stopped", WHAT).reason(where(asked, batches)))
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
                    f"{s.max_seconds:g} s has passed (after {batches} batches); check the "
                    "source (a generator that never yields?) or make elements cheaper",
                    None,
                )

    def _force(self, status: str, reason: str, end_reason: str | None) -> None:
        """End the run from the watcher while the loop is stuck inside `next()`."""
        if self.finish(status, reason, end_reason):
            self.link.exit()

    def watch(self) -> None:
        tick = 1.0 / self.settings.sample_hz
        next_flush = time.monotonic() + tick
        while not self.link.finished:
            self._check()
            if time.monotonic() >= next_flush:
                next_flush += tick
                self.flush()
            time.sleep(0.05)

    # the work
    def _dataset(self) -> tuple[Any, bool]:
        """The pipeline and whether its elements are batches."""
        payload = self.payload
        if payload.get("spec") is not None:
            spec = load_spec(payload["spec"])
            return build(spec, generator=payload.get("generator")), is_batched(spec)
        if payload.get("dataset_graph") is not None:
            ds = _from_graph(payload["dataset_graph"], payload["element_spec"])
        else:
            ds = payload["factory"]()
        if not isinstance(ds, _tf().data.Dataset):
            raise TypeError(f"the factory returned {type(ds).__name__}, not a tf.data.Dataset")
        return ds, is_batched_element(ds.element_spec)

    def _step(self, tf: Any, batched: bool) -> Callable[[Any], None] | None:
        s = self.settings
        if s.step_model:
            return _ModelStep(tf, batched)
        if s.step_ms is not None:
            seconds = s.step_ms / 1000
            return lambda _element: time.sleep(seconds)
        return None

    def run(self) -> None:
        tf = _tf()
        self.link.send("env", environment())
        if self.settings.step_model:
            import keras  # noqa: F401 - part of the baseline, not of the pipeline
        # TensorFlow's own memory, before the pipeline exists: "held by the pipeline" is
        # the private peak minus this. Its devices first: a GPU's driver context (hundreds
        # of MB of host memory) belongs to TensorFlow, not to the pipeline.
        tf.config.list_logical_devices()
        self.link.send("baseline", process_memory().to_dict())
        with contextlib.ExitStack() as servers:
            try:
                self._serve(servers)
            except Exception as exc:
                self.finish("failed", f"tf.data service: {exc}", None)
                return
            self._run(tf)

    def _serve(self, servers: contextlib.ExitStack) -> None:
        """The tf.data service a `distribute` step reads from: start local servers (in
        `servers`, which stops them) or check that a remote dispatcher answers, then
        watch the workers' readings."""
        spec = self.payload.get("spec")
        step = distribute_step(load_spec(spec)) if spec is not None else None
        if step is None:
            return
        from pipeline_core.service import LocalCluster, check_dispatcher

        if step.service == LOCAL:
            cluster = servers.enter_context(LocalCluster(step.workers))
            servers.enter_context(serving_locally(cluster.dispatcher_address))
            workers = [
                {"address": w.address, "metrics_url": w.metrics_url} for w in cluster.workers
            ]
        else:  # unreachable: said in seconds, rather than TensorFlow retrying for minutes
            check_dispatcher(step.service, field="the distribute step's service")
            urls = [url.rstrip("/") for url in step.worker_metrics]  # where they serve readings
            workers = [{"address": url.split("://", 1)[1], "metrics_url": url} for url in urls]
        if workers:
            self.workers = WorkerWatch(workers).start()
            servers.callback(self.workers.stop)

    def _run(self, tf: Any) -> None:
        try:
            ds, batched = self._dataset()
            self.length = _finite_length(ds)
            if self.settings.repeat:
                ds = ds.repeat()  # until a limit ends the run; an empty dataset stays empty
            step = self._step(tf, batched)
        except Exception as exc:  # any build error ends the run with its reason
            self.finish("failed", f"building the pipeline failed: {describe_error(exc)}", None)
            return
        sampler = Sampler(hz=self.settings.sample_hz, on_reading=self._on_reading, keep=False)
        self._on_reading(sampler.sample())
        sampler.start()
        threading.Thread(target=self.watch, name="pl-watch", daemon=True).start()
        status, reason, end_reason = self._loop(ds, step, batched)
        if status == "failed" and self.payload.get("spec") is not None:
            where = locate_bad_input(load_spec(self.payload["spec"]).source)
            reason = f"{reason} ({where})" if where else reason
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
        self.link.started({"t": time.time(), "length": self.length})
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
                n = examples_in(element, batched=batched)
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
        except Exception as exc:  # report any pipeline error as the reason
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


def _finite_length(ds: Any) -> int | None:
    """Elements in one pass of `ds` when TensorFlow knows it (None: infinite or unknown)."""
    length = int(ds.cardinality())
    return length if length >= 0 else None


def _from_graph(graph: bytes, element_spec: bytes) -> Any:
    """Rebuild a dataset serialized by the parent (`Dataset._as_serialized_graph`)."""
    tf = _tf()
    variant = tf.raw_ops.DatasetFromGraph(graph_def=graph)
    return tf.data.experimental.from_variant(variant, pickle.loads(element_spec))


def run_profile(link: Link, payload: dict[str, Any]) -> None:
    """The profiling child's target (`RunHandle` spawns it): build, time, report."""
    _Runner(payload, link).run()
