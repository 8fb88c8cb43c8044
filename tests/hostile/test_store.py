"""Hostile run files (issue 10, "run store"): an import is checked whole and goes in
with its series in one transaction; one unreadable stored summary never breaks the list."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from pipeline_core.store import RunStore, StoreError
from tests import REPO


def _good_file(store: RunStore) -> dict:
    run_id = store.create_run(name="baseline", spec={"name": "baseline", "steps": []})
    store.append_batches(run_id, [(0, 0.5, 500.0, 32, 0.0), (1, 0.51, 10.0, 32, 0.0)])
    store.append_readings(run_id, [{"t": 0.0, "rss_mb": 400.0}])
    store.finish_run(
        run_id,
        status="completed",
        summary={"batches": 2, "examples_per_s": 2400.0, "latency_ms": {"p50": 9.75}},
    )
    return json.loads(store.dump_json(run_id))


def _with(data: dict, path: str, value) -> dict:
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


BAD = [
    # (id, path in the run file, value, words of the message)
    ("latency a string", "run.summary.latency_ms.p50", "zzz", "run.summary.latency_ms.p50"),
    ("latency not an object", "run.summary.latency_ms", "zzz", "run.summary.latency_ms"),
    ("throughput a string", "run.summary.examples_per_s", "fast", "examples_per_s"),
    ("batches a list", "run.summary.batches", [1, 2], "run.summary.batches"),
    ("summary a string", "run.summary", "zzz", "run.summary should be an object"),
    ("spec a number", "run.spec", 7, "run.spec should be an object"),
    ("name a number", "run.name", 7, "run.name should be text"),
    ("created not a time", "run.created", "yesterday", "run.created should be an ISO time"),
    ("batch wait a string", "batches.wait_ms", ["a", "b"], "batch column 'wait_ms'"),
    ("batches not columns", "batches", [1, 2], "`batches` should map"),
    ("readings not objects", "readings", [1, 2], "`readings` should be a list"),
    ("reading time a string", "readings", [{"t": "now"}], "`readings` should be a list"),
]


@pytest.mark.parametrize("path, value, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_run_file_is_refused_whole_and_adds_nothing(tmp_path, path, value, words):
    store = RunStore(tmp_path / "runs.sqlite")
    bad = _with(_good_file(store), path, value)
    before = len(store.list_runs())
    with pytest.raises(StoreError) as info:
        store.import_json(json.dumps(bad))
    assert words in str(info.value)
    assert "export the run again" in str(info.value)
    assert len(store.list_runs()) == before


def test_a_null_time_is_imported_as_now_and_the_run_is_whole(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    data = _with(_good_file(store), "run.created", None)
    run_id = store.import_json(json.dumps(data))
    record = store.get_run(run_id)
    assert record.created and record.status == "completed"
    assert record.batches["wait_ms"] == [500.0, 10.0]
    assert len(record.readings) == 1


def test_one_unreadable_stored_summary_does_not_break_the_list(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    _good_file(store)
    broken = store.create_run(name="hand-edited")
    with sqlite3.connect(path) as conn:  # as a hand edit or an older bug would leave it
        conn.execute("UPDATE runs SET summary_json=? WHERE id=?", ('"zzz"', broken))
    other = store.create_run(name="odd figures")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE runs SET summary_json=? WHERE id=?",
            (json.dumps({"latency_ms": "zzz", "examples_per_s": "x", "batches": 3}), other),
        )
    runs = {r.id: r for r in store.list_runs()}
    assert len(runs) == 3
    assert "stored summary cannot be read" in runs[broken].error
    assert runs[other].latency_p50_ms is None and runs[other].examples_per_s is None
    assert runs[other].batches == 3
    env = {"PIPELINE_LAB_DB": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "runs", "list"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "hand-edited" in done.stdout


@pytest.mark.parametrize("run_id", [10**21, -(2**64), 2**63])
def test_an_id_beyond_64_bits_names_no_run(tmp_path, run_id):
    store = RunStore(tmp_path / "runs.sqlite")
    for call in (store.get_run, store.delete, lambda i: store.rename(i, "x")):
        with pytest.raises(StoreError, match="no run with id .* runs list"):
            call(run_id)


@pytest.mark.parametrize("text", ["99999999999999999999999", "-1"])
def test_cli_runs_show_of_an_impossible_id_is_a_user_error(tmp_path, text):
    env = {**os.environ, "PIPELINE_LAB_DB": str(tmp_path / "runs.sqlite")}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "runs", "show", "--", text],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "no run with id" in done.stderr


@pytest.mark.parametrize("link", ["1e21", "99999999999999999999999", "²", "1,,x" * 100, "-3"])
def test_a_runs_link_with_a_bad_id_is_answered_on_the_page(link):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90)
    at.query_params["run"] = link
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not a run id" in e.value or "no run" in e.value for e in at.error), [
        e.value for e in at.error
    ]
