"""The one supervisor of child processes: with a fake pipe and process, then real spawns.

The real children here import no TensorFlow, so each starts in well under a second.
"""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from pipeline_core.child import (
    ENDINGS,
    STOP_KINDS,
    Child,
    Ending,
    Limits,
    Link,
    ceiling_reason,
    spawn,
)

# --- fakes: a pipe and a process without a process ------------------------------------------


class FakeConn:
    """The parent's end of a pipe holding scripted messages, then (optionally) end-of-file."""

    def __init__(self, messages=(), *, eof=False):
        self.queue = list(messages)
        self.eof = eof
        self.closed = False

    def poll(self, timeout=0.0):
        if self.queue or self.eof:
            return True
        time.sleep(min(timeout, 0.01))
        return False

    def recv(self):
        if self.queue:
            return self.queue.pop(0)
        raise EOFError

    def close(self):
        self.closed = True


class AnswersStop(FakeConn):
    """A child that ends with its last word once the stop flag is raised."""

    def __init__(self, flag, answer):
        super().__init__([("started", None)])
        self.flag, self.answer = flag, answer

    def poll(self, timeout=0.0):
        if self.flag.value and self.answer:
            self.queue.append(self.answer)
            self.answer = None
        return super().poll(timeout)


class FakeProcess:
    """Alive until killed, or until joined when it exits on its own with `exitcode`."""

    pid = 4242

    def __init__(self, exits_with=None):
        self.alive = True
        self.exits_with = exits_with
        self.exitcode = None
        self.killed = False

    def is_alive(self):
        return self.alive

    def kill(self):
        self.killed, self.alive, self.exitcode = True, False, -9

    def join(self, timeout=None):
        if self.alive and self.exits_with is not None:
            self.alive, self.exitcode = False, self.exits_with


class Protocol:
    """Records what the supervisor tells a protocol; `last` is the kind of its last word."""

    def __init__(self, last="result"):
        self.last = last
        self.messages = []
        self.endings = []
        self.polls = 0

    def on_message(self, kind, data):
        self.messages.append((kind, data))
        return kind == self.last

    def on_end(self, ending):
        self.endings.append(ending)

    def on_poll(self):
        self.polls += 1


def _watched(conn, process=None, *, limits=Limits(), flag=None, memory=0.0, protocol=None):
    """Run the monitor loop to the end, in this thread."""
    protocol = protocol or Protocol()
    child = Child(
        process or FakeProcess(exits_with=0),
        conn,
        what="tracing",
        limits=limits,
        on_message=protocol.on_message,
        on_end=protocol.on_end,
        on_poll=protocol.on_poll,
        flag=flag,
        memory_mb=lambda pid: memory,
    )
    return child, protocol


def _process(child):
    return child._process


def _run(child):
    started = time.monotonic()
    child.watch()
    return time.monotonic() - started


def test_messages_reach_the_protocol_in_order_and_its_last_word_ends_the_child():
    conn = FakeConn([("started", 7), ("progress", 1), ("progress", 2), ("result", "ok")])
    child, protocol = _watched(conn)
    _run(child)
    assert protocol.messages == [("started", 7), ("progress", 1), ("progress", 2), ("result", "ok")]
    assert protocol.endings == []  # the protocol had the last word: no ending
    assert child.done and child.started and conn.closed
    assert not _process(child).killed  # it exited on its own


def test_end_of_file_without_a_last_word_is_a_death_with_the_exit_code():
    child, protocol = _watched(FakeConn([("started", None)], eof=True), FakeProcess(-11))
    _run(child)
    (ending,) = protocol.endings
    assert (ending.kind, ending.exitcode) == ("died", -11)
    assert ending.reason("after 3 batches") == (
        "the pipeline crashed (signal 11 SIGSEGV) during tracing after 3 batches"
    )


def test_a_raise_in_the_child_is_an_ending_with_its_message_and_traceback():
    raised = {"message": "the source is empty; add examples", "traceback": "Traceback ..."}
    child, protocol = _watched(FakeConn([("started", None), ("raised", raised)]))
    _run(child)
    (ending,) = protocol.endings
    assert ending.reason() == "tracing failed: the source is empty; add examples"
    assert ending.traceback == "Traceback ..."
    assert [kind for kind, _ in protocol.messages] == ["started"]  # "raised" is the supervisor's


def test_the_memory_ceiling_stops_and_kills_a_child_that_does_not_end():
    flag = SimpleNamespace(value=0)
    child, protocol = _watched(
        FakeConn([("started", None)]), limits=Limits(memory_mb=200), flag=flag, memory=250.0
    )
    _run(child)
    (ending,) = protocol.endings
    assert (ending.kind, ending.limit) == ("ceiling", 200)
    assert STOP_KINDS[flag.value - 1] == "ceiling"  # the child was told why first
    assert _process(child).killed
    assert ending.reason().startswith("stopped: memory ceiling 200 MB exceeded during tracing")


def test_a_graceful_stop_lets_the_child_have_the_last_word():
    flag = SimpleNamespace(value=0)
    conn = AnswersStop(flag, ("result", "partial"))
    child, protocol = _watched(conn, limits=Limits(grace_s=5.0), flag=flag)
    child.stop()
    took = _run(child)
    assert protocol.messages[-1] == ("result", "partial") and protocol.endings == []
    assert STOP_KINDS[flag.value - 1] == "stopped"
    assert not _process(child).killed and took < 1.0


@pytest.mark.parametrize(("grace", "kind"), [(0.3, "stopped"), (5.0, "cancelled")])
def test_a_child_deaf_to_a_stop_is_killed_after_the_grace_a_cancel_at_once(grace, kind):
    child, protocol = _watched(FakeConn([("started", None)]), limits=Limits(grace_s=grace))
    child.stop() if kind == "stopped" else child.cancel()
    took = _run(child)
    (ending,) = protocol.endings
    assert ending.kind == kind and _process(child).killed
    assert (grace <= took < grace + 0.5) if kind == "stopped" else took < 0.5


@pytest.mark.parametrize(
    ("limits", "messages", "kind", "reason"),
    [
        (
            Limits(timeout_s=0.2),
            [("started", None)],
            "timeout",
            "tracing ran out of time after 0.2 s",
        ),
        (Limits(start_s=0.2, silence_s=5), [], "timeout", "tracing ran out of time after 0.2 s"),
        (
            Limits(start_s=5, silence_s=0.2),
            [("started", None)],
            "silent",
            "the process running tracing stopped responding for 0.2 s",
        ),
    ],
)
def test_time_limits_end_a_stuck_child(limits, messages, kind, reason):
    child, protocol = _watched(FakeConn(messages), limits=limits)
    took = _run(child)
    (ending,) = protocol.endings
    assert ending.kind == kind and ending.reason().startswith(reason)
    assert 0.2 <= took < 1.5 and _process(child).killed
    assert protocol.polls > 0  # the protocol was called between checks (to save progress)


def test_a_failing_protocol_ends_the_child_not_the_caller():
    def broken(kind, data):
        raise RuntimeError("the store is gone")

    protocol = Protocol()
    child = Child(
        FakeProcess(),
        FakeConn([("started", None)]),
        what="tracing",
        limits=Limits(),
        on_message=broken,
        on_end=protocol.on_end,
    )
    _run(child)
    (ending,) = protocol.endings
    assert ending.reason() == "watching tracing failed: RuntimeError: the store is gone"
    assert _process(child).killed and child.done


def test_elapsed_is_frozen_once_the_child_has_ended():
    child, _ = _watched(FakeConn([("result", 1)]))
    _run(child)
    elapsed = child.elapsed_s
    time.sleep(0.05)
    assert child.elapsed_s == elapsed


# --- the vocabulary: one sentence for each way a child ends --------------------------------

ENDING_CASES = {
    "stopped": (
        Ending("stopped", "profiling"),
        "after 3 batches",
        "stopped by request after 3 batches",
    ),
    "cancelled": (
        Ending("cancelled", "tuning", elapsed_s=1.25),
        "",
        "tuning was cancelled after 1.2 s",
    ),
    "ceiling": (
        Ending("ceiling", "profiling", limit=1400),
        "at batch 4",
        "stopped: memory ceiling 1400 MB exceeded at batch 4 (private memory of its process",
    ),
    "timeout": (Ending("timeout", "tuning", limit=1.5), "", "tuning ran out of time after 1.5 s: "),
    "silent": (
        Ending("silent", "profiling", limit=30),
        "after 3 batches",
        "the process running profiling stopped responding for 30 s after 3 batches",
    ),
    "died": (Ending("died", "tracing", exitcode=-9), "", "was killed (signal 9 SIGKILL), usually"),
    "raised": (Ending("raised", "tuning", message="boom"), "", "tuning failed: boom"),
    "broken": (Ending("broken", "tuning", message="x"), "", "watching tuning failed: x"),
    "lost": (Ending("lost", "tuning"), "", "tuning ended without a result"),
}


def test_every_kind_of_ending_has_a_case():
    assert set(ENDING_CASES) == set(ENDINGS)


@pytest.mark.parametrize("kind", list(ENDING_CASES))
def test_each_kind_of_ending_has_its_sentence(kind):
    ending, at, expected = ENDING_CASES[kind]
    assert expected in ending.reason(at)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (-9, "the process running tracing was killed (signal 9 SIGKILL)"),
        (-11, "the pipeline crashed (signal 11 SIGSEGV) during tracing"),
        (-6, "the pipeline aborted (signal 6 SIGABRT) during tracing: a native library"),
        (-15, "the process running tracing was ended by signal 15 SIGTERM"),
        (3, "the process running tracing exited with code 3 without a result"),
    ],
)
def test_exit_reasons_name_the_signal_or_code(code, expected):
    assert Ending("died", "tracing", exitcode=code).reason().startswith(expected)


def test_the_child_side_says_the_ceiling_in_the_same_words():
    ending = Ending("ceiling", "profiling", limit=600)
    assert ending.reason("at batch 2") == ceiling_reason(600, "profiling", "at batch 2")
    assert "raise the ceiling" in ending.reason()


def test_a_link_drops_messages_after_the_last_word_and_reads_the_stop_flag():
    sent = []
    flag = SimpleNamespace(value=0)
    link = Link(SimpleNamespace(send=sent.append), flag)
    assert link.stop_requested() is None
    assert link.send("progress", 1) and link.send_last("result", 2)
    assert not link.send("progress", 3) and not link.send_last("result", 4)
    assert sent == [("progress", 1), ("result", 2)] and link.finished
    flag.value = STOP_KINDS.index("ceiling") + 1
    assert link.stop_requested() == "ceiling"


# --- real children ----------------------------------------------------------------------------


def counts_to(link, n):
    link.started(os.getpid())
    for i in range(n):
        link.send("n", i)
    link.send_last("result", n)


def ends_when_asked(link):
    link.started()
    while link.stop_requested() is None:
        time.sleep(0.01)
    link.send_last("result", link.stop_requested())


def never_ends(link):
    link.started()
    time.sleep(60)


def raises(link):
    raise ValueError("the source is empty; add examples")


def segfaults(link):
    link.started()
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def holds_memory_until_stopped(link):
    held = b"x" * (300 * 1024 * 1024)  # written: private memory
    link.started(len(held))
    while link.stop_requested() is None:
        time.sleep(0.01)
    link.send_last("result", link.stop_requested())


def never_starts(link):
    time.sleep(60)


def _spawned(target, args=(), *, limits=None):
    protocol = Protocol()
    child = spawn(
        target,
        args,
        what="tracing",
        limits=limits,
        on_message=protocol.on_message,
        on_end=protocol.on_end,
    )
    return child, protocol


def test_a_real_child_streams_its_messages_and_result(alive):
    child, protocol = _spawned(counts_to, (3,))
    assert child.wait(30)
    pid = protocol.messages[0][1]
    assert pid == child.pid != os.getpid()
    assert protocol.messages[1:] == [("n", 0), ("n", 1), ("n", 2), ("result", 3)]
    assert protocol.endings == []
    assert not alive(child.pid)


def test_a_real_child_obeys_a_stop_and_a_deaf_one_is_killed(alive):
    polite, protocol = _spawned(ends_when_asked, limits=Limits(grace_s=5))
    _wait_started(polite)
    polite.stop()
    assert polite.wait(5)
    assert protocol.messages[-1] == ("result", "stopped") and protocol.endings == []
    deaf, protocol = _spawned(never_ends, limits=Limits(grace_s=0.3))
    _wait_started(deaf)
    asked = time.monotonic()
    deaf.stop()
    assert deaf.wait(5) and time.monotonic() - asked < 1.5
    assert [e.kind for e in protocol.endings] == ["stopped"]
    assert not alive(deaf.pid)


def test_a_real_child_that_raises_or_crashes_ends_with_the_reason():
    child, protocol = _spawned(raises)
    assert child.wait(30)
    (ending,) = protocol.endings
    assert ending.reason() == "tracing failed: the source is empty; add examples"
    assert "ValueError" in ending.traceback
    child, protocol = _spawned(segfaults)
    assert child.wait(30)
    assert protocol.endings[0].reason().startswith("the pipeline crashed (signal 11 SIGSEGV)")


def test_a_real_child_past_its_ceiling_is_told_why_before_the_kill():
    child, protocol = _spawned(holds_memory_until_stopped, limits=Limits(memory_mb=150, grace_s=5))
    assert child.wait(30)
    assert protocol.messages[-1] == ("result", "ceiling"), protocol.endings
    assert protocol.endings == []


def test_a_real_child_stuck_before_it_starts_is_stopped_at_the_start_limit(alive):
    child, protocol = _spawned(never_starts, limits=Limits(start_s=1.0))
    assert child.wait(30)
    (ending,) = protocol.endings
    assert ending.kind == "timeout" and not alive(child.pid)


def _wait_started(child):
    deadline = time.monotonic() + 30
    while not child.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.started


def writes_temp_files(link, stay):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:  # as AutoGraph does
        f.write("x = 1\n")
    link.started(f.name)
    if stay:
        time.sleep(60)
    link.send_last("result", os.environ["TMPDIR"])


def test_a_childs_temporary_files_go_with_it_however_it_ends(alive):
    for stay in (False, True):  # ends on its own; killed by a cancel
        child, protocol = _spawned(writes_temp_files, (stay,))
        _wait_started(child)
        written = protocol.messages[0][1]
        folder = os.path.dirname(written)
        assert os.path.basename(folder).startswith("pipeline-lab-child-")
        if stay:
            child.cancel()
        assert child.wait(30)
        assert not os.path.exists(written) and not os.path.exists(folder)
        assert not alive(child.pid)
    assert protocol.endings[0].kind == "cancelled"


# --- warm start: the spare child ----------------------------------------------------------------


@pytest.fixture()
def warm():
    from pipeline_core import child

    child.keep_warm(True)
    yield child
    child.keep_warm(False)


def _ready_spare(child) -> int:
    deadline = time.monotonic() + 120
    while not child.spare_ready(1) and time.monotonic() < deadline:
        pass  # a spare is started after the last child ended: wait for it
    assert child.spare_ready(0), "no spare started"
    return child.spare_pid()


def test_the_warm_spare_runs_the_next_target_then_a_new_spare_waits(warm, alive):
    spare = _ready_spare(warm)
    child, protocol = _spawned(counts_to, (2,))
    assert child.wait(30)
    assert protocol.messages[0] == ("started", spare), "the spare ran it"
    assert protocol.messages[-1] == ("result", 2) and protocol.endings == []
    assert not alive(spare), "a spare runs one target and ends"
    second = _ready_spare(warm)
    assert second != spare
    warm.keep_warm(False)
    deadline = time.monotonic() + 10
    while alive(second) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(second), "turning warm start off ends the waiting spare"


def test_a_spare_started_under_another_environment_is_not_used(warm, alive, monkeypatch):
    spare = _ready_spare(warm)
    monkeypatch.setenv("PIPELINE_LAB_SPARE_TEST", "changed")  # e.g. another data dir
    child, protocol = _spawned(counts_to, (1,))
    assert child.wait(60)
    assert protocol.messages[0][1] != spare, "a fresh child ran it"
    deadline = time.monotonic() + 10
    while alive(spare) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(spare), "the unfit spare was ended"


def test_a_target_the_spare_cannot_receive_leaves_it_and_raises(warm, alive):
    spare = _ready_spare(warm)
    with pytest.raises(Exception, match="pickle"):
        _spawned(counts_to, (lambda: 1,))
    assert not alive(spare)


def test_a_spare_still_importing_is_left_for_later_and_the_work_starts_fresh(warm, alive):
    warm.keep_warm(False)
    warm.keep_warm(True)  # a spare starts now: seconds from ready
    starting = warm.spare_pid()
    child, protocol = _spawned(counts_to, (1,))
    assert child.wait(60)
    assert protocol.messages[0][1] != starting, "a fresh child ran it"
    assert protocol.messages[-1] == ("result", 1) and protocol.endings == []
    assert _ready_spare(warm) == starting, "the spare stayed, then got ready"
