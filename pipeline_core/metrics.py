"""Readings of a process and the machine: CPU, memory, GPU, sampled on a daemon thread.

`Sampler` takes a `Reading` at a fixed rate (>= 4 Hz by default 5 Hz): process
CPU % (100 = one core) and as a share of all cores, per-core system CPU %, the
process's memory by kind (`process_memory`: RSS, private and file-backed),
available memory, and the GPU through NVML and TensorFlow's allocator. A
machine without a GPU is reported as such (`Reading.gpu is None` and
`Sampler.gpu_status.reason`), never as zeros. `environment()` describes the
machine and library versions for a run record.

Memory kinds: RSS counts every resident page, including pages of files the
process maps (shared libraries, a memory-mapped `.npy`), which the system can
drop and read again. *Private* memory is the anonymous memory only the process
holds (its tensors, buffers, caches); it is what a pipeline really costs and
what memory ceilings apply to. psutil's `uss` is not used for it: it counts the
clean pages of a file mapped by one process as private (a 229 MB memory-mapped
file read once added 229 MB to `uss`), and reading it takes ~12 ms (it walks
`smaps`) against ~0.03 ms for `/proc/PID/status`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import psutil

MB = 1024 * 1024
MEMORY_NOTE = (
    "private = anonymous memory only the pipeline process holds (tensors, buffers, caches; the "
    "memory ceiling applies to it); file-backed = pages of mapped files (libraries, memory-mapped "
    "data) the system can drop and re-read; RSS = both; held by the pipeline = private peak - "
    "TensorFlow's own private memory before the pipeline was built"
)
MIN_CPU_WINDOW_S = 0.05  # shortest span a CPU percentage is computed over (5 clock ticks)


@dataclass(frozen=True)
class GpuStatus:
    """Whether GPU readings are available, and why not when they are not."""

    available: bool
    reason: str = ""
    name: str | None = None
    driver: str | None = None


@dataclass(frozen=True)
class GpuReading:
    """One GPU reading; a field is None when its source cannot tell."""

    utilization_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    tf_current_mb: float | None = None
    tf_peak_mb: float | None = None


@dataclass(frozen=True)
class ProcessMemory:
    """A process's memory by kind, in MB.

    Attributes:
        rss_mb: every resident page (private + file-backed + shared memory).
        private_mb: anonymous memory (resident + swapped out): what the process
            holds itself; memory ceilings apply to it.
        file_mb: resident pages of mapped files (libraries, memory-mapped data),
            which the system can reclaim; None where the platform cannot tell.
    """

    rss_mb: float
    private_mb: float
    file_mb: float | None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ProcessMemory | None:
        """Inverse of `to_dict`; None for missing data (runs stored before the kinds)."""
        if not data or data.get("private_mb") is None:
            return None
        file_mb = data.get("file_mb")
        return cls(
            float(data["rss_mb"]),
            float(data["private_mb"]),
            None if file_mb is None else float(file_mb),
        )


_STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmSwap": "swap"}


def _status_memory(pid: int) -> ProcessMemory | None:
    """From /proc/PID/status (Linux): RssAnon + VmSwap is private, RssFile file-backed."""
    values: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                if name in _STATUS_FIELDS:
                    values[_STATUS_FIELDS[name]] = int(rest.split()[0]) / 1024  # kB -> MB
    except (OSError, ValueError, IndexError):
        return None
    if "anon" not in values or "rss" not in values:  # a kernel before 4.5, or a zombie
        return None
    return ProcessMemory(
        values["rss"], values["anon"] + values.get("swap", 0.0), values.get("file")
    )


def process_memory(pid: int | None = None) -> ProcessMemory:
    """The memory of process `pid` (default: this one) by kind; cheap enough for 50 Hz.

    On Linux it reads `/proc/PID/status`. Elsewhere private memory is the RSS
    (file-backed pages included, so a ceiling there is stricter than on Linux).

    Raises:
        psutil.Error: the process does not exist (any more) or cannot be read.
    """
    pid = pid or os.getpid()
    memory = _status_memory(pid)
    if memory is not None:
        return memory
    rss = psutil.Process(pid).memory_info().rss / MB
    return ProcessMemory(rss, rss, None)


def private_mb(pid: int) -> float:
    """Private memory of `pid` in MB (what memory ceilings compare), 0.0 once it is gone."""
    try:
        return process_memory(pid).private_mb
    except psutil.Error:
        return 0.0


@dataclass(frozen=True)
class Reading:
    """One sample of a process and the machine.

    Attributes:
        t: seconds since the sampler's start (monotonic).
        cpu_percent: process CPU, 100 = one core fully busy (can exceed 100).
        cpu_share_percent: the same as a share of all cores (0-100).
        per_core_percent: system CPU % of each core.
        rss_mb: resident memory of the process (private + file-backed pages).
        available_mb: memory the system can still hand out.
        gpu: GPU reading, or None when no GPU is available (see `GpuStatus`).
        private_mb: anonymous memory the process holds (see `ProcessMemory`);
            None in readings stored before it was measured.
        file_mb: resident pages of mapped files; None where unknown.
    """

    t: float
    cpu_percent: float
    cpu_share_percent: float
    per_core_percent: tuple[float, ...]
    rss_mb: float
    available_mb: float
    gpu: GpuReading | None = None
    private_mb: float | None = None
    file_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-able data (GPU fields prefixed `gpu_`, None when unavailable)."""
        data = asdict(self)
        gpu = data.pop("gpu") or {}
        data["per_core_percent"] = list(self.per_core_percent)
        for name in GpuReading.__dataclass_fields__:
            data[f"gpu_{name}"] = gpu.get(name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reading:
        """Inverse of `to_dict`."""
        gpu_fields = {name: data.get(f"gpu_{name}") for name in GpuReading.__dataclass_fields__}
        has_gpu = any(v is not None for v in gpu_fields.values())
        return cls(
            t=float(data["t"]),
            cpu_percent=float(data["cpu_percent"]),
            cpu_share_percent=float(data["cpu_share_percent"]),
            per_core_percent=tuple(float(v) for v in data.get("per_core_percent") or ()),
            rss_mb=float(data["rss_mb"]),
            available_mb=float(data["available_mb"]),
            gpu=GpuReading(**gpu_fields) if has_gpu else None,
            private_mb=_optional_float(data.get("private_mb")),
            file_mb=_optional_float(data.get("file_mb")),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- GPU -------------------------------------------------------------------------


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Nvml:
    """NVML access for device 0; `status.available` is False with a reason otherwise."""

    def __init__(self) -> None:
        self.handle = None
        self._pynvml = None
        try:
            import pynvml  # optional: nvidia-ml-py
        except ImportError:
            self.status = GpuStatus(False, "no GPU: nvidia-ml-py is not installed")
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                self.status = GpuStatus(False, "no GPU: NVML found no devices")
                return
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.status = GpuStatus(
                True,
                name=_decode(pynvml.nvmlDeviceGetName(self.handle)),
                driver=_decode(pynvml.nvmlSystemGetDriverVersion()),
            )
            self._pynvml = pynvml
        except pynvml.NVMLError as exc:
            self.status = GpuStatus(False, f"no GPU: NVML unavailable ({exc})")

    def read(self) -> tuple[float | None, float | None, float | None]:
        if self._pynvml is None:
            return None, None, None
        nv = self._pynvml
        util = used = total = None
        with contextlib.suppress(nv.NVMLError):
            util = float(nv.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(self.handle)
            used, total = mem.used / MB, mem.total / MB
        except nv.NVMLError:
            pass
        return util, used, total


def _tf_allocator_mb() -> tuple[float | None, float | None]:
    """TensorFlow's GPU:0 allocator (current, peak) in MB when TF is loaded and sees a GPU."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None, None
    try:
        if not tf.config.list_physical_devices("GPU"):
            return None, None
        info = tf.config.experimental.get_memory_info("GPU:0")
    except (ValueError, RuntimeError, AttributeError):
        return None, None
    return info["current"] / MB, info["peak"] / MB


def gpu_status() -> GpuStatus:
    """Whether this machine has a GPU NVML can read (with the reason when not)."""
    return _Nvml().status


# --- the sampler ------------------------------------------------------------------


@dataclass
class _SamplerState:
    readings: list[Reading] = field(default_factory=list)
    error: str | None = None


class Sampler:
    """Samples `pid` (default: this process) and the machine at `hz` on a daemon thread.

    Args:
        pid: process to watch.
        hz: samples per second (1-50).
        on_reading: called on the sampler thread with each new `Reading`.
        gpu: read the GPU (NVML and, if TensorFlow is loaded, its allocator).
        keep: keep readings in memory (`readings()`); off for long runs with a callback.

    Use `start()`/`stop()` or `with Sampler() as s:`; `sample()` takes one reading now.
    CPU percentages always span at least `cpu_window_s` (see `_cpu`): the thread's
    first reading comes one interval after `start()`, and the first `sample()` waits
    out the rest of that window since the sampler was made.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        hz: float = 5.0,
        on_reading: Callable[[Reading], None] | None = None,
        gpu: bool = True,
        keep: bool = True,
    ) -> None:
        if not 1 <= hz <= 50:
            raise ValueError(f"The `hz` argument should be between 1 and 50. Received: hz={hz}")
        self.process = psutil.Process(pid or os.getpid())
        self.interval = 1.0 / hz
        self.on_reading = on_reading
        self.keep = keep
        self.cores = psutil.cpu_count() or 1
        self._nvml = _Nvml() if gpu else None
        self.gpu_status = (
            self._nvml.status if self._nvml else GpuStatus(False, "no GPU: readings turned off")
        )
        self._state = _SamplerState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self.cpu_window_s = max(MIN_CPU_WINDOW_S, 0.5 * self.interval)
        self._cpu_lock = threading.Lock()
        self._cpu_last: tuple[float, tuple[float, ...]] | None = None
        self._prime()

    def _prime(self) -> None:
        """psutil's cpu_percent measures since the previous call: the first is meaningless."""
        self.process.cpu_percent(None)
        psutil.cpu_percent(None, percpu=True)
        self._cpu_since = time.monotonic()

    def _cpu(self) -> tuple[float, tuple[float, ...]]:
        """Process and per-core CPU % over a window of at least `cpu_window_s`.

        CPU times advance in clock ticks (10 ms), so a percentage over a window of
        a millisecond can read thousands of percent. A reading asked for sooner
        than `cpu_window_s` after the previous one repeats the previous figures;
        the first reading waits until the window since priming is full.
        """
        with self._cpu_lock:
            elapsed = time.monotonic() - self._cpu_since
            if elapsed < self.cpu_window_s:
                if self._cpu_last is not None:
                    return self._cpu_last
                time.sleep(self.cpu_window_s - elapsed)
            cpu = self.process.cpu_percent(None)
            per_core = tuple(psutil.cpu_percent(None, percpu=True))
            self._cpu_since = time.monotonic()
            self._cpu_last = (cpu, per_core)
            return self._cpu_last

    def sample(self) -> Reading:
        """Take one reading now (also used by the thread).

        The first reading waits up to `cpu_window_s` so its CPU figures are true.
        """
        cpu, per_core = self._cpu()
        memory = process_memory(self.process.pid)
        available = psutil.virtual_memory().available / MB
        gpu = None
        if self._nvml is not None and self.gpu_status.available:
            util, used, total = self._nvml.read()
            current, peak = _tf_allocator_mb()
            gpu = GpuReading(util, used, total, current, peak)
        return Reading(
            t=time.monotonic() - self._t0,
            cpu_percent=cpu,
            cpu_share_percent=cpu / self.cores,
            per_core_percent=per_core,
            rss_mb=memory.rss_mb,
            available_mb=available,
            gpu=gpu,
            private_mb=memory.private_mb,
            file_mb=memory.file_mb,
        )

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval
        # The first reading comes one full interval after the start, never at once.
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            try:
                reading = self.sample()
            except psutil.Error as exc:
                self._state.error = f"process {self.process.pid} cannot be read: {exc}"
                return
            if self.keep:
                with self._lock:
                    self._state.readings.append(reading)
            if self.on_reading is not None:
                self.on_reading(reading)

    def start(self) -> Sampler:
        """Start the daemon thread (once)."""
        if self._thread is None:
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._loop, name="pl-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and wait for it (at most one interval)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self.interval + 1.0)

    def readings(self) -> list[Reading]:
        """A copy of the readings so far."""
        with self._lock:
            return list(self._state.readings)

    @property
    def error(self) -> str | None:
        """Why the sampler stopped early (the process went away), else None."""
        return self._state.error

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- summaries and the environment ------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _peak(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def summarize_readings(readings: list[Reading] | tuple[Reading, ...]) -> dict[str, Any]:
    """Mean CPU (the process's, and the whole machine's summed over its cores), peak memory
    by kind, minimum available memory and GPU figures (None where unknown)."""
    gpu = [r.gpu for r in readings if r.gpu is not None]
    utils = [g.utilization_percent for g in gpu if g.utilization_percent is not None]
    used = [g.memory_used_mb for g in gpu if g.memory_used_mb is not None]
    tf_peak = [g.tf_peak_mb for g in gpu if g.tf_peak_mb is not None]
    return {
        "cpu_percent_mean": _mean([r.cpu_percent for r in readings]),
        "cpu_share_percent_mean": _mean([r.cpu_share_percent for r in readings]),
        # the whole machine, every process on it (100 = one core busy)
        "machine_cpu_percent_mean": _mean(
            [sum(r.per_core_percent) for r in readings if r.per_core_percent]
        ),
        "rss_peak_mb": max((r.rss_mb for r in readings), default=None),
        "private_peak_mb": _peak(r.private_mb for r in readings),
        "file_peak_mb": _peak(r.file_mb for r in readings),
        "available_min_mb": min((r.available_mb for r in readings), default=None),
        "gpu_utilization_mean": _mean(utils),
        "gpu_memory_peak_mb": max(used, default=None),
        "tf_gpu_memory_peak_mb": max(tf_peak, default=None),
    }


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str | None:
    loaded = sys.modules.get(module)
    if loaded is not None:
        return getattr(loaded, "__version__", None)
    dist = {"tensorflow": "tensorflow", "numpy": "numpy"}[module]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every run (JSON-able)."""
    status = gpu_status()
    return {
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores": psutil.cpu_count(),
        "ram_mb": round(psutil.virtual_memory().total / MB),
        "gpu": status.name,
        "gpu_driver": status.driver,
        "gpu_status": "available" if status.available else status.reason,
    }
