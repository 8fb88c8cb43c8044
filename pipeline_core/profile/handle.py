"""The parent side of a profile run: `RunHandle`, a protocol on the one supervisor.

The supervisor (`pipeline_core.child`) starts the child, drains its messages
on a thread, applies the memory ceiling and the start-up and silence limits,
and stops it gracefully, then kills it. This module turns the messages into
live `Snapshot`s and a frozen `RunResult`, and records the run in a store as it
goes: `snapshot()` never blocks, `stop()` ends the run within a second, and a
child that raises, crashes, runs out of memory or hangs ends as a failed run
with the supervisor's reason while the caller keeps running.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.child import Ending, Limits, spawn
from pipeline_core.errors import describe_error
from pipeline_core.metrics import ProcessMemory, Reading
from pipeline_core.profile.result import RunResult, Snapshot
from pipeline_core.profile.settings import RunSettings
from pipeline_core.profile.worker import WHAT, run_profile, where

_KILL_AFTER_S = 0.7  # kill a child that has not ended this long after a stop
_SILENCE_S = 30.0  # a started child that sends nothing this long is stuck
_START_LIMIT_S = 180.0  # time allowed to import TensorFlow and build the pipeline
_SAVE_EVERY_S = 1.0  # the store gets the new batches and readings this often
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
    worker_samples: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    baseline: ProcessMemory | None = None
    total_examples: int = 0
    started_at: float | None = None
    length: int | None = None  # elements in one pass of the data, when TensorFlow knows
    child_elapsed: float = 0.0
    ended_at: float | None = None


class RunHandle:
    """A running profile. Poll `snapshot()`, call `stop()`, wait with `wait()` or `result()`."""

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
        self._unsaved_rows: list[tuple] = []
        self._unsaved_readings: list[dict[str, Any]] = []
        self._last_save = time.monotonic()
        self._result: RunResult | None = None
        self._ended = threading.Event()  # set with the final status, under the lock
        self._store_call(self._create_stored_run, creating=True)
        # A factory defined in a script's __main__ needs that script in the child.
        needs_main = any(
            getattr(payload.get(key), "__module__", None) == "__main__"
            for key in ("factory", "generator")
        )
        limits = Limits(
            memory_mb=settings.memory_limit_mb,
            start_s=_START_LIMIT_S,
            silence_s=_SILENCE_S,
            grace_s=_KILL_AFTER_S,
        )
        self._child = spawn(
            run_profile,
            (payload,),
            what=WHAT,
            limits=limits,
            on_message=self._on_message,
            on_end=self._on_end,
            on_poll=self._on_poll,
            needs_main=needs_main,
        )

    # --- public -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def done(self) -> bool:
        """The run has ended (any status) and its result is ready."""
        return self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has ended; True when it has (then `result()` returns at once)."""
        return self._ended.wait(timeout)

    def stop(self) -> None:
        """Ask the run to end now; it ends within a second, partial result kept as "stopped"."""
        if not self.done:
            self._child.stop()

    def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the end of the run and return its result.

        Raises:
            TimeoutError: the run is still going after `timeout` seconds.
        """
        if not self._ended.wait(timeout):
            raise TimeoutError(
                f"the run is still going after {timeout} s; call stop() or wait longer"
            )
        assert self._result is not None
        return self._result

    def snapshot(self) -> Snapshot:
        """The latest state, without blocking."""
        with self._lock:  # the status and `done` change together (`_end`)
            done = self._ended.is_set()
            live = self._live
            waits = tuple(w / 1e6 for w in live.waits_ns)
            ends = tuple(e / 1e9 for e in live.ends_ns)
            examples = tuple(live.examples)
            readings = tuple(live.readings)
            workers = tuple(live.worker_samples)
            baseline = live.baseline
            status, reason = live.status, live.reason
            total = live.total_examples
            env_gpu = live.environment.get("gpu_status")
            if live.ended_at is not None:
                elapsed = live.child_elapsed
            elif live.started_at is not None:
                elapsed = time.monotonic() - live.started_at
            else:
                elapsed = 0.0
        gpu = "unknown"
        if readings:
            gpu = "available" if readings[-1].gpu is not None else "no GPU"
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
            done=done,
            waits_ms=waits,
            batch_times_s=ends,
            batch_examples=examples,
            readings=readings,
            gpu=gpu,
            baseline=baseline,
            worker_samples=workers,
        )

    # --- the protocol (called on the supervisor's monitor thread) -----------------------
    def _on_message(self, kind: str, data: Any) -> bool:
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
                self._live.length = (data or {}).get("length")
            return False
        self._add(data)
        if kind == "done":
            self._end(data["status"], data["reason"], data["end_reason"], data["elapsed_s"])
            return True
        return False

    def _on_end(self, ending: Ending) -> None:
        """The child ended without its last word: stopped (a stop or the ceiling) or failed."""
        with self._lock:
            batches = None if self._live.started_at is None else len(self._live.waits_ns)
        status = "stopped" if ending.kind in ("stopped", "ceiling") else "failed"
        self._end(status, ending.reason(where(ending.kind, batches)), None)

    def _on_poll(self) -> None:
        if time.monotonic() - self._last_save > _SAVE_EVERY_S:
            self._save_series()
            self._last_save = time.monotonic()

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
            live.worker_samples.extend(data.get("workers", ()))
            live.child_elapsed = data["elapsed_s"]
        self._unsaved_rows.extend(
            (first + i, end / 1e9, wait / 1e6, n, step / 1e6)
            for i, (wait, n, end, step) in enumerate(rows)
        )
        self._unsaved_readings.extend(data["readings"])

    def _end(
        self, status: str, reason: str | None, end_reason: str | None, elapsed: float | None = None
    ) -> None:
        """The run's end: stored first, then shown (status and `done` at once)."""
        with self._lock:
            live = self._live
            if live.ended_at is not None:
                return
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
                data_length=live.length,
                worker_samples=tuple(live.worker_samples),
            )
        self._save_series()
        self._store_call(
            lambda s: s.finish_run(
                self.run_id, status=status, error=reason, summary=self._summary(result)
            )
        )
        with self._lock:
            live.status, live.reason, live.end_reason = status, reason, end_reason
            self._result = result
            self._ended.set()

    def _summary(self, result: RunResult) -> dict[str, Any]:
        """The stored summary: the measured figures, plus extra keys that do not clash."""
        return {**self.summary_extra, **result.to_summary_dict()}

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
        except Exception as exc:  # a store failure must not end the run
            self.store_error = f"the run store failed: {describe_error(exc)}"


def _rolling(ends: tuple[float, ...], examples: tuple[int, ...]) -> float | None:
    if len(ends) < 2:
        return None
    last = ends[-1]
    i = bisect.bisect_left(ends, last - _ROLLING_WINDOW_S)
    i = min(i, len(ends) - 2)
    span = last - ends[i]
    return sum(examples[i + 1 :]) / span if span > 0 else None
