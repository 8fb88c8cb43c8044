"""tf.data service servers: a dispatcher and workers, their readings, a local cluster.

A `distribute` step (`pipeline_core.steps`) sends everything before it to tf.data
service workers. This module starts TensorFlow's own servers
(`tf.data.experimental.service.DispatchServer` / `WorkerServer`), nothing home-made:

- `run_dispatcher` / `run_worker` serve in the foreground until SIGTERM or Ctrl-C
  (`python -m pipeline_core serve dispatcher|worker`, on any machine);
- each worker also serves its own readings over HTTP (`/metrics` in Prometheus text
  format through `prometheus_client`, `/json` for the dashboard), so a run can read
  workers on other machines (`read_worker`);
- `LocalCluster` starts a dispatcher and N worker *processes* on this machine for one
  profile run, and stops every one of them afterwards, also when the run fails.

TensorFlow's worker server does not publish how many elements it produced, so the
readings say so (`elements_produced` is None with `elements_note`) rather than guess.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from pipeline_core.errors import PipelineLabError

READY_TIMEOUT_S = 90.0  # a worker process imports TensorFlow before it is ready
_POLL_S = 0.5  # how often a foreground server checks for a stop or a dead parent
HEARTBEAT_MS = 500  # a worker tells its dispatcher it is alive this often
WORKER_TIMEOUT_MS = 3000  # a local dispatcher drops a worker silent this long (a killed one)
ELEMENTS_NOTE = "TensorFlow's worker server does not publish an element count"


class ServiceError(PipelineLabError):
    """A server cannot start: a bad or busy port, an unreachable dispatcher."""


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _check_port(port: int, what: str, flag: str) -> None:
    if not 1 <= port <= 65535:
        raise ServiceError(f"{what} port {port} is not a port: pick one from 1 to 65535 ({flag})")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            raise ServiceError(
                f"{what} port {port} is in use: pick another with {flag}, or stop what holds it"
            ) from None


def _host_port(address: str, flag: str) -> tuple[str, int]:
    """ "HOST:PORT" or "grpc://HOST:PORT" → (host, port)."""
    bare = address.split("://", 1)[-1]
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ServiceError(f"{flag} {address!r} is not HOST:PORT, e.g. {flag} localhost:5050")
    return host, int(port)


def check_dispatcher(address: str, timeout_s: float = 3.0, *, field: str = "--dispatcher") -> str:
    """HOST:PORT of a dispatcher that accepts connections now (`address` may start with
    grpc://); `ServiceError` naming the fix (`field` is where the address was given)
    when none answers within `timeout_s`."""
    host, port = _host_port(address, field)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ServiceError(
            f"cannot reach the dispatcher at {host}:{port} ({reason}): start it first "
            f"with `python -m pipeline_core serve dispatcher --port {port}` on that "
            f"machine, or fix {field} (and any firewall between the machines)"
        ) from None
    return f"{host}:{port}"


# --- a worker's readings ------------------------------------------------------------


class WorkerReadings:
    """This process's readings as a worker serves them: CPU, per-core CPU, RSS, uptime."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.started = time.monotonic()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        psutil.cpu_percent(None, percpu=True)
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        with self._lock:  # psutil's cpu_percent measures since the previous call
            cpu = self.process.cpu_percent(None)
            per_core = psutil.cpu_percent(None, percpu=True)
        return {
            "address": self.address,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "cpu_percent": cpu,
            "cpu_per_core": per_core,
            "rss_mb": self.process.memory_info().rss / 2**20,
            "elements_produced": None,
            "elements_note": ELEMENTS_NOTE,
            "time": time.time(),
        }


def _prometheus_text(readings: dict[str, Any]) -> bytes:
    """The readings in Prometheus text format, written by `prometheus_client`."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    labels = {"address": readings["address"]}

    def gauge(name: str, doc: str, value: float, **extra: str) -> None:
        metric = Gauge(name, doc, [*labels, *extra], registry=registry)
        metric.labels(**labels, **extra).set(value)

    gauge(
        "pipeline_lab_worker_uptime_seconds",
        "Seconds since the worker started",
        readings["uptime_s"],
    )
    gauge("pipeline_lab_worker_cpu_percent", "Process CPU, 100 = one core", readings["cpu_percent"])
    gauge("pipeline_lab_worker_rss_bytes", "Resident memory", readings["rss_mb"] * 2**20)
    per_core = Gauge(
        "pipeline_lab_machine_core_cpu_percent", "CPU of each core", ["address", "core"],
        registry=registry,
    )  # fmt: skip
    for core, value in enumerate(readings["cpu_per_core"]):
        per_core.labels(address=readings["address"], core=str(core)).set(value)
    return generate_latest(registry)


def serve_readings(readings: WorkerReadings, port: int) -> ThreadingHTTPServer:
    """Serve `readings` on `port` (`/metrics`, `/json`) from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/json":
                body, kind = json.dumps(readings.read()).encode(), "application/json"
            elif path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                body, kind = _prometheus_text(readings.read()), CONTENT_TYPE_LATEST
            else:
                self.send_error(404, "try /metrics or /json")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet: one line per poll is noise
            pass

    server = ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pl-metrics", daemon=True).start()
    return server


def read_worker(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """A worker's readings from its `/json` endpoint (`url` may be its base or /json);
    None when it does not answer."""
    base = url.rstrip("/")
    if not base.endswith("/json"):
        base = base.removesuffix("/metrics") + "/json"
    try:
        with urllib.request.urlopen(base, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


# --- foreground servers ---------------------------------------------------------------


def _wait_for_stop(parent_pid: int | None) -> str:
    """Block until SIGTERM / SIGINT, or until `parent_pid` is gone; returns why."""
    stop = threading.Event()
    why: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        why.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(_POLL_S):
        if parent_pid is not None and not psutil.pid_exists(parent_pid):
            return f"its parent {parent_pid} is gone"
    return why[0] if why else "stopped"


def _say(text: str) -> None:
    print(text, flush=True)


def run_dispatcher(port: int, work_dir: str | None = None, *, parent_pid: int | None = None) -> int:
    """Serve a tf.data service dispatcher on `port` until stopped; 0 when stopped."""
    _check_port(port, "dispatcher", "--port")
    from pipeline_core._tf import tf

    service = tf().data.experimental.service
    config = service.DispatcherConfig(port=port, work_dir=work_dir, fault_tolerant_mode=False)
    server = service.DispatchServer(config)
    _say(f"dispatcher ready at grpc://{socket.gethostname()}:{port} (pid {os.getpid()})")
    why = _wait_for_stop(parent_pid)
    server._stop()
    _say(f"dispatcher on port {port} stopped ({why})")
    return 0


def run_worker(
    dispatcher: str,
    port: int,
    worker_address: str | None = None,
    metrics_port: int | None = None,
    *,
    parent_pid: int | None = None,
) -> int:
    """Serve a tf.data service worker of `dispatcher` on `port` until stopped, and its
    readings on `metrics_port` (port + 1000 when None); 0 when stopped."""
    _check_port(port, "worker", "--port")
    metrics_port = port + 1000 if metrics_port is None else metrics_port
    _check_port(metrics_port, "metrics", "--metrics-port")
    address = check_dispatcher(dispatcher)
    worker_address = worker_address or f"{socket.gethostname()}:{port}"
    _host_port(worker_address, "--worker-address")
    readings = WorkerReadings(worker_address)
    http = serve_readings(readings, metrics_port)
    from pipeline_core._tf import tf

    service = tf().data.experimental.service
    config = service.WorkerConfig(
        dispatcher_address=address,
        worker_address=worker_address,
        port=port,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    server = service.WorkerServer(config)
    _say(
        f"worker ready at {worker_address} for dispatcher {address}; readings at "
        f"http://{socket.gethostname()}:{metrics_port}/metrics and /json (pid {os.getpid()})"
    )
    why = _wait_for_stop(parent_pid)
    server._stop()
    http.shutdown()
    _say(f"worker on port {port} stopped ({why})")
    return 0


# --- a local cluster for one run ---------------------------------------------------------


@dataclass(frozen=True)
class LocalWorker:
    address: str  # HOST:PORT the dispatcher hands to consumers
    pid: int
    metrics_url: str


def _serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline_core", "serve", *args, "--parent-pid", str(os.getpid())]


def _wait_ready(proc: subprocess.Popen[str], what: str, deadline: float) -> None:
    """Wait for `proc`'s ready line; raise with its own words when it ends first."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            raise ServiceError(f"{what} was not ready after {READY_TIMEOUT_S:.0f} s") from None
        if line is None:
            said = " ".join(s.strip() for s in seen[-3:]) or f"exit code {proc.wait()}"
            raise ServiceError(f"{what} did not start: {said}")
        seen.append(line)
        if " ready at " in line:
            return


class LocalCluster:
    """A dispatcher (in this process) and `workers` worker processes on this machine.

    Use as a context manager: on exit every worker gets SIGTERM, then SIGKILL after a
    grace period, and the dispatcher stops. Workers also stop by themselves when this
    process dies (`--parent-pid`), so a killed run leaves none behind.
    """

    def __init__(self, workers: int, *, grace_s: float = 3.0) -> None:
        if workers < 1:
            raise ServiceError(f"a local cluster needs at least 1 worker, received {workers}")
        self.count = workers
        self.grace_s = grace_s
        self.workers: list[LocalWorker] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._dispatcher: Any = None
        self.dispatcher_address = ""

    def __enter__(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        from pipeline_core._tf import tf

        service = tf().data.experimental.service
        port = free_port()
        config = service.DispatcherConfig(port=port, worker_timeout_ms=WORKER_TIMEOUT_MS)
        self._dispatcher = service.DispatchServer(config)
        self.dispatcher_address = f"grpc://127.0.0.1:{port}"
        ports = [(free_port(), free_port()) for _ in range(self.count)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        for worker_port, metrics_port in ports:
            command = _serve_command(
                "worker",
                "--dispatcher", f"127.0.0.1:{port}",
                "--port", str(worker_port),
                "--worker-address", f"127.0.0.1:{worker_port}",
                "--metrics-port", str(metrics_port),
            )  # fmt: skip
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            self._procs.append(proc)
            self.workers.append(
                LocalWorker(
                    f"127.0.0.1:{worker_port}", proc.pid, f"http://127.0.0.1:{metrics_port}"
                )
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        for i, proc in enumerate(self._procs):
            _wait_ready(proc, f"local worker {i + 1} of {self.count}", deadline)
        self._wait_registered(deadline)

    def _wait_registered(self, deadline: float) -> None:
        """Until the dispatcher knows every worker (a consumer reads only from those)."""
        while self._dispatcher._num_workers() < self.count:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"only {self._dispatcher._num_workers()} of {self.count} local workers "
                    "registered with the dispatcher"
                )
            time.sleep(0.05)

    def kill_worker(self, index: int) -> None:
        """SIGKILL one worker (to see what a run does when a worker dies)."""
        self._procs[index].kill()
        self._procs[index].wait()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.grace_s
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dispatcher is not None:
            self._dispatcher._stop()
            self._dispatcher = None
