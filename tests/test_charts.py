"""Chart builders: traces per run, honest rolling throughput, GPU only when measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline_core import charts
from pipeline_core.charts import RunSeries, rolling_throughput
from pipeline_core.metrics import GpuReading, Reading


def _series(
    name="run", *, n=20, every_s=0.1, examples=10, gpu=False, kinds=True, baseline=None
) -> RunSeries:
    batches = {
        "index": list(range(n)),
        "t_s": [0.5 + i * every_s for i in range(n)],
        "wait_ms": [200.0] + [every_s * 1000] * (n - 1),
        "examples": [examples] * n,
        "step_ms": [0.0] * n,
    }
    readings = [
        Reading(
            t=i * 0.25,
            cpu_percent=50.0 + i,
            cpu_share_percent=25.0,
            per_core_percent=(10.0, 20.0),
            rss_mb=100.0 + i,
            available_mb=1000.0,
            gpu=GpuReading(40.0, 500.0, 1000.0) if gpu else None,
            private_mb=40.0 + i if kinds else None,
            file_mb=60.0 if kinds else None,
        ).to_dict()
        for i in range(8)
    ]
    return RunSeries(name, batches, readings, baseline)


def test_rolling_throughput_is_exact_for_a_steady_pipeline():
    t = np.arange(0, 3, 0.1) + 0.5
    rate = rolling_throughput(t, np.full(len(t), 10), window_s=1.0)
    assert np.isnan(rate[0])  # no span yet: never a made-up number
    np.testing.assert_allclose(rate[1:], 100.0, rtol=1e-9)


def test_rolling_throughput_follows_a_slowdown():
    t = np.concatenate([np.arange(0, 2, 0.1), 2 + np.arange(1, 11) * 0.5])
    rate = rolling_throughput(t, np.full(len(t), 5), window_s=1.0)
    assert rate[15] == pytest.approx(50.0)
    assert rate[-1] == pytest.approx(10.0)


def test_single_run_figures_have_per_core_and_first_batch_traces():
    figures = charts.run_figures([_series()])
    assert set(figures) == {"wait", "wait_histogram", "throughput", "cpu", "memory"}
    wait = figures["wait"]
    assert [t.name for t in wait.data] == ["wait", "first batch"]
    assert list(wait.data[1].y) == [200.0]
    cpu_names = [t.name for t in figures["cpu"].data]
    assert cpu_names == ["process (100 = 1 core)", "core 0", "core 1"]
    assert list(figures["wait_histogram"].data[0].x) == [100.0] * 19  # first batch left out


def test_the_memory_chart_keeps_private_memory_apart_from_file_pages():
    figure = charts.run_figures([_series(baseline=35.0)])["memory"]
    traces = {t.name: t for t in figure.data}
    assert list(traces) == ["private", "file-backed", "RSS", "TF baseline", "available (right)"]
    assert list(traces["private"].y) == [40.0 + i for i in range(8)]
    assert list(traces["file-backed"].y) == [60.0] * 8
    assert list(traces["RSS"].y) == [100.0 + i for i in range(8)]
    assert list(traces["TF baseline"].y) == [35.0, 35.0]
    assert "private" in figure.layout.title.subtitle.text  # the one-line explanation
    compared = charts.memory([_series("a"), _series("b", kinds=False)])
    assert [t.name for t in compared.data] == [
        "a",
        "a · file-backed",
        "b (RSS: kinds not measured)",
    ]
    assert compared.data[0].line.color == compared.data[1].line.color  # one colour per run
    assert compared.data[1].line.dash == "dot" and not compared.data[1].showlegend


def test_compared_runs_overlay_one_trace_each_and_gpu_only_when_measured():
    runs = [_series("a"), _series("b", gpu=True)]
    figures = charts.run_figures(runs)
    assert [t.name for t in figures["throughput"].data] == ["a · examples/s", "b · examples/s"]
    assert len(figures["cpu"].data) == 2  # no per-core lines when comparing
    assert [t.name for t in figures["gpu"].data] == ["b · utilization %", "b · memory MB"]
    assert charts.gpu([_series()]) is None


def test_series_from_a_live_snapshot_and_a_result():
    from pipeline_core.profile import RunResult, RunSettings, Snapshot

    reading = Reading(0.1, 90.0, 45.0, (80.0, 10.0), 300.0, 2000.0)
    snap = Snapshot(
        status="running", batches=3, examples=30, elapsed_s=0.3, recent_waits_ms=(5.0, 1.0, 1.0),
        throughput=None, latest_reading=reading, readings_count=1, reason=None, done=False,
        waits_ms=(5.0, 1.0, 1.0), batch_times_s=(0.1, 0.2, 0.3), batch_examples=(10, 10, 10),
        readings=(reading,), gpu="no GPU",
    )  # fmt: skip
    series = RunSeries.from_snapshot(snap)
    assert list(series.column("wait_ms")) == [5.0, 1.0, 1.0]
    assert series.readings[0]["rss_mb"] == 300.0
    result = RunResult(
        status="completed", reason=None, end_reason="max_batches", name="r",
        settings=RunSettings(), waits_ns=(2_000_000, 1_000_000), examples=(4, 4),
        ends_ns=(10_000_000, 20_000_000), steps_ns=(0, 0), readings=(reading,),
    )  # fmt: skip
    assert RunSeries.from_snapshot(snap).baseline_mb is None
    series = RunSeries.from_result(result)
    assert series.baseline_mb is None
    from pipeline_core.metrics import ProcessMemory

    based = RunSeries.from_result(replace(result, baseline=ProcessMemory(700.0, 250.0, 450.0)))
    assert based.baseline_mb == 250.0
    assert list(series.column("t_s")) == [0.01, 0.02]
    assert list(series.column("wait_ms")) == [2.0, 1.0]


def test_label_distribution_sorted_by_class():
    figure = charts.label_distribution({3: 2, 0: 5})
    assert list(figure.data[0].x) == ["0", "3"] and list(figure.data[0].y) == [5, 2]
