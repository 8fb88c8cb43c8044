"""The readings sampler (in this process: no TensorFlow needed)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import psutil
import pytest

from pipeline_core import metrics
from pipeline_core.metrics import GpuReading, Reading, Sampler, environment, summarize_readings


def test_sampler_reads_at_least_four_times_a_second():
    with Sampler(hz=5) as sampler:
        time.sleep(1.3)
    readings = sampler.readings()
    assert len(readings) >= 5
    times = [r.t for r in readings]
    assert times == sorted(times)
    cores = os.cpu_count()
    for r in readings:
        assert len(r.per_core_percent) == cores
        assert all(0 <= c <= 100 for c in r.per_core_percent)
        assert r.cpu_share_percent == pytest.approx(r.cpu_percent / cores)
        assert r.rss_mb > 10 and r.available_mb > 0


def test_a_known_allocation_shows_in_rss():
    sampler = Sampler(gpu=False)
    before = sampler.sample().rss_mb
    block = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched
    after = sampler.sample().rss_mb
    del block
    assert 300 * 0.9 <= after - before <= 300 * 1.2


def test_private_memory_counts_allocations_and_not_mapped_file_pages(tmp_path):
    before = metrics.process_memory()
    block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB, touched: anonymous memory
    allocated = metrics.process_memory()
    del block
    path = tmp_path / "sparse.npy"  # 200 MB of zeros without writing them
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(50 << 20,)).flush()
    mapped = np.load(path, mmap_mode="r")
    start = metrics.process_memory()
    assert float(mapped.sum()) == 0.0  # every page read: resident, file-backed
    read = metrics.process_memory()
    del mapped
    assert 200 * 0.9 <= allocated.private_mb - before.private_mb <= 200 * 1.2
    assert 200 * 0.9 <= read.file_mb - start.file_mb <= 200 * 1.2
    assert 200 * 0.9 <= read.rss_mb - start.rss_mb <= 200 * 1.2
    assert abs(read.private_mb - start.private_mb) < 50  # the file is not the process's own
    assert metrics.private_mb(os.getpid()) > 10


def test_process_memory_of_a_process_that_is_gone():
    assert metrics.private_mb(2**22 + 12345) == 0.0  # beyond pid_max: never a process
    with pytest.raises(psutil.Error):
        metrics.process_memory(2**22 + 12345)


def test_memory_kinds_without_proc_fall_back_to_rss(monkeypatch):
    monkeypatch.setattr(metrics, "_status_memory", lambda pid: None)
    memory = metrics.process_memory()
    assert memory.private_mb == memory.rss_mb > 10 and memory.file_mb is None


def test_busy_thread_shows_as_process_cpu():
    sampler = Sampler(gpu=False)
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        sum(range(1000))
    busy = sampler.sample()
    assert busy.cpu_percent > 10  # a spinning thread, even on a shared machine


def test_no_gpu_is_reported_as_unavailable_never_as_zeros(monkeypatch):
    pynvml = pytest.importorskip("pynvml")

    def fail():
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    sampler = Sampler()
    assert not sampler.gpu_status.available
    assert sampler.gpu_status.reason.startswith("no GPU: NVML unavailable")
    reading = sampler.sample()
    assert reading.gpu is None
    assert reading.to_dict()["gpu_utilization_percent"] is None


def test_gpu_readings_match_this_machine():
    status = metrics.gpu_status()
    reading = Sampler().sample()
    if status.available:
        assert status.name and status.driver
        assert reading.gpu is not None and reading.gpu.memory_total_mb > 0
    else:
        assert status.reason.startswith("no GPU")
        assert reading.gpu is None


def test_reading_round_trips_through_a_dict():
    plain = Reading(1.5, 120.0, 60.0, (50.0, 70.0), 812.5, 20000.0)
    with_gpu = Reading(
        2.0, 10.0, 5.0, (1.0,), 1.0, 2.0, GpuReading(55.0, 1000.0, 80000.0, 9.0, 12.0)
    )
    with_kinds = Reading(3.0, 1.0, 0.5, (1.0,), 900.0, 2.0, private_mb=300.0, file_mb=600.0)
    for r in (plain, with_gpu, with_kinds):
        assert Reading.from_dict(r.to_dict()) == r


def test_a_reading_stored_before_memory_kinds_reads_as_unknown():
    old = {"t": 0.2, "cpu_percent": 1.0, "cpu_share_percent": 0.5, "per_core_percent": [1.0],
           "rss_mb": 400.0, "available_mb": 900.0}  # fmt: skip
    reading = Reading.from_dict(old)
    assert reading.rss_mb == 400.0 and reading.private_mb is None and reading.file_mb is None
    assert summarize_readings([reading])["private_peak_mb"] is None
    assert metrics.ProcessMemory.from_dict(None) is None
    assert metrics.ProcessMemory.from_dict({"rss_mb": 1.0}) is None


def test_summaries_of_readings():
    rs = [
        Reading(0.0, 100.0, 50.0, (), 500.0, 9000.0),
        Reading(0.2, 50.0, 25.0, (), 700.0, 8000.0, GpuReading(40.0, 100.0, 200.0)),
    ]
    rs.append(Reading(0.4, 0.0, 0.0, (), 650.0, 8500.0, private_mb=400.0, file_mb=250.0))
    s = summarize_readings(rs)
    assert s["private_peak_mb"] == 400.0 and s["file_peak_mb"] == 250.0
    assert s["cpu_percent_mean"] == 50.0 and s["cpu_share_percent_mean"] == 25.0
    assert s["rss_peak_mb"] == 700.0 and s["available_min_mb"] == 8000.0
    assert s["gpu_utilization_mean"] == 40.0 and s["gpu_memory_peak_mb"] == 100.0
    assert summarize_readings([])["rss_peak_mb"] is None
    assert s["machine_cpu_percent_mean"] is None  # no per-core readings
    busy = [Reading(0.0, 10.0, 5.0, (90.0, 70.0), 1.0, 1.0), Reading(1, 10, 5, (50.0, 30.0), 1, 1)]
    assert summarize_readings(busy)["machine_cpu_percent_mean"] == 120.0


def test_environment_names_versions_and_machine():
    env = environment()
    assert env["python"].count(".") == 2
    assert env["numpy"] == np.__version__
    assert env["tensorflow"]
    assert env["cpu_cores"] == os.cpu_count() and env["ram_mb"] > 0
    assert env["cpu_model"]
    assert env["gpu_status"] == "available" or env["gpu_status"].startswith("no GPU")


def test_sampler_rate_is_checked():
    with pytest.raises(ValueError, match="The `hz` argument should be between 1 and 50"):
        Sampler(hz=0)


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


@pytest.fixture()
def busy_thread():
    """A thread spinning in this process while the test runs."""
    stop = threading.Event()
    thread = threading.Thread(target=_spin, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_first_and_rapid_readings_of_a_busy_process_are_true(busy_thread):
    """CPU times move in 10 ms ticks: a reading over a tiny window is 0 or thousands of %."""
    sampler = Sampler(hz=1, gpu=False)  # window 0.5 s
    first = sampler.sample()
    taken = time.monotonic()
    rapid = [sampler.sample()]
    # Only readings well inside the window must repeat: with the spinning thread holding
    # the GIL, 20 calls can take longer than the window on a loaded machine.
    while len(rapid) < 20 and time.monotonic() - taken < 0.2:
        rapid.append(sampler.sample())
    ceiling = 100 * os.cpu_count() + 50
    assert 5 < first.cpu_percent <= ceiling, first.cpu_percent  # a spinning thread shows
    assert all(r.cpu_percent == first.cpu_percent for r in rapid)  # too soon: repeated
    assert all(0 <= c <= 100 for r in rapid for c in r.per_core_percent)


def test_cpu_is_never_measured_over_less_than_the_window(monkeypatch):
    calls: list[float] = []
    original = psutil.Process.cpu_percent

    def recorded(self, interval=None):
        calls.append(time.monotonic())
        return original(self, interval)

    monkeypatch.setattr(psutil.Process, "cpu_percent", recorded)
    sampler = Sampler(hz=10, gpu=False)
    sampler.sample()  # the first reading, right after priming
    with sampler:  # the thread's readings
        time.sleep(0.35)
    sampler.sample()  # right after the thread's last reading
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) >= 3
    assert min(gaps) >= 0.049, gaps  # MIN_CPU_WINDOW_S: 5 clock ticks at least
    assert sampler.cpu_window_s == pytest.approx(0.05)  # half of the 0.1 s interval
