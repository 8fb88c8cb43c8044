"""Run a module-level function in a child process, so a crash there cannot end the caller.

`start_job(fn, args=..., what="stage analysis")` starts `fn(*args,
progress=report, **kwargs)` in a child process (`pipeline_core.child`, the one
supervisor) and returns a `Job` at once. The child sends each
`report(message)` back as it happens, so `Job.state()` never blocks.
`Job.cancel()` ends the job within a second (the child is killed), and a job
that raises, dies by a signal (segfault, abort, the system's out-of-memory
killer), passes its memory ceiling (on private memory, as for profile runs) or
its wall-clock timeout ends as a failure with the supervisor's reason while the
caller keeps running.

Arguments, progress messages and the return value travel by pickle: pass
plain data (dicts, JSON text, frozen dataclasses), never open handles or
lambdas.
"""

from __future__ import annotations

import functools
import os
import pickle
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.child import Ending, Limits, Link, spawn
from pipeline_core.errors import PipelineLabError

_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError)


class IsolateError(PipelineLabError):
    """A job cannot start: the function or its arguments cannot reach the child, bad options."""


class JobFailed(RuntimeError):
    """Raised by `Job.result()` for a job that failed or was cancelled; `.reason` says why."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class JobState:
    """What a job has done so far (a copy: safe to keep).

    Attributes:
        status: "starting" (child importing), "running", "succeeded", "failed" or "cancelled".
        progress: every message the job reported so far, in order.
        reason: why it failed or was cancelled (None otherwise).
        elapsed_s: seconds since the job was started (frozen once it ended).
        done: the job has ended; `Job.result()` returns or raises at once.
    """

    status: str
    progress: tuple[Any, ...]
    reason: str | None
    elapsed_s: float
    done: bool

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def latest(self) -> Any:
        """The last progress message (None before the first)."""
        return self.progress[-1] if self.progress else None


# --- the child's side: run the function, report progress, send the result --------------------


def _report(link: Link, message: Any) -> None:
    try:
        link.send("progress", message)
    except _UNPICKLABLE as exc:
        raise IsolateError(
            f"a progress message of type {type(message).__name__} cannot be sent to the "
            f"parent process ({exc}); report plain data (dicts, numbers, text)"
        ) from None


def _run(link: Link, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
    link.started(os.getpid())
    value = fn(*args, progress=functools.partial(_report, link), **kwargs)
    try:
        link.send_last("result", value)
    except _UNPICKLABLE as exc:
        raise IsolateError(
            f"its result of type {type(value).__name__} cannot be sent back ({exc}); "
            "return plain data or frozen dataclasses"
        ) from None


# --- the parent's side ---------------------------------------------------------------------------


class Job:
    """A function running in a child process. Poll `state()`, `cancel()`, wait with `result()`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict[str, Any],
        *,
        what: str,
        timeout_s: float | None,
        memory_limit_mb: float | None,
    ) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self._lock = threading.Lock()
        self._progress: list[Any] = []
        self._status = "starting"
        self._reason: str | None = None
        self._value: Any = None
        self._traceback = ""
        self._child = spawn(
            _run,
            (fn, args, kwargs),
            what=what,
            limits=Limits(memory_mb=memory_limit_mb, timeout_s=timeout_s),
            on_message=self._on_message,
            on_end=self._on_end,
            needs_main=getattr(fn, "__module__", None) == "__main__",
        )

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def done(self) -> bool:
        return self._child.done

    def state(self) -> JobState:
        """The progress so far and the status, without blocking."""
        done = self._child.done  # first: once done, the status below is final
        with self._lock:
            return JobState(
                status=self._status,
                progress=tuple(self._progress),
                reason=self._reason,
                elapsed_s=self._child.elapsed_s,
                done=done,
            )

    @property
    def traceback(self) -> str:
        """The child's traceback when the function raised (empty otherwise)."""
        return self._traceback

    def cancel(self) -> None:
        """End the job now (the child is killed); it reads as "cancelled" within a second."""
        self._child.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job ends; True when it has."""
        return self._child.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value, once the job has ended.

        Raises:
            JobFailed: the job raised, crashed, timed out or was cancelled (`.reason`).
            TimeoutError: the job is still going after `timeout` seconds.
        """
        if not self._child.wait(timeout):
            raise TimeoutError(
                f"{self.what} is still going after {timeout} s; cancel() it or wait longer"
            )
        if self._status != "succeeded":
            raise JobFailed(self._status, self._reason or "unknown")
        return self._value

    # --- the protocol (called on the supervisor's monitor thread) ---------------------------
    def _on_message(self, kind: str, data: Any) -> bool:
        with self._lock:
            if kind == "started" and self._status == "starting":
                self._status = "running"
            elif kind == "progress":
                self._progress.append(data)
            elif kind == "result":
                self._value, self._status = data, "succeeded"
                return True
        return False

    def _on_end(self, ending: Ending) -> None:
        with self._lock:
            self._status = "cancelled" if ending.kind == "cancelled" else "failed"
            self._reason = ending.reason()
            self._traceback = ending.traceback


# --- entry points ------------------------------------------------------------------------------


def _check_sendable(name: str, value: Any) -> None:
    try:
        pickle.dumps(value)
    except _UNPICKLABLE as exc:
        raise IsolateError(
            f"the {name} cannot be sent to the child process ({exc}); use a module-level "
            "function and plain data (not a lambda, nested function or open handle)"
        ) from None


def start_job(
    fn: Callable[..., Any],
    *,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    what: str = "the job",
    timeout_s: float | None = None,
    memory_limit_mb: float | None = None,
) -> Job:
    """Start `fn(*args, progress=report, **kwargs)` in a child process; return its `Job` at once.

    Args:
        fn: a module-level function taking a keyword `progress` callable (one
            picklable message per call).
        args, kwargs: its arguments (picklable).
        what: names the work in failure reasons ("stage analysis").
        timeout_s: wall-clock limit from the start, child start-up included (None: none).
        memory_limit_mb: the child is stopped when its private memory passes this
            (`metrics.process_memory`: file-backed pages, e.g. of a memory-mapped file,
            are not counted, so data larger than the ceiling can stream).

    Raises:
        IsolateError: `fn` or its arguments cannot be pickled, or an option is invalid.
    """
    if timeout_s is not None and timeout_s <= 0:
        raise IsolateError(f"The `timeout_s` argument should be > 0. Received: {timeout_s}")
    if memory_limit_mb is not None and memory_limit_mb <= 0:
        raise IsolateError(
            f"The `memory_limit_mb` argument should be > 0. Received: {memory_limit_mb}"
        )
    kwargs = dict(kwargs or {})
    if "progress" in kwargs:
        raise IsolateError("`progress` is passed by the job itself; remove it from kwargs")
    _check_sendable("function", fn)
    _check_sendable("arguments", (args, kwargs))
    return Job(
        fn, tuple(args), kwargs, what=what, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb
    )


def run_job(
    fn: Callable[..., Any],
    *,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    what: str = "the job",
    timeout_s: float | None = None,
    memory_limit_mb: float | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """Blocking form of `start_job`: pass each progress message to `on_progress`, return the
    value. Ctrl-C cancels the job.

    Raises:
        JobFailed: the job raised, crashed, timed out or was cancelled.
    """
    job = start_job(
        fn,
        args=args,
        kwargs=kwargs,
        what=what,
        timeout_s=timeout_s,
        memory_limit_mb=memory_limit_mb,
    )
    seen = 0
    try:
        while True:
            ended = job.wait(0.1)
            state = job.state()
            if on_progress is not None:
                for message in state.progress[seen:]:
                    on_progress(message)
            seen = len(state.progress)
            if ended:
                break
    except KeyboardInterrupt:
        job.cancel()
        job.wait(5.0)
    return job.result(timeout=0)
