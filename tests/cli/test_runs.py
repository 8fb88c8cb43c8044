"""`python -m pipeline_core profile` and `runs ...` (one real profile run, shared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from pipeline_core.cli import main
from pipeline_core.store import RunStore

SPEC = {
    "name": "cli small",
    "source": {"type": "synthetic", "num_examples": 96, "shape": [8, 8, 3], "seed": 0},
    "steps": [{"op": "batch", "batch_size": 16}, {"op": "prefetch", "buffer_size": 2}],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def profiled(workdir):
    """One `profile` command: its exit code, output, JSON summary and database."""
    spec = workdir / "spec.json"
    spec.write_text(json.dumps(SPEC))
    db = workdir / "runs.sqlite"
    out = workdir / "summary.json"
    argv = ["profile", str(spec), "--batches", "5", "--step-ms", "2"]
    argv += ["--json", str(out), "--db", str(db)]
    with pytest.MonkeyPatch.context() as mp:
        captured = []
        mp.setattr(sys, "stdout", _Tee(captured))
        code = main(argv)
    return code, "".join(captured), json.loads(out.read_text()), db


class _Tee:
    def __init__(self, sink):
        self.sink = sink

    def write(self, text):
        self.sink.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_profile_prints_a_table_and_writes_the_json_summary(profiled):
    code, text, summary, _ = profiled
    assert code == 0, text
    assert "examples/s (steady)" in text and "input-bound" in text
    for key in ("status", "batches", "examples", "first_batch_s", "examples_per_s"):
        assert key in summary
    assert summary["status"] == "completed"
    assert (summary["batches"], summary["examples"]) == (5, 80)
    assert set(summary["latency_ms"]) >= {"p50", "p90", "p99"}
    assert 0 <= summary["input_bound_percent"] <= 100
    assert summary["cpu_percent_mean"] is not None and summary["rss_peak_mb"] > 0
    # memory by kind: private beside RSS, TensorFlow's baseline, what the pipeline held
    assert 0 < summary["private_baseline_mb"] <= summary["private_peak_mb"] < summary["rss_peak_mb"]
    assert summary["held_by_pipeline_mb"] == pytest.approx(
        summary["private_peak_mb"] - summary["private_baseline_mb"]
    )
    assert "held by the pipeline" in text and "(memory: private = anonymous memory" in text


def test_runs_list_show_export_import_rename_delete(profiled, workdir, capsys):
    _, text, summary, db = profiled
    [info] = RunStore(db).list_runs()
    assert f"stored as run {info.id}" in text
    d = ["--db", str(db)]
    assert main(["runs", "list", *d]) == 0
    listing = capsys.readouterr().out
    assert "cli small" in listing and "completed" in listing

    assert main(["runs", "show", str(info.id), *d]) == 0
    shown = capsys.readouterr().out
    assert "tensorflow:" in shown and "examples/s (steady)" in shown

    csv_file, json_file = workdir / "run.csv", workdir / "run.json"
    assert main(["runs", "export", str(info.id), "--format", "csv", "-o", str(csv_file), *d]) == 0
    frame = pd.read_csv(csv_file, comment="#")
    assert frame["examples"].tolist() == [16] * 5
    assert main(["runs", "export", str(info.id), "-o", str(json_file), *d]) == 0
    assert main(["runs", "import", str(json_file), *d]) == 0
    assert "imported" in capsys.readouterr().out
    runs = RunStore(db).list_runs()
    assert len(runs) == 2
    new_id = max(r.id for r in runs)
    assert RunStore(db).get_run(new_id).summary == summary

    assert main(["runs", "rename", str(new_id), "copy", *d]) == 0
    assert RunStore(db).get_run(new_id).name == "copy"
    assert main(["runs", "delete", str(new_id), *d]) == 0
    assert [r.id for r in RunStore(db).list_runs()] == [info.id]


def test_unknown_run_and_bad_spec_end_with_a_message(workdir, capsys):
    db = ["--db", str(workdir / "empty.sqlite")]
    assert main(["runs", "show", "999", *db]) == 2
    assert "no run with id 999" in capsys.readouterr().err
    bad = workdir / "bad.json"
    bad.write_text('{"source": {"type": "nope"}}')
    assert main(["profile", str(bad), "--no-store"]) == 2
    assert "unknown source type" in capsys.readouterr().err


def test_step_options_exclude_each_other(workdir):
    with pytest.raises(SystemExit):
        main(["profile", "x.json", "--step-ms", "5", "--step-model", "small"])


def test_a_failing_pipeline_exits_1_and_is_not_stored_with_no_store(workdir, capsys):
    spec = workdir / "missing.json"
    spec.write_text(
        json.dumps({"source": {"type": "image_folder", "path": str(workdir / "nowhere")}})
    )
    db = workdir / "nostore.sqlite"
    assert main(["profile", str(spec), "--no-store", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "building the pipeline failed" in out
    assert not db.exists()


def test_module_entry_point_lists_runs(profiled):
    db = profiled[3]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "runs", "list", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cli small" in proc.stdout
