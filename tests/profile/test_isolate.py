"""Jobs in a child process: return, raise, crash, hang, cancel, stream progress.

The job functions here import no TensorFlow, so each child starts in well under a second.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

import pytest

from pipeline_core.isolate import IsolateError, JobFailed, run_job, start_job


@dataclass(frozen=True)
class Summary:
    total: int
    pid: int


def add_up(n, *, progress, scale=1):
    total = 0
    for i in range(n):
        total += i * scale
        progress({"step": i, "total": total})
    return Summary(total=total, pid=os.getpid())


def raise_value_error(*, progress):
    raise ValueError("the source is empty; add examples")


def raise_zero_division(*, progress):
    return 1 / 0


def segfault(*, progress):
    progress("about to crash")
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def abort(*, progress):
    os.abort()


def hang(*, progress):
    progress("started")
    time.sleep(60)


def unsendable_result(*, progress):
    return lambda: None


def steps_slowly(*, progress, gate):
    for i in range(1000):
        progress(i)
        if i == 2:
            while not os.path.exists(gate):
                time.sleep(0.02)
        time.sleep(0.01)
    return "finished"


def reads_a_mapped_file(path, *, progress):
    """Reads every page of a memory-mapped file (file-backed pages, not private memory)."""
    import numpy as np

    data = np.load(path, mmap_mode="r")
    total = 0.0
    for start in range(0, len(data), 1 << 20):
        total += float(data[start : start + (1 << 20)].sum())
        progress(start)
    return {"rows": len(data), "total": total}


def allocates_forever(*, progress):
    """Holds 50 MB more every 20 ms until it is stopped."""
    import numpy as np

    held = []
    while True:
        held.append(np.ones(50 * 1024 * 1024 // 8))
        progress(len(held))
        time.sleep(0.02)


def test_returns_a_frozen_dataclass_from_another_process():
    job = start_job(add_up, args=(4,), kwargs={"scale": 10}, what="adding")
    value = job.result(timeout=30)
    assert value == Summary(total=60, pid=value.pid) and value.pid != os.getpid()
    state = job.state()
    assert state.ok and state.done and state.reason is None
    assert state.progress == tuple({"step": i, "total": 10 * i * (i + 1) // 2} for i in range(4))


def test_a_raise_becomes_the_reason():
    job = start_job(raise_value_error, what="stage analysis")
    with pytest.raises(JobFailed, match="stage analysis failed: the source is empty; add examples"):
        job.result(timeout=30)
    assert job.state().status == "failed"
    assert "ValueError" in job.traceback
    with pytest.raises(JobFailed, match="tuning failed: ZeroDivisionError: division by zero"):
        run_job(raise_zero_division, what="tuning", timeout_s=30)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (segfault, r"the pipeline crashed \(signal 11 SIGSEGV\) during stage analysis"),
        (abort, r"the pipeline aborted \(signal 6 SIGABRT\) during stage analysis"),
    ],
)
def test_death_by_signal_is_a_failure_with_the_signal_named(fn, expected):
    job = start_job(fn, what="stage analysis", timeout_s=30)
    assert job.wait(30)
    state = job.state()
    assert state.status == "failed"
    assert state.reason is not None and re.search(expected, state.reason)
    with pytest.raises(JobFailed, match=expected):
        job.result()


def test_a_hang_runs_out_of_time_and_the_child_is_gone(alive):
    job = start_job(hang, what="tuning", timeout_s=1.5)
    with pytest.raises(JobFailed, match=r"tuning ran out of time after 1.5 s"):
        job.result(timeout=30)
    assert job.state().progress == ("started",)
    assert not alive(job.pid)


def test_cancel_ends_a_running_job_within_a_second(tmp_path, alive):
    gate = tmp_path / "never"
    job = start_job(steps_slowly, kwargs={"gate": str(gate)}, what="tuning")
    deadline = time.monotonic() + 30
    while len(job.state().progress) < 3 and time.monotonic() < deadline:  # polled, not blocked
        time.sleep(0.02)
    assert job.state().status == "running" and not job.done
    asked = time.monotonic()
    job.cancel()
    assert job.wait(1.5), "cancel should end the job quickly"
    took = time.monotonic() - asked
    assert took < 1.5
    state = job.state()
    assert state.status == "cancelled" and "tuning was cancelled" in state.reason
    assert state.progress == (0, 1, 2)
    assert not alive(job.pid)
    with pytest.raises(JobFailed, match="cancelled"):
        job.result()


def test_progress_streams_while_the_job_runs(tmp_path):
    gate = tmp_path / "gate"
    job = start_job(steps_slowly, kwargs={"gate": str(gate)}, what="tuning")
    deadline = time.monotonic() + 30
    while len(job.state().progress) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.state().progress == (0, 1, 2) and not job.done  # seen before the job ends
    job.cancel()
    job.wait(5)


def test_run_job_passes_progress_in_order():
    seen = []
    value = run_job(add_up, args=(3,), what="adding", on_progress=seen.append, timeout_s=30)
    assert value.total == 3
    assert [m["step"] for m in seen] == [0, 1, 2]


def test_the_memory_ceiling_counts_private_memory_not_mapped_file_pages(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "sparse.npy"  # 400 MB of zeros, written at once (sparse)
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(100 << 20,)).flush()
    value = run_job(reads_a_mapped_file, args=(str(path),), what="reading",
                    memory_limit_mb=200, timeout_s=60)  # fmt: skip
    assert value == {"rows": 100 << 20, "total": 0.0}
    job = start_job(allocates_forever, what="stage analysis", memory_limit_mb=200, timeout_s=60)
    with pytest.raises(
        JobFailed, match="memory ceiling 200 MB exceeded during stage analysis"
    ) as failed:
        job.result(timeout=60)
    assert "raise the ceiling" in failed.value.reason
    assert 2 <= len(job.state().progress) <= 12  # about 200 MB / 50 MB per step, give or take


def test_unsendable_things_are_refused_with_the_fix():
    with pytest.raises(IsolateError, match="module-level function"):
        start_job(lambda progress: None)
    with pytest.raises(IsolateError, match="timeout_s"):
        start_job(add_up, args=(1,), timeout_s=0)
    job = start_job(unsendable_result, what="tuning")
    with pytest.raises(JobFailed, match="cannot be sent back"):
        job.result(timeout=30)
