"""AppTest through app.py: every page loads; a short profile run ends with a result;
the Runs page lists, opens (?run=ID), compares, renames and deletes stored runs."""

from __future__ import annotations

import json
import time

import pytest

from pipeline_core.spec import default_spec
from pipeline_core.store import RunStore
from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import settle  # noqa: E402

TIMEOUT = 90
PAGES = ("pages/design.py", "pages/preview.py", "pages/profile.py", "pages/runs.py")


def _app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    kinds = (at.error, at.info, at.success, at.markdown, at.caption, at.subheader)
    return "\n".join(str(e.value) for kind in kinds for e in kind)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_without_exception(page):
    at = _app(page)
    assert at.title[0].value == page.split("/")[1].removesuffix(".py").capitalize()


def test_short_profile_run_ends_with_a_result_and_is_stored():
    at = settle(_app("pages/profile.py"))  # the memory estimate is made in a child first
    assert "press **Start**" in _texts(at)
    at.number_input(key="profile.batches").set_value(12)
    at.selectbox(key="profile.step").set_value("fixed time (ms)").run()
    at.number_input(key="profile.step_ms").set_value(1.0)
    at.button(key="profile.start").click().run()
    assert not at.exception
    assert at.button(key="profile.stop").disabled is False
    deadline = time.monotonic() + 120
    while not at.success and not at.error and time.monotonic() < deadline:
        time.sleep(0.5)  # AppTest cannot fire run_every timers: re-run to poll
        at.run()
    assert not at.exception and not at.error, _texts(at)
    assert "Run completed" in at.success[0].value
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["examples/s"] != "—" and tiles["wait p50"].endswith("ms")
    assert tiles["input-bound"].endswith("%")  # a simulated step gives the share
    assert len(at.get("plotly_chart")) == 5
    assert "No GPU readings" in _texts(at) or len(at.get("plotly_chart")) == 6
    assert "no GPU: " not in _texts(at)  # the reason is not prefixed twice
    assert tiles["estimated buffers"].endswith("MiB")  # the estimate made before the run ...
    assert tiles["peak RSS"].endswith("iB")  # ... beside what the run measured
    assert tiles["held by pipeline"].endswith("iB") and tiles["private peak"].endswith("iB")
    assert "Memory: private = anonymous memory" in _texts(at)
    run = RunStore().list_runs()[0]
    assert (run.status, run.batches) == ("completed", 12)
    stored = RunStore().get_run(run.id).summary
    assert stored["memory_estimate"]["level"] in ("ok", "warn")
    assert stored["memory_estimate"]["total_bytes"] > 0 and stored["rss_peak_mb"] > 0
    assert stored["held_by_pipeline_mb"] is not None and stored["private_baseline_mb"] > 0
    assert run.held_by_pipeline_mb == stored["held_by_pipeline_mb"]
    link = at.get("page_link")[0]
    assert f"#{run.id}" in link.proto.label and f"run={run.id}" in link.proto.query_string


def _stored(store: RunStore, name: str, *, batch_size: int, rate: float) -> int:
    spec = default_spec().to_dict()
    spec["steps"][2]["batch_size"] = batch_size
    run_id = store.create_run(name=name, spec=spec, settings={"max_batches": 3})
    store.append_batches(run_id, [(i, 0.1 * (i + 1), 5.0, batch_size, 0.0) for i in range(3)])
    store.append_readings(run_id, [{"t": 0.1, "cpu_percent": 90.0, "cpu_share_percent": 45.0,
                                    "per_core_percent": [90.0, 0.0], "rss_mb": 300.0,
                                    "available_mb": 4000.0}])  # fmt: skip
    store.finish_run(run_id, status="completed", summary={
        "batches": 3, "examples_per_s": rate, "latency_ms": {"p50": 5.0, "p99": 6.0},
        "first_batch_s": 0.1, "verdict": f"{name} delivers"})  # fmt: skip
    return run_id


@pytest.fixture()
def two_runs():
    store = RunStore()
    ids = [_stored(store, "baseline-b32", batch_size=32, rate=1000.0),
           _stored(store, "bigger-b64", batch_size=64, rate=1500.0)]  # fmt: skip
    yield ids
    for run_id in ids:
        if run_id in {r.id for r in store.list_runs()}:
            store.delete(run_id)


def test_shareable_link_opens_the_run_with_downloads(two_runs):
    at = _app("pages/runs.py", run=str(two_runs[0]))
    assert at.multiselect(key="runs.selected").value == [two_runs[0]]
    assert f"#{two_runs[0]} baseline-b32" in _texts(at)
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["held by pipeline (MB)"] == "—"  # stored without memory kinds
    assert "Memory by kind was not measured for this run" in _texts(at)
    assert "baseline-b32 delivers" in _texts(at)
    labels = {b.label for b in at.get("download_button")}
    assert {"HTML report", "CSV", "JSON"} <= labels
    assert at.query_params["run"] == str(two_runs[0])
    at.query_params["run"] = str(two_runs[1])  # another link followed in the same session
    at.run()
    assert at.multiselect(key="runs.selected").value == [two_runs[1]]
    missing = _app("pages/runs.py", run="999999")
    assert "999999 does not exist" in _texts(missing)


def test_compare_two_runs_shows_ratios_and_spec_differences(two_runs):
    at = _app("pages/runs.py")
    at.multiselect(key="runs.selected").set_value(two_runs).run()
    assert not at.exception
    assert "Comparing 2 runs" in _texts(at)
    figures, diffs = at.dataframe[1].value, at.dataframe[2].value
    row = figures[figures["figure"] == "throughput"].iloc[0]
    assert "×1.50 better" in row[f"#{two_runs[1]} bigger-b64"]
    assert list(diffs["field"]) == ["steps[2].batch_size"]
    at.selectbox(key="runs.baseline").set_value(two_runs[1]).run()
    row = at.dataframe[1].value.iloc[0]
    assert "×0.67 worse" in row[f"#{two_runs[0]} baseline-b32"]
    assert len(at.get("plotly_chart")) == 5
    assert at.query_params["run"] == ",".join(map(str, two_runs))


def test_filter_rename_and_delete(two_runs):
    at = _app("pages/runs.py")
    at.text_input(key="runs.filter").set_value("bigger").run()
    assert list(at.dataframe[0].value["name"]) == ["bigger-b64"]
    at.multiselect(key="runs.selected").set_value([two_runs[1]]).run()
    at.text_input(key=f"runs.rename.{two_runs[1]}").set_value("renamed-b64")
    at.button(key=f"runs.rename_btn.{two_runs[1]}").click().run()
    assert RunStore().get_run(two_runs[1]).name == "renamed-b64"
    at.text_input(key="runs.filter").set_value("").run()
    at.button(key=f"runs.delete.{two_runs[1]}").click().run()
    assert not at.exception
    assert two_runs[1] not in {r.id for r in RunStore().list_runs()}
    assert at.multiselect(key="runs.selected").value == []


def test_dumped_json_imports_back(two_runs):
    text = RunStore().dump_json(two_runs[0])
    at = _app("pages/runs.py")
    at.file_uploader(key="runs.import").set_value(("run.json", text.encode(), "application/json"))
    at.run()
    at.button(key="runs.import_btn").click().run()
    assert "Imported as run #" in _texts(at)
    new_id = max(r.id for r in RunStore().list_runs())
    assert json.loads(RunStore().dump_json(new_id))["run"]["name"] == "baseline-b32"
    RunStore().delete(new_id)


def test_a_failing_pipeline_shows_its_reason_and_the_page_keeps_working(lab_home):
    from pipeline_core.spec import load_spec

    at = _app("pages/profile.py")
    missing = lab_home / "no-such-folder"
    at.session_state["lab.spec"] = load_spec(
        {
            "name": "broken",
            "source": {"type": "image_folder", "path": str(missing)},
            "steps": [{"op": "batch", "batch_size": 4}],
        }  # fmt: skip
    )
    at.number_input(key="profile.batches").set_value(5)
    at.button(key="profile.start").click().run()
    deadline = time.monotonic() + 120
    while not at.success and not at.error and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert at.error, "the failure is shown"
    assert any("no-such-folder" in e.value for e in at.error), [e.value for e in at.error]
    settle(at)  # the Design child's answer: this design cannot be built
    assert at.button(key="profile.start").disabled is True
    assert any(e.value.startswith("Start is off: the design cannot be built") for e in at.error)
    at.switch_page("pages/design.py").run()
    assert not at.exception


def _display_values(frame) -> list[list[str]]:
    """The text a `st.dataframe` of a pandas Styler shows in each cell."""
    import pyarrow as pa

    styler = frame.proto.arrow_data.styler
    return pa.ipc.open_stream(styler.display_values).read_pandas().values.tolist()


def test_missing_figures_show_a_dash_in_the_history(two_runs):
    store = RunStore()
    failed = store.create_run(name="failed-early", spec=default_spec().to_dict(), settings={})
    store.finish_run(failed, status="failed", error="boom", summary={"batches": 0})
    try:
        at = _app("pages/runs.py")
        at.text_input(key="runs.filter").set_value("failed-early").run()
        table = at.dataframe[0]
        assert list(table.value["name"]) == ["failed-early"]
        row = dict(zip(table.value.columns, _display_values(table)[0], strict=True))
        assert row["examples/s"] == row["p50 wait (ms)"] == row["input-bound %"] == "—"
        assert row["held (MB)"] == "—"  # not measured: never a made-up 0
        assert row["batches"] == "0"
        at.text_input(key="runs.filter").set_value("baseline-b32").run()
        shown = dict(zip(at.dataframe[0].value.columns, _display_values(at.dataframe[0])[0],
                         strict=True))  # fmt: skip
        assert shown["examples/s"] == "1,000" and shown["p50 wait (ms)"] == "5.00"
    finally:
        store.delete(failed)


def test_design_null_choices_are_named():
    at = _app("pages/design.py")
    by_label = {s.label: s for s in at.selectbox}
    deterministic = by_label["deterministic"]
    assert deterministic.value is None  # the stored spec value stays null ...
    assert deterministic.options[0] == "default (null)"  # ... but it reads as the default
    assert "null" not in deterministic.options
    parallel = by_label["num parallel calls"]
    assert "sequential (null)" in parallel.options
