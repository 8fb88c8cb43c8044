"""The scaling study (issue 13): worker counts, the spec per count, what the readings say,
its chart and the `scale` command end to end with two local workers."""

from __future__ import annotations

import json

import pytest

from pipeline_core import charts, cli
from pipeline_core.profile import ProfileError
from pipeline_core.profile.scale import ScalePoint, ScalingStudy, with_workers, worker_counts
from pipeline_core.profile.workers import summarize_workers
from pipeline_core.spec import load_spec

SOURCE = {"type": "synthetic", "num_examples": 640, "shape": [2], "dtype": "float32"}
SLOW = {
    "name": "slow storage",
    "source": SOURCE,
    "steps": [
        {"op": "sleep", "ms": 5},
        {"op": "distribute", "service": "local"},
        {"op": "batch", "batch_size": 8},
    ],
}


def _point(workers, rate, cpu, consumer=20.0):
    return ScalePoint(workers, "completed", None, rate, cpu, consumer, None)


def test_worker_counts_and_the_spec_per_count():
    assert worker_counts("4, 1,2") == (1, 2, 4)
    for bad, said in [("1,x", "not whole numbers"), ("0,2", "1 to 16"), ("2,2", "repeat")]:
        with pytest.raises(ProfileError, match=said):
            worker_counts(bad)
    spec = with_workers(SLOW, 3)
    assert load_spec(spec).steps[1].workers == 3
    assert load_spec(SLOW).steps[1].workers == 2  # the original is left alone
    with pytest.raises(ProfileError, match='"service": "local"'):
        with_workers({"source": SOURCE, "steps": [{"op": "batch", "batch_size": 8}]}, 2)


def test_the_verdict_reads_throughput_and_cpu():
    scales = ScalingStudy((_point(1, 100, 20), _point(2, 195, 40), _point(4, 350, 90)), cores=2)
    assert scales.verdict().startswith("Scales: 4 workers read 3.50× as fast as 1 (88% of ideal)")
    assert scales.ideal(scales.points[2]) == 400
    assert scales.kind() == "scales" and scales.to_dict()["kind"] == "scales"
    cpu_bound = ScalingStudy(
        (_point(1, 100, 95, 30), _point(2, 110, 170, 30), _point(4, 105, 180, 20)), cores=2
    )
    verdict = cpu_bound.verdict()
    assert cpu_bound.kind() == "cpu-bound"
    assert verdict.startswith("CPU-bound: 4 workers read 1.05× as fast as 1")
    assert "cores were 200% busy of 200%" in verdict and "serve worker" in verdict
    stuck = ScalingStudy((_point(1, 100, 10), _point(2, 101, 12)), cores=8)
    assert stuck.kind() == "does not scale"
    assert stuck.verdict().startswith("Does not scale: 2 workers read 1.01× as fast as 1")
    # the workers' own figures undercount (they spent part of the run starting); the
    # machine's cores, read over the run, were busy: CPU-bound, not "does not scale"
    undercounted = ScalingStudy(
        (
            _point(1, 820, 113, 30),
            _point(2, 1100, 90, 30),
            ScalePoint(4, "completed", None, 1101, 94, 30, None, machine_cpu_percent=190.0),
        ),
        cores=2,
    )
    assert undercounted.kind() == "cpu-bound"
    assert "cores were 190% busy of 200%" in undercounted.verdict()
    failed = ScalePoint(2, "failed", "starting the tf.data service failed: x", None, None, None, 1)
    alone = ScalingStudy((_point(1, 100, 10), failed), cores=2)
    assert alone.kind() == "unknown"
    assert "Not enough runs completed" in alone.verdict() and "service failed" in alone.verdict()
    rows = scales.to_dict()["points"]
    assert [round(r["efficiency"], 3) for r in rows] == [1.0, 0.975, 0.875]


def test_charts_of_workers_and_of_scaling():
    samples = [
        {"address": "a:1", "t": 0.5, "up": True, "cpu_percent": 40.0, "rss_mb": 300.0},
        {"address": "b:2", "t": 0.5, "up": True, "cpu_percent": 60.0, "rss_mb": 310.0},
        {"address": "a:1", "t": 1.0, "up": True, "cpu_percent": 50.0, "rss_mb": 320.0},
        {"address": "b:2", "t": 1.0, "up": False},
    ]
    cpu = charts.workers_figure(samples, "cpu")
    assert [trace.name for trace in cpu.data] == ["a:1", "b:2"]
    assert list(cpu.data[1].y) == [60.0, None]  # a gap where the worker stopped answering
    assert list(charts.workers_figure(samples, "rss").data[0].y) == [300.0, 320.0]
    summary = {w["address"]: w for w in summarize_workers(samples)}
    assert summary["a:1"]["cpu_mean_percent"] == 45.0 and summary["a:1"]["rss_peak_mb"] == 320
    assert summary["b:2"]["answered_at_end"] is False
    study = ScalingStudy((_point(1, 100, 20), _point(2, 190, 40)), cores=2).to_dict()
    figure = charts.scaling(study["points"])
    measured, ideal = figure.data
    assert list(measured.y) == [100, 190] and list(ideal.y) == [100, 200]


def test_scale_command_runs_each_count_and_stores_the_runs(tmp_path, capsys):
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(SLOW), encoding="utf-8")
    db, out = tmp_path / "runs.sqlite", tmp_path / "study.json"
    argv = ["scale", str(path), "--workers", "1,2", "--batches", "15", "--db", str(db)]
    assert cli.main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "workers  examples/s" in printed and "compare them on the Runs page" in printed
    study = json.loads(out.read_text())
    assert [p["workers"] for p in study["points"]] == [1, 2]
    assert all(p["status"] == "completed" and p["run_id"] for p in study["points"])
    assert study["points"][0]["speedup"] == 1.0 and study["verdict"]
    assert cli.main(["runs", "list", "--db", str(db)]) == 0
    listed = capsys.readouterr().out
    assert "slow storage · 1 worker" in listed and "slow storage · 2 workers" in listed
