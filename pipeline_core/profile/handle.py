"""The parent side of a profile run: `RunHandle` drains the child's messages on a thread.

`snapshot()` never blocks, `stop()` ends the run within a second, and a child
that raises, crashes, runs out of memory or hangs ends as a failed run with a
reason while the caller keeps running. The run is recorded in a store as it goes.
"""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core._profile_child import ceiling_reason, child_main
from pipeline_core._spawn import main_hidden_from_spawn
from pipeline_core.errors import describe_error
from pipeline_core.metrics import ProcessMemory, Reading, private_mb
from pipeline_core.run_result import RunResult, Snapshot
from pipeline_core.run_settings import RunSettings

_KILL_AFTER_S = 0.7  # parent: kill a child that has not ended this long after a stop
_SILENCE_S = 30.0  # a started child that sends nothing this long is stuck
_START_LIMIT_S = 180.0  # time allowed to import TensorFlow and build the pipeline
_RECENT = 50
_ROLLING_WINDOW_S = 2.0


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
    baseline: ProcessMemory | None = None
    total_examples: int = 0
    started_at: float | None = None
    child_elapsed: float = 0.0
    ended_at: float | None = None


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
        summary_extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.summary_extra = dict(summary_extra or {})
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
            target=child_main,
            args=(payload, sender, self._stop_event, self._ceiling_event),
            name=f"pipeline-lab-profile-{name}"[:60],
            daemon=True,
        )
        # A factory defined in a script's __main__ needs that script in the child.
        needs_main = any(
            getattr(payload.get(key), "__module__", None) == "__main__"
            for key in ("factory", "generator")
        )
        with contextlib.nullcontext() if needs_main else main_hidden_from_spawn():
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
            baseline = live.baseline
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
            baseline=baseline,
        )

    # --- monitor thread ------------------------------------------------------------
    def _monitor(self) -> None:
        try:
            self._watch_child()
        except Exception as exc:  # noqa: BLE001 - the caller must never be taken down
            self._end("failed", f"the profiler's monitor failed: {describe_error(exc)}", None)
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
        if kind == "baseline":
            with self._lock:
                self._live.baseline = ProcessMemory.from_dict(data)
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
        over = limit is not None and alive and private_mb(self._process.pid) > limit
        if over and not self._ceiling_hit:
            self._ceiling_hit = True
            self._ceiling_batch = self._batches()
            self._ceiling_event.set()
            self.stop()
        if self._stop_at is not None and now - self._stop_at > _KILL_AFTER_S:
            if self._ceiling_hit:
                reason = ceiling_reason(limit, self._ceiling_batch)
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
                baseline=live.baseline,
                spec=self.spec,
                run_id=self.run_id,
                elapsed_s=live.child_elapsed,
            )
        self._save_series()
        self._store_call(
            lambda s: s.finish_run(
                self.run_id, status=status, error=reason, summary=self._summary(result)
            )
        )
        self._result = result

    def _summary(self, result: RunResult) -> dict[str, Any]:
        """The stored summary: the measured figures, plus extra keys that do not clash."""
        return {**self.summary_extra, **result.to_summary_dict()}

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
            self.store_error = f"the run store failed: {describe_error(exc)}"


def _rolling(ends: tuple[float, ...], examples: tuple[int, ...]) -> float | None:
    if len(ends) < 2:
        return None
    last = ends[-1]
    i = bisect.bisect_left(ends, last - _ROLLING_WINDOW_S)
    i = min(i, len(ends) - 2)
    span = last - ends[i]
    return sum(examples[i + 1 :]) / span if span > 0 else None
