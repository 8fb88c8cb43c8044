"""One supervisor for every child process: spawn, messages, limits, stop, exit reasons.

Work that runs a user's pipeline goes in a child process started with "spawn"
(TensorFlow and fork do not mix), so a crash, a hang or too much memory there
ends as a reason while the caller keeps running. `spawn(target, args, ...)`
starts `target(link, *args)` in a child and returns its `Child` at once; a
monitor thread in the parent drains the child's messages and applies the limits:

- messages go one way, child to parent, as `(kind, data)` pairs through the
  child's `Link`. "started" (the work began) and "raised" (the target raised)
  are the supervisor's own; every other kind belongs to the protocol on top
  (`isolate` jobs, profile runs), whose `on_message` says when it got the last word;
- `stop()` asks the child to end (`Link.stop_requested`) and kills it after
  `Limits.grace_s`; `cancel()` kills it at once; the memory ceiling (private
  memory, as `metrics.private_mb` reads it), the timeout, the start-up limit and
  the silence limit stop it the same way;
- a child that ends without the protocol's last word ends with one `Ending`,
  passed once to `on_end`; `Ending.reason()` is the one sentence for each kind of
  end (a crash, a kill, the ceiling, a timeout ...), whichever protocol ran.

The callbacks run on the monitor thread.

Warm start: with `keep_warm()` (the dashboard turns it on) one spare child waits with
TensorFlow and the package already imported; `spawn` hands it its target instead of
starting a process, so the work begins at once rather than after an 8-15 s import. A
spare runs one target and ends like any child (it is never shared); a new spare is
started once that child has ended, so its import does not compete with the work
(a profile run's figures included). A spare started under other environment
variables or another working directory than the caller's now is discarded, never used.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import psutil

from pipeline_core.errors import describe_error
from pipeline_core.metrics import MB, private_mb

POLL_S = 0.05  # the monitor's longest wait for a message between two checks of the limits
JOIN_S = 2.0  # how long a child may take to exit once it has ended (then it is killed)
# Why the parent asked a child to stop (`Link.stop_requested`); the flag holds index + 1.
STOP_KINDS = ("stopped", "cancelled", "ceiling", "timeout", "silent")
# Every way a child can end without its protocol's last word (`Ending.kind`).
ENDINGS = (*STOP_KINDS, "died", "raised", "broken", "lost")
_CRASH_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")
PARENT_GONE_EXIT = 3  # a child's exit status when it ended because its parent died


def default_memory_limit_mb() -> int:
    """Half of the memory available now: a ceiling that leaves the machine usable."""
    return max(256, int(psutil.virtual_memory().available / MB * 0.5))


@dataclass(frozen=True)
class Limits:
    """When the supervisor stops a child.

    Attributes:
        memory_mb: ceiling on the child's private memory (`metrics.private_mb`: pages of
            memory-mapped files do not count, so data larger than the ceiling can stream).
        timeout_s: wall-clock limit from the spawn, start-up included.
        start_s: limit from the spawn until the child says "started" (imports, build).
        silence_s: once started, the longest time between two messages.
        grace_s: after a stop, how long the child may take to end on its own before it
            is killed (a cancel kills at once).
    """

    memory_mb: float | None = None
    timeout_s: float | None = None
    start_s: float | None = None
    silence_s: float | None = None
    grace_s: float = 0.0


@dataclass(frozen=True)
class Ending:
    """How a child ended without its protocol's last word: one of `ENDINGS`.

    Attributes:
        kind: "stopped" (by request), "cancelled", "ceiling", "timeout", "silent",
            "died" (a signal or an exit code), "raised" (the target raised), "broken"
            (the monitor failed) or "lost" (no verdict at all).
        what: names the work ("stage analysis", "profiling").
        elapsed_s: seconds from the spawn to the end.
        limit: the ceiling (MB) or the time limit (s) that was passed.
        exitcode: the process's exit code (negative: the signal), for "died".
        message: what was raised ("raised") or what failed ("broken").
        traceback: the child's traceback, for "raised".
    """

    kind: str
    what: str
    elapsed_s: float = 0.0
    limit: float | None = None
    exitcode: int | None = None
    message: str = ""
    traceback: str = ""

    def reason(self, at: str = "") -> str:
        """The one sentence for this kind of end; `at` says where the work was
        ("after 3 batches"), when the protocol knows."""
        what, at_ = self.what, f" {at}" if at else ""
        if self.kind == "stopped":
            return f"stopped by request{at_}"
        if self.kind == "cancelled":
            return f"{what} was cancelled after {self.elapsed_s:.1f} s"
        if self.kind == "ceiling":
            return ceiling_reason(self.limit, what, at)
        if self.kind == "timeout":
            return (
                f"{what} ran out of time after {self.limit:g} s{at_}: the pipeline may hang "
                "(a generator that never yields?) or be too slow for the settings"
            )
        if self.kind == "silent":
            return (
                f"the process running {what} stopped responding for {self.limit:g} s{at_} "
                "(stuck in native code?)"
            )
        if self.kind == "died":
            return _death_reason(self.exitcode, what, at_)
        if self.kind == "raised":
            return f"{what} failed: {self.message}"
        if self.kind == "broken":
            return f"watching {what} failed: {self.message}"
        return f"{what} ended without a result"


def ceiling_reason(limit_mb: float | None, what: str, at: str = "") -> str:
    """Why a child was stopped at its memory ceiling, with the fix (the child side of a
    profile run says it in the same words when it sees the ceiling first)."""
    return (
        f"stopped: memory ceiling {limit_mb:.0f} MB exceeded {at or f'during {what}'} "
        "(private memory of its process; pages of memory-mapped files are not counted); "
        "raise the ceiling or shrink the cache, shuffle and prefetch buffers"
    )


def _death_reason(exitcode: int | None, what: str, at_: str) -> str:
    if exitcode is None or exitcode >= 0:
        return f"the process running {what} exited with code {exitcode}{at_} without a result"
    number = -exitcode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    sig = f"signal {number} {name}"
    if name in _CRASH_SIGNALS:
        return f"the pipeline crashed ({sig}) during {what}{at_}"
    if name == "SIGABRT":
        return f"the pipeline aborted ({sig}) during {what}{at_}: a native library called abort"
    if name == "SIGKILL":
        return (
            f"the process running {what} was killed ({sig}){at_}, usually by the system "
            "because memory ran out; use a smaller dataset, cache or shuffle buffer"
        )
    return f"the process running {what} was ended by {sig}{at_}"


# --- the child's side ------------------------------------------------------------------------


class Link:
    """The child's end: messages to the parent, the parent's stop request, the exit."""

    def __init__(self, conn: Any, flag: Any, temp_dir: str | None = None) -> None:
        self._conn = conn
        self._flag = flag
        self._temp_dir = temp_dir
        self._lock = threading.Lock()
        self._finished = False

    @property
    def finished(self) -> bool:
        """The last message has gone; later messages are dropped."""
        return self._finished

    def send(self, kind: str, data: Any = None) -> bool:
        """Send one message (pickled: plain data); False when it was dropped.

        Raises:
            pickle.PicklingError, TypeError, AttributeError: `data` cannot be pickled
                (nothing was sent).
        """
        with self._lock:
            if self._finished:
                return False
            self._conn.send((kind, data))
            return True

    def send_last(self, kind: str, data: Any = None) -> bool:
        """Send the protocol's last word (a result); False when a last message already went."""
        with self._lock:
            if self._finished:
                return False
            self._conn.send((kind, data))
            self._finished = True
            return True

    def started(self, data: Any = None) -> None:
        """Tell the parent the work began (ends the start-up limit, starts the silence one)."""
        self.send("started", data)

    def stop_requested(self) -> str | None:
        """Why the parent asked this child to stop (one of `STOP_KINDS`), or None."""
        code = self._flag.value
        return STOP_KINDS[code - 1] if code else None

    def exit(self) -> NoReturn:
        """Leave now: flush, close the pipe, remove the child's temporary folder, skip
        interpreter teardown (TensorFlow's threads can stall a normal exit)."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self._conn.close()
            if self._temp_dir:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
        finally:
            os._exit(0)


def _exit_with_parent(temp_dir: str | None = None) -> None:
    """End this child as soon as its parent process is gone, however it went (a SIGKILL
    of the server or of the CLI included): no orphan keeps running the pipeline.

    `multiprocessing` gives a spawned child a sentinel of its parent that becomes
    ready when the parent dies (no polling, any platform); a daemon thread waits on
    it. Linux's parent-death signal is not used: it follows the parent *thread* that
    started the child, and a Streamlit script thread ends while its run goes on.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - not started by multiprocessing
        return

    def watch() -> None:
        parent.join()
        if temp_dir:  # nobody is left to remove it
            shutil.rmtree(temp_dir, ignore_errors=True)
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, name="pl-parent-watch", daemon=True).start()


def _use_temp_dir(path: str | None) -> None:
    """Send this child's temporary files (AutoGraph writes one `.py` per converted
    function) to its own folder, which goes when the child ends: `os._exit` skips the
    clean-up that would remove them, and a killed child never runs it."""
    if not path:
        return
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path


def _child_main(
    target: Callable[..., Any], args: tuple, conn: Any, flag: Any, temp_dir: str | None = None
) -> None:
    """Entry point of every child: run the target, report a raise, exit."""
    _exit_with_parent(temp_dir)
    _use_temp_dir(temp_dir)
    _run_target(target, args, conn, flag, temp_dir)


# What a spare imports while it waits: TensorFlow (the slow part) and the modules every
# kind of work loads.
SPARE_PRELOAD = (
    "pipeline_core.build",
    "pipeline_core.profile.worker",
    "pipeline_core.preview",
    "pipeline_core.analysis",
)


def _spare_main(tasks: Any, conn: Any, flag: Any, temp_dir: str, ready: Any) -> None:
    """Entry point of a warm spare: import, say so, wait for a target, run it like a child.

    The parent closing `tasks` (a spare it no longer wants) ends the spare.
    """
    _exit_with_parent(temp_dir)
    _use_temp_dir(temp_dir)
    from pipeline_core._tf import tf

    tf()
    for name in SPARE_PRELOAD:
        importlib.import_module(name)
    ready.set()
    try:
        target, args = tasks.recv()
    except (EOFError, OSError):
        shutil.rmtree(temp_dir, ignore_errors=True)
        os._exit(0)
    tasks.close()
    _run_target(target, args, conn, flag, temp_dir)


def _run_target(target: Callable[..., Any], args: tuple, conn: Any, flag: Any, temp_dir) -> None:
    link = Link(conn, flag, temp_dir)
    try:
        target(link, *args)
    except BaseException as exc:  # every failure goes back as a reason
        with contextlib.suppress(Exception):
            data = {"message": describe_error(exc), "traceback": traceback.format_exc()}
            link.send_last("raised", data)
    link.exit()


# --- the parent's side ------------------------------------------------------------------------


class _Flag:
    """Stands in for the shared stop flag where no process shares it (a test's fake child)."""

    value = 0


class Child:
    """A child process watched by the parent. `spawn` makes one and starts its monitor.

    Args:
        process: the child (`pid`, `is_alive()`, `kill()`, `join()`, `exitcode`).
        conn: the parent's end of the one-way pipe (`poll()`, `recv()`, `close()`).
        what: names the work in reasons.
        limits: when to stop the child.
        on_message: `(kind, data) -> bool` for each message ("started" included);
            True when it was the protocol's last word.
        on_end: called once with the `Ending` when the child ends without that word.
        on_poll: called between checks (at least every `POLL_S`), e.g. to save progress.
        flag: the stop flag the child reads (shared memory; a plain one for fakes).
        memory_mb: reads a pid's private memory in MB.
        temp_dir: the child's temporary folder, removed once the child has ended.
        after_end: called once on the monitor thread after everything else, when the
            child has ended (a new warm spare is started there).
    """

    def __init__(
        self,
        process: Any,
        conn: Any,
        *,
        what: str,
        limits: Limits,
        on_message: Callable[[str, Any], bool],
        on_end: Callable[[Ending], None],
        on_poll: Callable[[], None] | None = None,
        flag: Any = None,
        memory_mb: Callable[[int], float] = private_mb,
        temp_dir: str | None = None,
        after_end: Callable[[], None] | None = None,
    ) -> None:
        self.what = what
        self._temp_dir = temp_dir
        self._after_end = after_end
        self.limits = limits
        self._process = process
        self._conn = conn
        self._on_message = on_message
        self._on_end = on_end
        self._on_poll = on_poll
        self._flag = flag if flag is not None else _Flag()
        self._memory_mb = memory_mb
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._asked: str | None = None  # "stopped" or "cancelled", from any thread
        self._stopping: Ending | None = None  # the stop under way (monitor thread)
        self._stop_at = 0.0
        self._spawned_at = time.monotonic()
        self._started_at: float | None = None
        self._last_message = self._spawned_at
        self._ended_at: float | None = None

    # --- public -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def done(self) -> bool:
        """The child has ended, its process is gone and the protocol has its verdict."""
        return self._done.is_set()

    @property
    def started(self) -> bool:
        """The child said "started" (its work began)."""
        return self._started_at is not None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the spawn, frozen once the child has ended."""
        with self._lock:
            end = self._ended_at if self._ended_at is not None else time.monotonic()
        return end - self._spawned_at

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the child has ended; True when it has."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Ask the child to end; it is killed if it has not ended `limits.grace_s` later."""
        with self._lock:
            self._asked = self._asked or "stopped"

    def cancel(self) -> None:
        """End the child now (killed)."""
        with self._lock:
            self._asked = "cancelled"

    # --- the monitor ----------------------------------------------------------------------
    def watch(self) -> None:
        """The monitor loop, until the child has ended (`spawn` runs it on a thread)."""
        try:
            while not self._drain() and not self._check():
                if self._on_poll is not None:
                    self._on_poll()
        except Exception as exc:  # the caller must never be taken down
            self._kill()
            self._end(self._ending("broken", message=describe_error(exc)))
        finally:
            self._cleanup()

    def _drain(self) -> bool:
        """Read every waiting message; True once the child has ended."""
        try:
            if not self._conn.poll(POLL_S):
                return False
            while True:
                kind, data = self._conn.recv()
                self._last_message = time.monotonic()
                if self._receive(kind, data):
                    return True
                if not self._conn.poll(0):
                    return False
        except (EOFError, OSError):  # the child's end closed: it exited or died
            self._process.join(timeout=JOIN_S)
            self._end(self._stopping or self._ending("died", exitcode=self._process.exitcode))
            return True

    def _receive(self, kind: str, data: Any) -> bool:
        if kind == "started" and self._started_at is None:
            self._started_at = time.monotonic()
        if kind == "raised":
            self._end(self._ending("raised", message=data["message"], traceback=data["traceback"]))
            return True
        if self._on_message(kind, data):
            self._end(None)
            return True
        return False

    def _check(self) -> bool:
        """Stops asked for or due, and kills once their grace is over; True once ended."""
        now = time.monotonic()
        if self._stopping is None:
            ending = self._due(now)
            if ending is None:
                return False
            self._stopping, self._stop_at = ending, now
            self._flag.value = STOP_KINDS.index(ending.kind) + 1
        grace = 0.0 if self._stopping.kind == "cancelled" else self.limits.grace_s
        if now - self._stop_at < grace:
            return False
        self._kill()
        self._end(self._stopping)
        return True

    def _due(self, now: float) -> Ending | None:
        """The stop that is due now, if any."""
        with self._lock:
            asked = self._asked
        if asked is not None:
            return self._ending(asked)
        limits = self.limits
        if limits.memory_mb is not None and self._memory_mb(self._process.pid) > limits.memory_mb:
            return self._ending("ceiling", limit=limits.memory_mb)
        if limits.timeout_s is not None and now - self._spawned_at > limits.timeout_s:
            return self._ending("timeout", limit=limits.timeout_s)
        if self._started_at is None:
            if limits.start_s is not None and now - self._spawned_at > limits.start_s:
                return self._ending("timeout", limit=limits.start_s)
        elif limits.silence_s is not None and now - self._last_message > limits.silence_s:
            return self._ending("silent", limit=limits.silence_s)
        return None

    def _ending(self, kind: str, **fields: Any) -> Ending:
        return Ending(kind, self.what, elapsed_s=time.monotonic() - self._spawned_at, **fields)

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=JOIN_S)

    def _end(self, ending: Ending | None) -> None:
        """Record the end once; tell the protocol unless it had the last word (None)."""
        with self._lock:
            if self._ended_at is not None:
                return
            self._ended_at = time.monotonic()
        if ending is not None:
            self._on_end(ending)

    def _cleanup(self) -> None:
        self._process.join(timeout=JOIN_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=JOIN_S)
        self._conn.close()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._end(self._ending("lost"))
        self._done.set()
        if self._after_end is not None:
            with contextlib.suppress(Exception):  # a spare that cannot start is no loss
                self._after_end()


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
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


def spawn(
    target: Callable[..., Any],
    args: tuple = (),
    *,
    what: str,
    on_message: Callable[[str, Any], bool],
    on_end: Callable[[Ending], None],
    on_poll: Callable[[], None] | None = None,
    limits: Limits | None = None,
    needs_main: bool = False,
) -> Child:
    """Start `target(link, *args)` in a "spawn" child and watch it; return at once.

    Args:
        target: a module-level function; `link` is the child's `Link`.
        args: its other arguments (pickled).
        what, on_message, on_end, on_poll: see `Child`.
        limits: when to stop the child (default: no limits).
        needs_main: the target or an argument lives in the parent's `__main__` script,
            so the child must run that script (otherwise it is kept out).
    """
    spare = None if needs_main else _WARM.take()
    if spare is not None:
        try:
            spare.tasks.send((target, tuple(args)))
        except BaseException:
            spare.discard()
            raise
        spare.tasks.close()
        process, receiver, flag, temp_dir = (
            spare.process,
            spare.receiver,
            spare.flag,
            spare.temp_dir,
        )
    else:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        flag = ctx.Value("i", 0, lock=False)
        temp_dir = tempfile.mkdtemp(prefix="pipeline-lab-child-")
        process = ctx.Process(
            target=_child_main,
            args=(target, tuple(args), sender, flag, temp_dir),
            name=f"pipeline-lab-{what}"[:60].replace(" ", "-"),
            daemon=True,
        )
        try:
            with contextlib.nullcontext() if needs_main else _main_hidden():
                process.start()
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        sender.close()  # only the child writes: its death then reads as end-of-file here
    child = Child(
        process,
        receiver,
        what=what,
        limits=limits or Limits(),
        on_message=on_message,
        on_end=on_end,
        on_poll=on_poll,
        flag=flag,
        temp_dir=temp_dir,
        after_end=_WARM.refill,
    )
    threading.Thread(target=child.watch, name="pl-child-monitor", daemon=True).start()
    return child


# --- warm start: one spare child with TensorFlow imported ------------------------------------


_VOLATILE_ENV = ("PYTEST_CURRENT_TEST",)  # changes with every test phase, read by nothing


def _context_now() -> tuple:
    """What a spare must share with the caller to do its work as a new child would."""
    env = {k: v for k, v in os.environ.items() if k not in _VOLATILE_ENV}
    return (env, os.getcwd(), tuple(sys.path))


@dataclass
class _Spare:
    process: Any
    tasks: Any  # the parent's end of the pipe that hands the target over
    receiver: Any  # the parent's end of the child's message pipe
    flag: Any
    temp_dir: str
    ready: Any  # set once the spare has imported everything
    context: tuple

    def usable(self) -> bool:
        return self.process.is_alive() and self.context == _context_now()

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.tasks.close()
        with contextlib.suppress(Exception):
            self.receiver.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=JOIN_S)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class _WarmSpare:
    """The one spare child: started by `keep_warm`, taken by `spawn`, refilled after use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on = False
        self._spare: _Spare | None = None

    def enable(self, on: bool) -> None:
        with self._lock:
            self._on, spare = on, None
            if not on:
                spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()
        if on:
            self.refill()

    def take(self) -> _Spare | None:
        """The spare, if one is ready and fit for the caller's context (then it is theirs).

        A spare still importing stays for the next caller: the work would wait for the
        import anyway, and a spare must not be handed out before it has read its start-up
        arguments (its `ready` event among them).
        """
        with self._lock:
            spare = self._spare
            if spare is None or not spare.ready.is_set():
                return None
            self._spare = None
        if spare.usable():
            return spare
        spare.discard()
        return None

    def refill(self) -> None:
        """Start a spare when on and none waits (or the one waiting no longer fits)."""
        with self._lock:
            if not self._on:
                return
            if self._spare is not None and self._spare.usable():
                return
            stale, self._spare = self._spare, None
        if stale is not None:
            stale.discard()
        spare = _start_spare()
        with self._lock:
            keep = self._on and self._spare is None
            if keep:
                self._spare = spare
        if not keep:
            spare.discard()

    def wait_ready(self, timeout: float | None = None) -> bool:
        with self._lock:
            spare = self._spare
        return spare is not None and spare.ready.wait(timeout)

    def pid(self) -> int | None:
        with self._lock:
            return None if self._spare is None else self._spare.process.pid


def _start_spare() -> _Spare:
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    task_receiver, tasks = ctx.Pipe(duplex=False)
    flag = ctx.Value("i", 0, lock=False)
    ready = ctx.Event()
    temp_dir = tempfile.mkdtemp(prefix="pipeline-lab-child-")
    context = _context_now()
    process = ctx.Process(
        target=_spare_main,
        args=(task_receiver, sender, flag, temp_dir, ready),
        name="pipeline-lab-spare",
        daemon=True,
    )
    try:
        with _main_hidden():
            process.start()
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    sender.close()
    task_receiver.close()
    return _Spare(process, tasks, receiver, flag, temp_dir, ready, context)


_WARM = _WarmSpare()


ENV_WARM = "PIPELINE_LAB_WARM_SPARE"  # "0" turns the dashboard's warm spare off


def keep_warm(on: bool | None = None) -> None:
    """Keep one spare child with TensorFlow imported for the next `spawn` (or stop: the
    waiting spare is ended). None reads `PIPELINE_LAB_WARM_SPARE` (on unless "0"). The
    dashboard calls it on every page run; the command line, one job a process, does not."""
    _WARM.enable(os.environ.get(ENV_WARM, "1") != "0" if on is None else on)


def spare_ready(timeout: float | None = None) -> bool:
    """Whether a spare is waiting with everything imported (waits up to `timeout`)."""
    return _WARM.wait_ready(timeout)


def spare_pid() -> int | None:
    """The process id of the waiting spare, if any (to tell it from a child at work)."""
    return _WARM.pid()
