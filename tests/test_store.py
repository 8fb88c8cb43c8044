"""The SQLite run store: schema and migrations, interrupted runs, concurrent writers,
dump and import."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3

import pandas as pd
import pytest

from pipeline_core import store as store_mod
from pipeline_core.store import MIGRATIONS, SCHEMA_VERSION, RunStore, StoreError, default_path

# --- helpers run in other processes (module level for "spawn") ----------------------------


def _leave_running(path: str) -> None:
    """Create a run and exit without finishing it (as a killed dashboard would)."""
    RunStore(path).create_run(name="orphan")


def _write_many(path: str, tag: str, start, out) -> None:
    start.wait(30)
    s = RunStore(path)
    ids = []
    for i in range(15):
        run_id = s.create_run(name=f"{tag}-{i}", spec={"name": tag})
        s.append_batches(run_id, [(j, j * 0.01, 1.0, 8, 0.0) for j in range(300)])
        s.append_readings(run_id, [{"t": 0.1 * j, "rss_mb": 100.0 + j} for j in range(5)])
        s.finish_run(run_id, status="completed", summary={"batches": 300})
        ids.append(run_id)
    out.put((tag, ids))


def _spawn():
    return multiprocessing.get_context("spawn")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "runs.sqlite"


def _full_run(s: RunStore) -> int:
    run_id = s.create_run(
        name="baseline",
        spec={"name": "baseline", "steps": []},
        environment={"tensorflow": "2.21.0"},
        settings={"max_batches": 3},
    )
    s.append_batches(run_id, [(0, 0.5, 500.0, 32, 0.0), (1, 0.51, 10.0, 32, 0.0)])
    s.append_batches(run_id, [(2, 0.52, 9.5, 16, 0.0)])
    s.append_readings(run_id, [{"t": 0.0, "rss_mb": 400.0}, {"t": 0.2, "rss_mb": 410.5}])
    s.finish_run(
        run_id,
        status="completed",
        summary={
            "batches": 3,
            "examples_per_s": 2400.0,
            "latency_ms": {"p50": 9.75},
            "input_bound_percent": None,
        },
    )
    return run_id


# --- schema -------------------------------------------------------------------------------


def test_a_new_file_gets_the_latest_schema_in_wal_mode(db):
    s = RunStore(db)
    assert s.schema_version() == SCHEMA_VERSION >= 2
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    RunStore(db)  # opening again is a no-op
    assert s.schema_version() == SCHEMA_VERSION


def test_an_old_file_is_migrated_keeping_its_runs(db):
    with sqlite3.connect(db) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "INSERT INTO runs (name, created, status) VALUES ('old', '2026-01-01', 'completed')"
        )
    s = RunStore(db)
    assert s.schema_version() == SCHEMA_VERSION
    [info] = s.list_runs()
    assert (info.name, info.status) == ("old", "completed")
    # columns added by migration 2 work
    assert s.get_run(info.id).batches["index"] == []
    assert info.held_by_pipeline_mb is None  # stored before memory kinds: unknown, not 0
    new = s.create_run(name="new")
    assert {r.name for r in s.list_runs()} == {"old", "new"} and new != info.id


def test_a_newer_schema_is_refused_with_the_fix(db):
    RunStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer .* use another file with --db"):
        RunStore(db)


def test_a_file_that_is_not_a_database_is_refused(db):
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable run database"):
        RunStore(db)


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_LAB_DB", str(tmp_path / "x.sqlite"))
    assert default_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("PIPELINE_LAB_DB")
    monkeypatch.setenv("PIPELINE_LAB_HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / "runs.sqlite"


# --- interrupted runs and concurrent writers ---------------------------------------------


def test_a_run_left_running_by_a_dead_process_becomes_interrupted(db):
    s = RunStore(db)
    mine = s.create_run(name="mine, still running")
    proc = _spawn().Process(target=_leave_running, args=(str(db),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    statuses = {r.name: (r.status, r.error) for r in RunStore(db).list_runs()}
    status, error = statuses["orphan"]
    assert status == "interrupted"
    assert f"pid {proc.pid}" in error
    assert statuses["mine, still running"] == ("running", None)
    s.finish_run(mine, status="stopped", error="stopped by request after 0 batches")


def test_two_processes_writing_at_once_both_succeed(db):
    RunStore(db)
    ctx = _spawn()
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_write_many, args=(str(db), t, start, out)) for t in "ab"]
    for p in procs:
        p.start()
    start.set()
    written = dict(out.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    s = RunStore(db)
    assert len(s.list_runs()) == 30
    for run_id in written["a"] + written["b"]:
        rec = s.get_run(run_id)
        assert rec.status == "completed"
        assert len(rec.batches["index"]) == 300
        assert len(rec.readings) == 5


def test_a_run_stored_before_memory_kinds_still_charts_and_compares(db):
    from pipeline_core import charts, report

    s = RunStore(db)
    old = s.get_run(_full_run(s))  # readings hold RSS only, the summary no private figures
    new_id = s.create_run(name="new")
    s.append_readings(new_id, [{"t": 0.0, "rss_mb": 900.0, "private_mb": 300.0, "file_mb": 600.0}])
    s.finish_run(new_id, status="completed",
                 summary={"held_by_pipeline_mb": 50.0, "private_baseline_mb": 250.0})  # fmt: skip
    new = s.get_run(new_id)
    figure = charts.memory([charts.RunSeries.from_record(r) for r in (old, new)])
    assert [t.name for t in figure.data] == [
        "#1 baseline (RSS: kinds not measured)", f"#{new_id} new", f"#{new_id} new · file-backed"
    ]  # fmt: skip
    assert charts.RunSeries.from_record(new).baseline_mb == 250.0
    table = {r["figure"]: r for r in report.figures_table([old, new])}
    assert table["held by pipeline"]["#1 baseline [baseline]"] == "n/a"
    assert {i.id: i.held_by_pipeline_mb for i in s.list_runs()} == {old.id: None, new_id: 50.0}


# --- managing runs -------------------------------------------------------------------------


def test_list_get_rename_delete(db):
    s = RunStore(db)
    run_id = _full_run(s)
    [info] = s.list_runs()
    assert (info.id, info.batches, info.examples_per_s, info.latency_p50_ms) == (
        run_id,
        3,
        2400.0,
        9.75,
    )
    rec = s.get_run(run_id)
    assert rec.batches["examples"] == [32, 32, 16]
    assert pd.DataFrame(rec.batches).shape == (3, 5)
    assert pd.DataFrame(rec.readings)["rss_mb"].tolist() == [400.0, 410.5]
    s.rename(run_id, "  renamed  ")
    assert s.get_run(run_id).name == "renamed"
    with pytest.raises(StoreError, match="cannot be empty"):
        s.rename(run_id, " ")
    s.delete(run_id)
    assert s.list_runs() == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
    for call in (lambda: s.get_run(run_id), lambda: s.delete(run_id)):
        with pytest.raises(StoreError, match=f"no run with id {run_id} .* runs list"):
            call()


def test_unknown_status_is_refused(db):
    s = RunStore(db)
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        s.finish_run(s.create_run(name="x"), status="done")


# --- dump and import -----------------------------------------------------------------------


def test_json_dump_import_round_trip(db, tmp_path):
    s = RunStore(db)
    run_id = _full_run(s)
    text = s.dump_json(run_id)
    other = RunStore(tmp_path / "other.sqlite")
    new_id = other.import_json(text)
    a, b = s.get_run(run_id), other.get_run(new_id)
    for name in ("name", "created", "status", "error", "spec", "environment", "summary"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.batches == b.batches and a.readings == b.readings
    assert json.loads(other.dump_json(new_id)) == json.loads(text)


def test_csv_dump_reads_back_with_pandas(db):
    s = RunStore(db)
    text = s.dump_csv(_full_run(s))
    assert "# examples_per_s: 2400.0" in text
    frame = pd.read_csv(io.StringIO(text), comment="#")
    assert list(frame.columns) == list(store_mod.BATCH_COLUMNS)
    assert frame["examples"].tolist() == [32, 32, 16]
    assert frame["wait_ms"].tolist() == [500.0, 10.0, 9.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something"}', "not a Pipeline Lab run export"),
        ('{"format": "pipeline-lab-run", "version": 7, "run": {}}', "export version 7"),
        (
            '{"format": "pipeline-lab-run", "version": 1, "run": {},'
            ' "batches": {"index": [0], "t_s": []}}',
            "differ in length",
        ),
    ],
)
def test_bad_imports_are_refused_with_the_fix(db, text, message):
    with pytest.raises(StoreError, match=message):
        RunStore(db).import_json(text)
