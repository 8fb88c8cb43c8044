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
from pipeline_core.profile import RunSettings, profile
from pipeline_core.service import LocalCluster, free_port, read_worker
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


def test_a_foreground_dispatcher_prints_its_address_and_stops_on_sigterm():
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "serve", "dispatcher", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert f"dispatcher ready at grpc://{socket.gethostname()}:{port}" in first
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert f"dispatcher on port {port} stopped (SIGTERM)" in out


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
        expected = sorted(float(x.numpy()[0]) for x, _ in build({"source": SOURCE}))
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
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and _alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_profile_run_through_local_workers_reports_each_worker():
    spec = {
        "source": {**SOURCE, "num_examples": 400},
        "steps": [
            {"op": "sleep", "ms": 5},
            {"op": "distribute", "workers": 2},
            {"op": "batch", "batch_size": 10},
        ],
    }
    result = profile(spec, settings=RunSettings(max_batches=40, max_seconds=60))
    assert result.status == "completed", result.reason
    summary = result.to_summary_dict()
    assert summary["batches"] == 40
    workers = summary["workers"]
    assert len(workers) == 2
    assert {w["address"].split(":")[0] for w in workers} == {"127.0.0.1"}
    for worker in workers:
        assert worker["rss_peak_mb"] > 50
        assert worker["cpu_mean_percent"] is not None
        assert worker["elements_per_s"] is None  # TensorFlow does not publish the count
    assert result.worker_samples
    deadline = time.monotonic() + 10
    while _serving_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _serving_workers()  # the run's worker processes went with it


def _serving_workers() -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = proc.info["cmdline"] or []
        if "pipeline_core" in line and "serve" in line and "worker" in line and _alive(proc.pid):
            found.append(proc.pid)
    return found
