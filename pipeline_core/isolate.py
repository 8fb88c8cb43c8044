"""Run a module-level function in a child process, so a crash there cannot end the caller.

`start_job(fn, args=..., what="stage analysis")` starts `fn(*args,
progress=report, **kwargs)` in a child process (the "spawn" start method:
TensorFlow and fork do not mix) and returns a `Job` at once. The child sends
each `report(message)` back as it happens; a monitor thread in the parent
collects the messages, so `Job.state()` never blocks. `Job.cancel()` ends the
job within a second (the child is killed), and a job that raises, dies by a
signal (segfault, abort, the system's out-of-memory killer), passes its
memory ceiling (on private memory, as for profile runs) or its wall-clock timeout ends as a failure with a reason
that names what happened while the caller keeps running.

Arguments, progress messages and the return value travel by pickle: pass
plain data (dicts, JSON text, frozen dataclasses), never open handles or
lambdas.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core._spawn import main_hidden_from_spawn
from pipeline_core.errors import PipelineLabError, describe_error
from pipeline_core.metrics import private_mb

STATUSES = ("starting", "running", "succeeded", "failed", "cancelled")
_POLL_S = 0.05
_JOIN_S = 1.0


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


# --- the child process -----------------------------------------------------------------


def _child_main(fn: Callable[..., Any], args: tuple, kwargs: dict, conn: Any) -> None:
    """Entry point of the child: run `fn`, send progress, then the result or the error."""
    lock = threading.Lock()

    def send(kind: str, data: Any) -> None:
        with lock:
            conn.send((kind, data))

    def report(message: Any) -> None:
        try:
            send("progress", message)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise IsolateError(
                f"a progress message of type {type(message).__name__} cannot be sent to the "
                f"parent process ({exc}); report plain data (dicts, numbers, text)"
            ) from None

    send("started", os.getpid())
    try:
        value = fn(*args, progress=report, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back as a reason
        send("error", {"message": describe_error(exc), "traceback": traceback.format_exc()})
    else:
        try:
            send("result", value)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            message = (
                f"its result of type {type(value).__name__} cannot be sent back ({exc}); "
                "return plain data or frozen dataclasses"
            )
            send("error", {"message": message, "traceback": ""})
    sys.stdout.flush()
    sys.stderr.flush()
    conn.close()
    os._exit(0)  # skip interpreter teardown: TensorFlow's threads can stall a normal exit


# --- failure reasons ----------------------------------------------------------------------


def exit_reason(exitcode: int | None, what: str) -> str:
    """Why a child that sent no result ended: a signal (crash, abort, kill) or an exit code."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        sig = f"signal {number} {name}"
        if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"):
            return f"the pipeline crashed ({sig}) during {what}"
        if name == "SIGABRT":
            return f"the pipeline aborted ({sig}) during {what}: a native library called abort"
        if name == "SIGKILL":
            return (
                f"the process running {what} was killed ({sig}), usually by the system "
                "because memory ran out; use a smaller dataset, cache or shuffle buffer"
            )
        return f"the process running {what} was ended by {sig}"
    return f"the process running {what} exited with code {exitcode} without a result"


# --- the parent side -------------------------------------------------------------------------


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
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._progress: list[Any] = []
        self._status = "starting"
        self._reason: str | None = None
        self._value: Any = None
        self._traceback = ""
        self._ended_at: float | None = None
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self._conn = receiver
        self._process = ctx.Process(
            target=_child_main,
            args=(fn, args, kwargs, sender),
            name=f"pipeline-lab-{what}"[:60].replace(" ", "-"),
            daemon=True,
        )
        needs_main = getattr(fn, "__module__", None) == "__main__"
        self._started = time.monotonic()
        with contextlib.nullcontext() if needs_main else main_hidden_from_spawn():
            self._process.start()
        sender.close()  # only the child writes: its death then reads as end-of-file here
        self._thread = threading.Thread(target=self._monitor, name="pl-job-monitor", daemon=True)
        self._thread.start()

    # --- public -----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def state(self) -> JobState:
        """The progress so far and the status, without blocking."""
        with self._lock:
            end = self._ended_at if self._ended_at is not None else time.monotonic()
            return JobState(
                status=self._status,
                progress=tuple(self._progress),
                reason=self._reason,
                elapsed_s=end - self._started,
                done=self._done.is_set(),
            )

    @property
    def traceback(self) -> str:
        """The child's traceback when the function raised (empty otherwise)."""
        return self._traceback

    def cancel(self) -> None:
        """End the job now (the child is killed); it reads as "cancelled" within a second."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job ends; True when it has."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value, once the job has ended.

        Raises:
            JobFailed: the job raised, crashed, timed out or was cancelled (`.reason`).
            TimeoutError: the job is still going after `timeout` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(
                f"{self.what} is still going after {timeout} s; cancel() it or wait longer"
            )
        if self._status != "succeeded":
            raise JobFailed(self._status, self._reason or "unknown")
        return self._value

    # --- monitor thread ------------------------------------------------------------------
    def _monitor(self) -> None:
        try:
            while not self._drain() and not self._check():
                pass
        except Exception as exc:  # noqa: BLE001 - the caller must never be taken down
            self._kill()
            self._end("failed", f"watching {self.what} failed: {describe_error(exc)}")
        finally:
            self._cleanup()

    def _drain(self) -> bool:
        """Read every waiting message; True once the job has ended."""
        try:
            if not self._conn.poll(_POLL_S):
                return False
            while True:
                kind, data = self._conn.recv()
                if self._apply(kind, data):
                    return True
                if not self._conn.poll(0):
                    return False
        except (EOFError, OSError):
            self._process.join(timeout=_JOIN_S)
            self._end("failed", exit_reason(self._process.exitcode, self.what))
            return True

    def _apply(self, kind: str, data: Any) -> bool:
        if kind == "started":
            with self._lock:
                if self._status == "starting":
                    self._status = "running"
            return False
        if kind == "progress":
            with self._lock:
                self._progress.append(data)
            return False
        if kind == "result":
            self._value = data
            self._end("succeeded", None)
            return True
        self._traceback = data["traceback"]
        self._end("failed", f"{self.what} failed: {data['message']}")
        return True

    def _check(self) -> bool:
        """Cancel, timeout and memory ceiling; True once the job has ended."""
        if self._cancel.is_set():
            self._kill()
            elapsed = time.monotonic() - self._started
            self._end("cancelled", f"{self.what} was cancelled after {elapsed:.1f} s")
            return True
        if self.timeout_s is not None and time.monotonic() - self._started > self.timeout_s:
            self._kill()
            self._end(
                "failed",
                f"{self.what} ran out of time after {self.timeout_s:g} s: the pipeline may hang "
                "(a generator that never yields?) or be too slow for the settings",
            )
            return True
        if (
            self.memory_limit_mb is not None
            and private_mb(self._process.pid) > self.memory_limit_mb
        ):
            self._kill()
            self._end(
                "failed",
                f"{self.what} was stopped: its process held more than "
                f"{self.memory_limit_mb:,.0f} MB of private memory (pages of memory-mapped files "
                "are not counted); use smaller elements, buffers or cache, or raise the ceiling",
            )
            return True
        return False

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=_JOIN_S)

    def _end(self, status: str, reason: str | None) -> None:
        with self._lock:
            if self._ended_at is not None:
                return
            self._status, self._reason = status, reason
            self._ended_at = time.monotonic()

    def _cleanup(self) -> None:
        self._process.join(timeout=_JOIN_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=_JOIN_S)
        self._conn.close()
        self._end("failed", f"{self.what} ended without a result")
        self._done.set()


# --- entry points ------------------------------------------------------------------------------


def _check_sendable(name: str, value: Any) -> None:
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
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
    job = start_job(fn, args=args, kwargs=kwargs, what=what, timeout_s=timeout_s,
                    memory_limit_mb=memory_limit_mb)  # fmt: skip
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
