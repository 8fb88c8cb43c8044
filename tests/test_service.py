"""tf.data service servers (issue 13): `serve` refuses bad arguments with the fix, a local
cluster of worker processes reads every element once, serves readings and leaves nothing
behind, and a profile run through a local `distribute` step reports its workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import psutil

from pipeline_core import cli
from pipeline_core.build import build
from pipeline_core.profile import RunSettings, profile, start_profile
from pipeline_core.service import LocalCluster, free_port, read_worker
from pipeline_core.sources import build_source
from pipeline_core.spec import SyntheticSource
from pipeline_core.steps import serving_locally
from tests import REPO

SOURCE = {"type": "synthetic", "num_examples": 50, "shape": [2], "dtype": "float32"}


def test_serve_refuses_bad_ports_and_an_unreachable_dispatcher(capsys):
    assert cli.main(["serve", "dispatcher", "--port", "99999"]) == 2
    assert "dispatcher port 99999 is not a port: pick one from 1 to 65535 (--port)" in (
        capsys.readouterr().err
    )
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        busy = held.getsockname()[1]
        assert cli.main(["serve", "dispatcher", "--port", str(busy)]) == 2
        assert f"dispatcher port {busy} is in use: pick another with --port" in (
            capsys.readouterr().err
        )
    closed = free_port()
    code = cli.main(
        ["serve", "worker", "--dispatcher", f"127.0.0.1:{closed}", "--port", str(free_port())]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot reach the dispatcher at 127.0.0.1:{closed}" in err
    assert f"python -m pipeline_core serve dispatcher --port {closed}" in err
    assert cli.main(["serve", "worker", "--dispatcher", "nohost", "--port", "5051"]) == 2
    assert "--dispatcher 'nohost' is not HOST:PORT" in capsys.readouterr().err


def _serve(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "pipeline_core", "serve", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env
    )


def _free(*ports: int) -> bool:
    """Each port can be bound again as a server binds it (SO_REUSEADDR: connections
    closed a moment ago may wait in TIME_WAIT, which does not hold the port)."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("", port))
            except OSError:
                return False
    return True


def test_servers_from_the_cli_serve_a_profile_run_then_stop_on_sigterm():
    port, worker_port = free_port(), free_port()
    dispatcher = _serve("dispatcher", "--port", str(port))
    worker = None
    try:
        assert f"dispatcher ready at grpc://{socket.gethostname()}:{port}" in (
            dispatcher.stdout.readline()
        )
        worker = _serve(
            "worker",
            *("--dispatcher", f"127.0.0.1:{port}", "--port", str(worker_port)),
            *("--worker-address", f"127.0.0.1:{worker_port}"),
        )
        ready = worker.stdout.readline()
        assert f"worker ready at 127.0.0.1:{worker_port} for dispatcher 127.0.0.1:{port}" in ready
        assert f":{worker_port + 1000}/metrics" in ready
        readings = read_worker(f"http://127.0.0.1:{worker_port + 1000}")
        assert readings["pid"] == worker.pid

        spec = {
            "source": SOURCE,
            "steps": [
                {
                    "op": "distribute",
                    "service": f"grpc://127.0.0.1:{port}",
                    "worker_metrics": [f"http://127.0.0.1:{worker_port + 1000}"],
                },
                {"op": "batch", "batch_size": 8},
            ],
        }
        result = profile(spec, settings=RunSettings(max_batches=100, max_seconds=60))
        assert result.status == "completed", result.reason
        assert sum(result.examples) == 50  # one pass, each element once
        (read,) = result.to_summary_dict()["workers"]  # read where the worker serves them
        assert read["address"] == f"127.0.0.1:{worker_port + 1000}" and read["rss_peak_mb"] > 50

        for proc, what in ((worker, "worker"), (dispatcher, "dispatcher")):
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            assert f"{what} on port" in out and "stopped (SIGTERM)" in out
    finally:
        for proc in (worker, dispatcher):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _free(port, worker_port, worker_port + 1000)


def test_an_unreachable_dispatcher_fails_the_run_in_seconds_with_the_fix():
    closed = free_port()
    spec = {
        "source": SOURCE,
        "steps": [{"op": "distribute", "service": f"grpc://127.0.0.1:{closed}"}],
    }
    started = time.monotonic()
    result = profile(spec, settings=RunSettings(max_seconds=60))
    assert result.status == "failed"
    assert f"cannot reach the dispatcher at 127.0.0.1:{closed}" in result.reason
    assert "the distribute step's service" in result.reason
    assert time.monotonic() - started < 30  # a child's start, then at once


def test_local_cluster_reads_every_element_once_serves_readings_and_cleans_up(tf):
    spec = {
        "source": SOURCE,
        "steps": [{"op": "distribute"}, {"op": "batch", "batch_size": 8}],
    }
    with LocalCluster(2) as cluster:
        pids = cluster.pids()
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        with serving_locally(cluster.dispatcher_address):
            values = sorted(float(v) for x, _ in build(spec) for v in x.numpy()[:, 0])
        # What the workers share: the source as built for a distribute step (its values
        # differ from the undistributed source's, which comes in fewer, larger chunks).
        shared = build_source(SyntheticSource(**SOURCE), distributed=True)
        expected = sorted(float(x.numpy()[0]) for x, _ in shared)
        assert len(expected) == 50
        assert values == expected  # distributed_epoch: each of the 50 exactly once

        first = cluster.workers[0]
        readings = read_worker(first.metrics_url)
        assert readings["address"] == first.address and readings["pid"] == first.pid
        assert readings["rss_mb"] > 50 and readings["cpu_percent"] >= 0
        assert len(readings["cpu_per_core"]) == psutil.cpu_count()
        assert readings["elements_produced"] is None and readings["elements_note"]
        with urllib.request.urlopen(first.metrics_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        assert f'pipeline_lab_worker_rss_bytes{{address="{first.address}"}}' in text
        assert 'pipeline_lab_machine_core_cpu_percent{address="' in text

        cluster.kill_worker(1)
        assert read_worker(cluster.workers[1].metrics_url, timeout=0.5) is None
        ports = [int(url.rsplit(":", 1)[1]) for w in cluster.workers for url in
                 (w.address, w.metrics_url)]  # fmt: skip
        ports.append(int(cluster.dispatcher_address.rsplit(":", 1)[1]))
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and _alive(p) for p in pids)
    assert _free(*ports)  # every port is free again


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _serving_workers() -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = proc.info["cmdline"] or []
        if "pipeline_core" in line and "serve" in line and "worker" in line and _alive(proc.pid):
            found.append(proc.pid)
    return found


def test_a_worker_killed_mid_run_never_hangs_the_run():
    spec = {
        "source": {**SOURCE, "num_examples": 4000},
        "steps": [
            {"op": "sleep", "ms": 5},
            {"op": "distribute", "workers": 2},
            {"op": "batch", "batch_size": 10},
        ],
    }
    handle = start_profile(spec, settings=RunSettings(max_seconds=10, repeat=True))
    deadline = time.monotonic() + 120
    while handle.snapshot().batches < 5:
        assert not handle.done, handle.result().reason
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = psutil.Process(handle.pid).children()
    assert len(workers) == 2, workers
    killed = workers[0]
    line = killed.cmdline()
    address = line[line.index("--worker-address") + 1]
    killed.kill()
    assert handle.wait(60), "the run hung after a worker was killed"
    result = handle.result()
    assert result.worker_samples
    workers = {w["address"]: w for w in result.to_summary_dict()["workers"]}
    assert len(workers) == 2 and {a.split(":")[0] for a in workers} == {"127.0.0.1"}
    for worker in workers.values():  # each read while it answered
        assert worker["rss_peak_mb"] > 50 and worker["cpu_mean_percent"] is not None
        assert worker["elements_per_s"] is None  # TensorFlow does not publish the count
    if result.status == "completed":  # the other worker went on ...
        assert workers[address]["answered_at_end"] is False  # ... and the killed one shows
        assert sum(w["answered_at_end"] for w in workers.values()) == 1
    else:
        assert result.status == "failed" and "127.0.0.1:" in result.reason, result.reason
    deadline = time.monotonic() + 10
    while _serving_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _serving_workers()
