"""Runs: history with filter and sort, rename, delete, compare, downloads, shareable links."""

from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from pages._widgets import page_header, short_number
from pipeline_core import charts, report
from pipeline_core.metrics import MEMORY_NOTE
from pipeline_core.store import STATUSES, RunStore, StoreError

SELECTED = "runs.selected"
LINK = "runs.link"  # the ?run= value last applied to the selection
MISSING = "—"  # a figure the run did not produce (failed early, no step, ...)
NUMBER_FORMATS = {
    "batches": "{:,.0f}",
    "examples/s": "{:,.0f}",
    "p50 wait (ms)": "{:.2f}",
    "input-bound %": "{:.0f}",
    "held (MB)": "{:,.0f}",
}
# report.FIGURES keys of the memory tiles, one tile each
MEMORY_FIGURES = ("held", "private", "baseline", "file", "rss")
SORTS = {
    "newest": ("id", False),
    "oldest": ("id", True),
    "fastest": ("examples/s", False),
    "lowest p50 wait": ("p50 wait (ms)", True),
    "name": ("name", True),
}


# short headers, so the small figure columns show theirs whole at 1280 px; the hover says more
HEADERS = {
    "examples/s": ("ex/s", "Examples per second over the run."),
    "p50 wait (ms)": ("p50 ms", "Median wait for the next batch, in milliseconds."),
    "input-bound %": (
        "input %",
        "Share of the loop spent waiting for input: wait ÷ (wait + step); only with a "
        "simulated training step.",
    ),
    "held (MB)": ("held MB", "Memory held by the pipeline: private peak − private baseline."),
}
SMALL_COLUMNS = ("id", "batches", *HEADERS)


def _small_column(name: str):
    label, text = HEADERS.get(name, (None, None))
    return st.column_config.Column(label, help=text, width="small")


def _history(store: RunStore) -> pd.DataFrame:
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "created": r.created.replace("T", " ")[5:16],  # 12-03 21:17 (the detail has all)
            "status": r.status,
            "batches": r.batches,
            "examples/s": r.examples_per_s,
            "p50 wait (ms)": r.latency_p50_ms,
            "input-bound %": r.input_bound_percent,
            "held (MB)": r.held_by_pipeline_mb,
            "settings": report.settings_text(r.settings, short=True),
            "reason": r.error or "",
        }
        for r in store.list_runs()
    ]
    table = pd.DataFrame(
        rows,
        columns=[
            "id",
            "name",
            "created",
            "status",
            "batches",
            "examples/s",
            "p50 wait (ms)",
            "input-bound %",
            "held (MB)",
            "settings",
            "reason",
        ],
    )
    for column in NUMBER_FORMATS:  # the figure columns
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _requested_ids() -> list[int]:
    """Run ids from the shareable link (`?run=ID` or `?run=ID,ID`)."""
    text = st.query_params.get("run", "")
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"[0-9]{1,18}", part):  # ASCII digits SQLite can hold
            ids.append(int(part))
        elif part:
            st.error(f"The link names run {part[:24]!r}, which is not a run id; use ?run=<number>.")
    return ids


def _filtered(table: pd.DataFrame) -> pd.DataFrame:
    text_col, status_col, sort_col = st.columns([2, 2, 1])
    text = text_col.text_input("Filter by name", key="runs.filter", placeholder="part of a name")
    statuses = status_col.multiselect("Status", STATUSES, key="runs.status")
    sort = sort_col.selectbox("Sort", list(SORTS), key="runs.sort")
    if text:
        table = table[table["name"].str.contains(text, case=False, regex=False)]
    if statuses:
        table = table[table["status"].isin(statuses)]
    column, ascending = SORTS[sort]
    return table.sort_values(column, ascending=ascending, na_position="last")


def _delete(store: RunStore, run_id: int) -> None:
    store.delete(run_id)
    st.session_state[SELECTED] = [i for i in st.session_state.get(SELECTED, []) if i != run_id]
    st.query_params.pop("run", None)


def _rename(store: RunStore, run_id: int) -> None:
    name = st.session_state.get(f"runs.rename.{run_id}", "").strip()
    if name:
        store.rename(run_id, name)


def _run_detail(store: RunStore, record) -> None:
    summary = record.summary or {}
    st.subheader(report.run_label(record))
    st.caption(
        f"{record.status} · {record.created.replace('T', ' ')[:19]} · "
        f"{report.settings_text(record.settings or {})}"
    )
    if record.status == "failed":
        st.error(f"The run failed: {record.error or 'no reason recorded'}")
    elif record.error:
        st.caption(f"Ended: {record.error}")
    if summary.get("verdict"):
        st.info(summary["verdict"])
    _figure_tiles(summary)
    _charts([record], key=f"runs.run{record.id}")
    manage, downloads = st.columns(2)
    with manage:
        st.text_input("Rename", value=record.name, key=f"runs.rename.{record.id}")
        left, right = st.columns(2)
        left.button(
            "Save name",
            key=f"runs.rename_btn.{record.id}",
            on_click=_rename,
            args=(store, record.id),
            icon=":material/edit:",
        )
        right.button(
            "Delete run",
            key=f"runs.delete.{record.id}",
            on_click=_delete,
            args=(store, record.id),
            icon=":material/delete:",
        )
    with downloads:
        _downloads(store, [record])
        st.caption("Shareable link: this page's address, with `?run=" + str(record.id) + "`.")
    with st.expander("Spec"):
        st.code(json.dumps(record.spec, indent=2), language="json")
    with st.expander("Environment"):
        st.json(record.environment or {})


def _figure_tiles(summary: dict) -> None:
    figures = report.key_figures(summary)
    memory = [(f, v) for f, v in figures if f.key in MEMORY_FIGURES]
    for row in (figures[:5], memory):
        tiles = st.columns(5)
        for tile, (figure, value) in zip(tiles, row, strict=True):
            label = f"{figure.label} ({figure.unit})" if figure.unit else figure.label
            tile.metric(label, short_number(value), border=True)
    if summary.get("private_peak_mb") is not None:
        st.caption(f"Memory: {MEMORY_NOTE}.")
    else:
        st.caption(
            "Memory by kind was not measured for this run (stored before it was); "
            "its peak RSS includes pages of mapped files."
        )


def _charts(records: list, *, key: str) -> None:
    series = [charts.RunSeries.from_record(r, name=report.run_label(r)) for r in records]
    figures = charts.run_figures(series)
    names = list(figures)
    for start in range(0, len(names), 2):
        cols = st.columns(2)
        for col, name in zip(cols, names[start : start + 2], strict=False):
            col.plotly_chart(figures[name], key=f"{key}.{name}", width="stretch")
    if "gpu" not in figures:
        st.caption("No GPU readings in these runs (no GPU was available).")


def _downloads(store: RunStore, records: list, baseline_id: int | None = None) -> None:
    ids = "-".join(str(r.id) for r in records)
    cols = st.columns(3 if len(records) == 1 else 1)
    cols[0].download_button(
        "HTML report",
        report.html_report(records, baseline_id=baseline_id),
        file_name=f"pipeline-lab-runs-{ids}.html",
        mime="text/html",
        on_click="ignore",
        key=f"runs.html.{ids}",
        icon=":material/description:",
    )
    if len(records) == 1:
        run_id = records[0].id
        cols[1].download_button(
            "CSV",
            store.dump_csv(run_id),
            file_name=f"run-{run_id}.csv",
            mime="text/csv",
            on_click="ignore",
            key=f"runs.csv.{run_id}",
        )
        cols[2].download_button(
            "JSON",
            store.dump_json(run_id),
            file_name=f"run-{run_id}.json",
            mime="application/json",
            on_click="ignore",
            key=f"runs.json.{run_id}",
        )


def _differences(what: str, rows: list[dict], same: str) -> list[dict]:
    """A titled table of where the runs differ, or `same` when they do not; returns rows."""
    st.markdown(f"**{what} differences**")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption(same)
    return rows


def _compare(store: RunStore, records: list) -> None:
    st.subheader(f"Comparing {len(records)} runs")
    labels = {r.id: report.run_label(r) for r in records}
    baseline = st.selectbox("Baseline", list(labels), format_func=labels.get, key="runs.baseline")
    st.markdown("**Key figures** (ratio against the baseline)")
    table = report.figures_table(records, baseline_id=baseline)
    # Tall enough for every figure: no scrolling inside the table.
    st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * len(table))
    st.caption(f"Memory: {MEMORY_NOTE}.")
    spec_col, settings_col = st.columns(2)
    with spec_col:
        diffs = _differences("Spec", report.spec_differences(records), "The specs are identical.")
    with settings_col:
        settings = _differences(
            "Settings", report.settings_differences(records), "The runs used the same settings."
        )
    if not diffs and not settings:
        st.caption("Same spec, same settings: the differences come from the machine (load, noise).")
    _charts(records, key="runs.compare")
    _downloads(store, records, baseline_id=baseline)


def _import(store: RunStore) -> None:
    with st.expander("Import a run (JSON exported from Pipeline Lab)"):
        upload = st.file_uploader("Run JSON", type=["json"], key="runs.import")
        if upload is not None and st.button("Import", key="runs.import_btn"):
            try:
                run_id = store.import_json(upload.getvalue())
            except StoreError as exc:
                st.error(f"Not imported: {exc}")
            else:
                st.success(f"Imported as run #{run_id}.")


page_header("Runs")
store = RunStore()
table = _history(store)
known = set(table["id"])
requested = _requested_ids()
missing = [i for i in requested if i not in known]
if missing:
    st.error(
        f"Run {', '.join(map(str, missing))} does not exist (deleted, or stored on another "
        "machine); pick a run below or import its JSON."
    )
query = st.query_params.get("run", "")
if st.session_state.get(LINK) != query:  # a link was followed (or first visit): open its runs
    st.session_state[LINK] = query
    st.session_state[SELECTED] = [i for i in requested if i in known]
st.session_state.setdefault(SELECTED, [])
st.session_state[SELECTED] = [i for i in st.session_state[SELECTED] if i in known]

if table.empty:
    st.info("No runs yet. Profile a pipeline on the Profile page; its runs appear here.")
    _import(store)
    st.stop()

shown = _filtered(table)
st.dataframe(
    shown.style.format(NUMBER_FORMATS, na_rep=MISSING),
    hide_index=True,
    placeholder=MISSING,
    width="stretch",
    height=min(38 + 35 * len(shown), 300),
    # figures take what they need, so the settings fit beside them at 1280 px
    column_config={
        **{c: _small_column(c) for c in SMALL_COLUMNS},
        "settings": st.column_config.Column(width="large"),
    },
)
names = dict(zip(table["id"], table["name"], strict=True))
selected = st.multiselect(
    "Open one run, or select two or more to compare",
    list(table["id"]),
    format_func=lambda i: f"#{i} {names[i]}",
    key=SELECTED,
)
_import(store)

if selected:
    st.query_params["run"] = ",".join(map(str, selected))
elif not missing:
    st.query_params.pop("run", None)
st.session_state[LINK] = st.query_params.get("run", "")
records = [store.get_run(i) for i in selected]
if len(records) == 1:
    _run_detail(store, records[0])
elif len(records) > 1:
    _compare(store, records)
