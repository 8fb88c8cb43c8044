"""Run comparison and the self-contained HTML report."""

from __future__ import annotations

import re

import pytest

from pipeline_core.errors import PipelineLabError
from pipeline_core.report import (
    compare_figures,
    figures_table,
    flatten_spec,
    html_report,
    spec_differences,
)
from pipeline_core.spec import default_spec
from pipeline_core.store import RunRecord


def _record(run_id, name, *, rate, p50, spec=None, status="completed", error=None):
    spec = spec or default_spec().to_dict()
    return RunRecord(
        id=run_id, name=name, created="2026-11-25T06:00:00", status=status, error=error,
        spec=spec, environment={"cpu": "test"},
        summary={"examples_per_s": rate, "latency_ms": {"p50": p50, "p99": p50 * 2},
                 "first_batch_s": 0.5, "batches": 4, "verdict": f"{name} verdict"},
        settings={"max_batches": 4},
        batches={"index": [0, 1, 2, 3], "t_s": [0.5, 0.6, 0.7, 0.8],
                 "wait_ms": [500.0, p50, p50, p50], "examples": [8, 8, 8, 8],
                 "step_ms": [0.0] * 4},
        readings=[{"t": 0.1, "cpu_percent": 80.0, "cpu_share_percent": 40.0,
                   "per_core_percent": [70.0, 90.0], "rss_mb": 200.0, "available_mb": 900.0}],
    )  # fmt: skip


def _faster_spec():
    data = default_spec().to_dict()
    data["steps"][2]["batch_size"] = 64
    data["steps"].append({"op": "cache", "filename": ""})
    return data


def test_ratios_against_the_chosen_baseline_know_which_way_is_better():
    a = _record(1, "slow", rate=1000.0, p50=10.0)
    b = _record(2, "fast", rate=2500.0, p50=4.0)
    rows = {row.figure.key: row for row in compare_figures([a, b], baseline_id=1)}
    assert rows["examples_per_s"].ratios == (1.0, 2.5)
    assert rows["examples_per_s"].verdicts() == ("same", "better")
    assert rows["p50"].ratios == (1.0, 0.4)
    assert rows["p50"].verdicts()[1] == "better"  # lower wait is better
    assert rows["input_bound"].values == (None, None)
    rows = {row.figure.key: row for row in compare_figures([a, b], baseline_id=2)}
    assert rows["examples_per_s"].ratios == (0.4, 1.0)
    assert rows["examples_per_s"].verdicts()[0] == "worse"


def test_figures_table_marks_the_baseline_and_shows_ratios():
    a = _record(1, "slow", rate=1000.0, p50=10.0)
    b = _record(2, "fast", rate=2500.0, p50=4.0)
    table = figures_table([a, b], baseline_id=1)
    throughput = next(r for r in table if r["figure"] == "throughput")
    assert throughput["#1 slow [baseline]"] == "1,000"
    assert throughput["#2 fast"] == "2,500  (×2.50 better)"
    with pytest.raises(PipelineLabError, match="baseline run 9 is not among the compared runs"):
        figures_table([a, b], baseline_id=9)


def test_memory_figures_compare_private_memory_and_leave_file_pages_without_verdict():
    a = _record(1, "old run", rate=1.0, p50=1.0)  # stored before memory kinds: n/a
    b = _record(2, "b", rate=1.0, p50=1.0)
    c = _record(3, "c", rate=1.0, p50=1.0)
    b.summary.update(private_peak_mb=500.0, held_by_pipeline_mb=250.0, private_baseline_mb=250.0,
                     file_peak_mb=900.0, rss_peak_mb=1400.0)  # fmt: skip
    c.summary.update(private_peak_mb=350.0, held_by_pipeline_mb=100.0, private_baseline_mb=250.0,
                     file_peak_mb=1800.0, rss_peak_mb=2150.0)  # fmt: skip
    rows = {row.figure.key: row for row in compare_figures([a, b, c], baseline_id=2)}
    assert rows["held"].values == (None, 250.0, 100.0)
    assert rows["held"].verdicts() == ("", "same", "better")
    assert rows["private"].verdicts()[2] == "better"
    assert rows["file"].verdicts() == ("", "", "")  # page cache is neither better nor worse
    assert rows["rss"].verdicts() == ("", "", "")
    table = {r["figure"]: r for r in figures_table([a, b, c], baseline_id=2)}
    assert table["held by pipeline"]["#1 old run"] == "n/a"
    assert table["held by pipeline"]["#3 c"] == "100  (×0.40 better)"


def test_spec_differences_list_only_changed_fields_by_path():
    a = _record(1, "a", rate=1.0, p50=1.0)
    b = _record(2, "b", rate=1.0, p50=1.0, spec=_faster_spec())
    rows = {r["field"]: r for r in spec_differences([a, b])}
    assert set(rows) == {"steps[2].batch_size", "steps[4].op", "steps[4].filename"}
    assert rows["steps[2].batch_size"]["#1 a"] == "32"
    assert rows["steps[2].batch_size"]["#2 b"] == "64"
    assert rows["steps[4].op"]["#1 a"] == "—"
    assert spec_differences([a, _record(3, "c", rate=1.0, p50=1.0)]) == []
    assert flatten_spec({"source": {"shape": [32, 32, 3]}}) == {"source.shape": [32, 32, 3]}


def test_html_report_is_self_contained_and_escapes_names():
    a = _record(1, "<script>alert(1)</script>", rate=1000.0, p50=10.0)
    b = _record(2, "fast", rate=2500.0, p50=4.0, spec=_faster_spec(), status="failed",
                error="out of memory")  # fmt: skip
    page = html_report([a, b], baseline_id=1)
    assert page.startswith("<!doctype html>")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"<script[^>]+src=", page), "no external scripts: works offline"
    assert page.count("Plotly.newPlot") == 5  # wait, histogram, throughput, cpu, memory
    assert "steps[2].batch_size" in page and "Failed: out of memory" in page
    assert "×2.50 better" in page
    assert "Memory: private = anonymous memory only the pipeline process holds" in page
    single = html_report([a])
    assert "Spec differences" not in single and single.count("Plotly.newPlot") == 5
    with pytest.raises(PipelineLabError, match="at least one run"):
        html_report([])


def test_counts_get_a_ratio_but_no_verdict():
    a = _record(1, "a", rate=1.0, p50=1.0)
    b = _record(2, "b", rate=1.0, p50=1.0)
    b.summary["batches"] = 2
    row = next(r for r in compare_figures([a, b]) if r.figure.key == "batches")
    assert row.ratios == (1.0, 0.5) and row.verdicts() == ("", "")
    table = figures_table([a, b])
    assert next(r for r in table if r["figure"] == "batches")["#2 b"] == "2  (×0.50)"


def test_settings_in_words_and_where_two_runs_differ():
    from dataclasses import replace

    from pipeline_core.report import settings_differences, settings_text

    one = _record(1, "short", rate=100.0, p50=2.0)
    two = replace(
        _record(2, "long", rate=100.0, p50=2.0),
        settings={"max_batches": 4, "step_ms": 20.0, "memory_limit_mb": 4096, "repeat": True},
    )
    assert settings_text(two.settings) == (
        "up to 4 batches · step: 20 ms · memory ceiling 4,096 MB · data repeated to the limit"
    )
    assert settings_text({}) == "default settings"
    rows = settings_differences([one, two])
    assert [r["setting"] for r in rows] == ["simulated step", "memory ceiling", "repeat data"]
    assert rows[0] == {"setting": "simulated step", "#1 short": "none", "#2 long": "20 ms"}
    assert settings_differences([one, one]) == []
    html = html_report([one, two])
    assert "Settings differences" in html and "memory ceiling 4,096 MB" in html


def test_short_settings_fit_a_table_column():
    from pipeline_core.report import settings_text

    settings = {"max_batches": 200, "step_ms": 20.0, "memory_limit_mb": 4096, "repeat": True}
    assert settings_text(settings, short=True) == (
        "≤ 200 batches · step: 20 ms · mem 4.0 GB · repeated"
    )
