"""Analyze & tune: find the bottleneck of the designed pipeline and fix it in one click.

Every measurement runs as a job in a child process (`pipeline_core.analysis.jobs`):
a pipeline that crashes, runs out of memory or hangs ends as a failure with its
reason, and the dashboard keeps serving. A timed fragment shows the running job.
The tuner's headline, its table and the recommendations come from one result
each and are cross-checked by the core (`analysis.agreement`); the page shows
what it says.
"""

from __future__ import annotations

import sqlite3

import pandas as pd
import streamlit as st

from pages import _jobs, _state
from pages._widgets import bug_message, number_setting, page_header, show_bug
from pipeline_core.analysis import (
    JOBS,
    WINDOW_S,
    agreement,
    figures,
    format_bytes,
    latest_profile_run,
    memory,
    memory_verdict,
    recommendation_checks,
    seeds_of,
    start_analysis,
)
from pipeline_core.errors import PipelineLabError
from pipeline_core.store import RunStore, StoreError

KEY = "analyze."
REFRESH_S = 0.5


# --- the session's analysis job ---------------------------------------------------------


class _Slot:
    """The session's running (or just finished) analysis job: one at a time."""

    def __init__(self) -> None:
        self.job = None
        self.kind: str | None = None
        self.spec_json: str | None = None


def _cancel_slot(slot: _Slot) -> None:
    if slot.job is not None and not slot.job.done:
        slot.job.cancel()


@st.cache_resource(scope="session", on_release=_cancel_slot, show_spinner=False)
def _slot() -> _Slot:
    return _Slot()


def _spec_json() -> str:
    return _state.get_spec().to_json(indent=None)


def _results() -> dict:
    """Results of this page for the current spec (dropped when the design changes)."""
    spec_json = _spec_json()
    if st.session_state.get(KEY + "spec") != spec_json:
        st.session_state[KEY + "spec"] = spec_json
        st.session_state[KEY + "results"] = {"errors": {}}
    return st.session_state[KEY + "results"]


def _options(kind: str, results: dict) -> dict:
    """The job's options, read from this page's widgets."""
    ss = st.session_state
    seconds = float(ss.get(KEY + "seconds", WINDOW_S))
    if kind == "stages":
        return {"seconds": seconds, "rounds": int(ss.get(KEY + "rounds", 1))}
    if kind == "recommend":
        stages = results.get("stages")
        return {"seconds": seconds, "stages": stages.report if stages else None}
    if kind == "tune":
        return {
            "budget_s": float(ss.get(KEY + "budget", 60)),
            "trial_seconds": float(ss.get(KEY + "trial_s", WINDOW_S)),
            "tune_batch_size": bool(ss.get(KEY + "batch", False)),
            "allow_reorder": bool(ss.get(KEY + "reorder", False)),
            "seeds": seeds_of(results.get("recommend") or ()),
        }
    return {}


def _start(kind: str) -> None:
    """Button callback: start job `kind` on the current spec (before the script reruns)."""
    results, slot = _results(), _slot()
    if slot.job is not None and not slot.job.done:
        return
    results["errors"].pop(kind, None)
    try:
        slot.job = start_analysis(kind, _state.get_spec(), **_options(kind, results))
    except PipelineLabError as exc:
        results["errors"][kind] = f"{JOBS[kind].what} could not start: {exc}"
        slot.job = None
        return
    except Exception as exc:
        results["errors"][kind] = bug_message(f"Starting {JOBS[kind].what}", exc)
        slot.job = None
        return
    slot.kind, slot.spec_json = kind, _spec_json()


def _cancel() -> None:
    job = _slot().job
    if job is not None:
        job.cancel()
        job.wait(2.0)


def _collect(results: dict) -> bool:
    """Move a finished job's result (or failure) into `results`; True while a job runs."""
    slot = _slot()
    job = slot.job
    if job is None:
        return False
    if not job.done:
        return True
    state = job.state()
    if slot.spec_json == st.session_state.get(KEY + "spec"):
        if state.ok:
            results[slot.kind] = job.result(timeout=0)
        else:
            results["errors"][slot.kind] = (state.status, state.reason)
    slot.job = None
    return False


def _start_button(kind: str, label: str, running: bool, **kwargs) -> None:
    st.button(
        label, key=KEY + "run_" + kind, on_click=_start, args=(kind,), disabled=running, **kwargs
    )


def _live(kind: str, results: dict) -> bool:
    """Live progress of the job when it is of `kind`, and its failure; True while it runs."""
    slot = _slot()
    if slot.job is not None and slot.kind == kind:
        _job_view()
        return True
    failure = results["errors"].get(kind)
    if failure is not None:
        status, reason = failure if isinstance(failure, tuple) else ("failed", failure)
        show = st.info if status == "cancelled" else st.error
        show(reason[:1].upper() + reason[1:], icon=":material/error:")
    return False


@st.fragment(run_every=REFRESH_S)
def _job_view() -> None:
    """Progress bar, the rows measured so far and Cancel; redrawn twice a second."""
    job = _slot().job
    if job is None or job.done:
        st.rerun()  # redraw the whole page once, with the results
    state = job.state()
    latest = state.latest
    if latest is None:
        text, fraction = f"starting a process for {job.what} (loading TensorFlow)", 0.0
    else:
        text, fraction = latest.text, latest.fraction
    bar, cancel = st.columns([6, 1], vertical_alignment="bottom")
    bar.progress(min(max(fraction, 0.0), 1.0), text=f"{text} · {state.elapsed_s:.0f} s")
    cancel.button(
        "Cancel", key=KEY + "cancel", icon=":material/stop:", on_click=_cancel, width="stretch"
    )
    rows = [p.row for p in state.progress if p.row]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=KEY + "live_rows")


# --- sections -------------------------------------------------------------------------------


def _apply(spec, message: str) -> None:
    _state.replace_spec(spec)  # also re-syncs the Design page's widgets
    st.session_state[KEY + "applied"] = message


def _stages_section(results: dict, running: bool) -> None:
    st.subheader("Stages: where the time goes")
    slider, rounds, button = st.columns([3, 1, 1], vertical_alignment="bottom")
    slider.slider(
        "Seconds timed per stage",
        0.1,
        3.0,
        step=0.1,
        key=_state.kept(KEY + "seconds", WINDOW_S),
        help="Each prefix of the pipeline (source, + each step) is timed this long, "
        "pulled inside TensorFlow; then the whole pipeline as a Python loop pulls it.",
    )
    number_setting(
        rounds,
        "Rounds",
        key=KEY + "rounds",
        default=1,
        minimum=1,
        maximum=5,
        step=1,
        help="Time every row this many times, round after round, and keep the median.",
    )
    with button:
        _start_button("stages", "Analyze stages", running, type="primary", width="stretch")
    if _live("stages", results):
        return
    found = results.get("stages")
    if found is None:
        st.info("Time each stage to find the slowest one.")
        return
    report, limit = found.report, found.limit
    worst = report.bottleneck()
    st.markdown(
        f"**Slowest stage: {worst.label}** — adds {worst.added_us_per_example:,.0f} µs per "
        f"example, {report.share(worst):.0%} of the time. The pipeline delivers "
        f"{report.delivered.examples_per_s:,.0f} examples/s to a Python loop "
        f"({report.final.examples_per_s:,.0f} examples/s of its own work, drained)."
    )
    if report.consumer_bound():
        st.warning(
            f"The consumer's Python loop adds {report.consumer.added_us_per_example:,.0f} µs "
            "per example, more than any stage: batch the data (or use a larger batch) so "
            "each pull carries more examples.",
            icon=":material/warning:",
        )
    chart, gauge = st.columns([2, 1])
    chart.plotly_chart(figures.stage_waterfall(report), key=KEY + "waterfall")
    chart.caption(
        "Each prefix is timed drained (pulled inside TensorFlow), so Python's cost of "
        "pulling an element is not charged to the steps before batch; the grey row is that "
        "cost, paid once, where a training loop pays it."
    )
    gauge.plotly_chart(figures.machine_gauge(limit), key=KEY + "gauge")
    gauge.markdown(f"**Machine limit:** {limit.verdict()}.")
    consumer = limit.consumer_examples_per_s
    gauge.caption(
        f"One copy of the whole pipeline per core, each on one thread, side by side: "
        f"{limit.cores_limit_examples_per_s:,.0f} examples/s on {limit.cores} cores "
        f"({limit.single_core_examples_per_s:,.0f} a core)."
        + (f" A Python loop pulls ready elements at {consumer:,.0f}." if consumer else "")
    )


def _recommendations_section(results: dict, running: bool) -> None:
    st.subheader("Recommendations")
    _start_button("recommend", "Find recommendations", running)
    if _live("recommend", results):
        return
    recs = results.get("recommend")
    if recs is None:
        hint = "" if results.get("stages") else " Analyze stages first for stage-based rules."
        st.info("Each rule's fix is measured before it is offered." + hint)
        return
    if not recs:
        st.success("No recommendation: none of the measured fixes helps this pipeline.")
    for i, rec in enumerate(recs):
        text, action = st.columns([5, 1], vertical_alignment="center")
        gain = f"{rec.gain():.2f}× examples/s" if rec.kind == "speed" else rec.benefit
        text.markdown(
            f"**{rec.title}** — {gain}  \n{rec.reason}. "
            f"*Measured {rec.examples_per_s:,.0f} vs {rec.baseline_examples_per_s:,.0f} "
            "examples/s as written.*"
        )
        if rec.kind == "quality":
            text.caption(f"Measured throughput with the fix: {rec.gain():.2f}×.")
        if action.button("Apply", key=f"{KEY}apply_rec_{i}", disabled=running, width="stretch"):
            _apply(rec.apply(), f"Applied: {rec.title}.")
            st.rerun()
    if recs and results.get("tune") is None:
        st.caption("Tune next: the tuner starts from these fixes and re-measures the best.")


def _tuner_section(results: dict, running: bool) -> None:
    st.subheader("Auto-tune")
    budget_col, trial_col, batch_col, order_col, button = st.columns(
        [2, 2, 1.2, 1.2, 1.2], vertical_alignment="bottom"
    )
    budget_col.slider(
        "Budget (s)",
        5,
        300,
        key=_state.kept(KEY + "budget", 60),
        help="Search and re-measurement together.",
    )
    trial_col.slider(
        "Seconds per trial",
        0.1,
        3.0,
        step=0.1,
        key=_state.kept(KEY + "trial_s", WINDOW_S),
        help="Timed window of each trial and re-measurement, after a warm-up.",
    )
    batch_col.checkbox("Tune batch size", key=_state.kept(KEY + "batch", False))
    order_col.checkbox("Allow reordering", key=_state.kept(KEY + "reorder", False))
    with button:
        _start_button("tune", "Tune", running, type="primary", width="stretch")
    if _live("tune", results):
        return
    result = results.get("tune")
    if result is None:
        st.info(
            "Searches map parallelism, vectorizing after batch, cache placement, prefetch, "
            "parallel reads and tf.data options; the best settings and the pipeline as "
            "written are then re-measured alternately."
        )
        return
    headline, *details, budget = result.story()
    a, b, c = st.columns(3)
    how = result.measured_as()
    a.metric(f"As written ({how})", f"{result.baseline_examples_per_s:,.0f} ex/s", border=True)
    b.metric(
        f"Tuned ({how})",
        f"{result.best_examples_per_s:,.0f} ex/s",
        f"{result.speedup():.2f}×",
        border=True,
    )
    c.metric("Trials", f"{len(result.search.trials)} of {result.space.size():,}", border=True)
    changes = result.changes()
    if result.improved():
        text, action = st.columns([5, 1], vertical_alignment="center")
        text.success(headline, icon=":material/speed:")
        text.markdown(
            "Changes: " + "; ".join(f"`{k}` {old} → **{new}**" for k, (old, new) in changes.items())
        )
        if action.button(
            "Apply best", type="primary", key=KEY + "apply_best", disabled=running, width="stretch"
        ):
            _apply(result.apply(), f"Applied the tuned settings ({result.speedup():.2f}×).")
            st.rerun()
    else:
        st.info(headline, icon=":material/check:")
    for line in details:
        st.warning(line, icon=":material/info:")
    st.caption(budget)
    left, right = st.columns(2)
    left.plotly_chart(figures.trials_progress(result), key=KEY + "trials_progress")
    right.plotly_chart(figures.trials_parallel_coordinates(result), key=KEY + "parcoords")
    st.dataframe(pd.DataFrame(result.trials_table()), hide_index=True, key=KEY + "trials")


def _profile_run(spec):
    """The newest stored profile run of exactly this spec, if the run store can be read."""
    try:
        return latest_profile_run(spec, RunStore())
    except (StoreError, OSError, sqlite3.Error):
        return None


def _agreement_section(spec, results: dict) -> None:
    st.subheader("One pipeline, one number")
    recs = results.get("recommend") or ()
    stages, tuned = results.get("stages"), results.get("tune")
    agreed = agreement(
        stages=stages.report if stages else None,
        tune=tuned,
        recommendations=recs,
        profile_run=_profile_run(spec),
        spec=spec,
    )
    if not agreed.figures:
        st.info(
            "Analyze, recommend, tune or profile this pipeline: their figures for it are "
            "compared here."
        )
        return
    show = st.success if agreed.agree() else st.warning
    show(agreed.summary())
    st.dataframe(pd.DataFrame(agreed.rows()), hide_index=True, key=KEY + "agreement")
    for line in agreed.explanations():
        st.markdown(f"- {line}")
    if tuned is not None and recs:
        checks = recommendation_checks(recs, tuned)
        for line in checks:
            st.markdown(f"- {line}")
        if not checks:
            st.caption("The recommendations and the tuner agree on every change they share.")


ESTIMATE_HOLDER = KEY + "memory_estimate"  # which spec this session's estimate waits for


def _memory_verdict(spec):
    """The memory estimate of `spec` judged against the memory available now, or None after
    saying why not. Sizing reads the user's files, so the estimate is made in a child
    process (`analysis.memory_estimate_job`), kept per spec, while the page draws on."""
    estimates, spec_json = _jobs.memory_estimates(), spec.to_json(indent=None)
    try:
        job = estimates.job(spec_json, holder=ESTIMATE_HOLDER)
        if not job.done:
            _jobs.wait(job, "Estimating the memory of the source and buffers in a child process…")
            return None
        failed = _jobs.failure(job)
        if failed is not None:  # a crash, the time limit or the memory ceiling
            st.error(f"Memory estimate failed: {failed[:1].lower() + failed[1:]}")
            st.button(
                "Estimate again",
                key=KEY + "memory_retry",
                on_click=estimates.forget,
                args=(spec_json,),
            )
            return None
        found = job.result(timeout=0)
        if found["error"] is not None:
            st.error(f"Memory estimate failed: {found['error']}")
            return None
        return memory_verdict(found["estimate"], available=memory.available_bytes())
    except Exception as exc:  # shown to the user, never a traceback
        show_bug("The memory estimate", exc)
        return None


def _memory_section(spec, results: dict, running: bool) -> None:
    st.subheader("Memory estimate")
    verdict = _memory_verdict(spec)
    estimate = None if verdict is None else verdict.estimate
    if verdict is not None:
        show = {"ok": st.success, "warn": st.warning, "block": st.error}[verdict.level]
        show(verdict.message)
        rows = [
            {
                "holder": p.what,
                "step": "source" if p.step_index is None else f"steps[{p.step_index}]",
                "elements": p.elements,
                "per element": format_bytes(p.bytes_per_element),
                "total": format_bytes(p.bytes),
                "note": p.note,
            }
            for p in estimate.parts
        ]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, key=KEY + "memory_table")
    _start_button("memory", "Measure peak memory (short run)", running)
    if _live("memory", results):
        return
    peak = results.get("memory")
    if peak is not None:
        measured = (
            f"the measured peak RSS of a short run: {peak:,.0f} MB (RSS also holds "
            "TensorFlow itself, ~0.5-1 GB)."
        )
        if estimate is None:
            st.caption(measured[:1].upper() + measured[1:])
        else:
            st.caption(f"Estimate {format_bytes(estimate.total_bytes)} beside {measured}")


def _trace_section(results: dict, running: bool) -> None:
    with st.expander("TensorBoard profiler trace"):
        st.caption("Capture a TensorFlow profiler trace of a short run for TensorBoard.")
        _start_button("trace", "Capture trace", running)
        if _live("trace", results):
            return
        trace = results.get("trace")
        if trace is not None:
            st.success(f"Trace of {trace.elements} elements written to `{trace.logdir}`.")
            st.markdown(trace.hint())
            st.code(trace.command(), language="bash")


def main() -> None:
    spec = _state.get_spec()
    steps = " → ".join(s.op for s in spec.steps) or "no steps"
    page_header(
        "Analyze & tune",
        f"Pipeline **{spec.name}**: {spec.source.type} source → {steps}. Measurements run in a "
        "child process: a failing pipeline cannot take the dashboard down.",
    )
    results = _results()
    running = _collect(results)
    applied = st.session_state.pop(KEY + "applied", None)
    if applied:
        st.success(applied + " The design now uses it.")
    _stages_section(results, running)
    _recommendations_section(results, running)
    _tuner_section(results, running)
    _agreement_section(spec, results)
    _memory_section(spec, results, running)
    _trace_section(results, running)


main()
