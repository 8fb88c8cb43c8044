"""Analyze & tune: find the bottleneck of the designed pipeline and fix it in one click."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import _state
from pipeline_core.analysis import (
    analyze_stages,
    capture_trace,
    check_memory,
    figures,
    format_bytes,
    machine_limit,
    recommend,
    tune,
)

KEY = "analyze."


def _results() -> dict:
    """Results of this page for the current spec (dropped when the design changes)."""
    spec_json = _state.get_spec().to_json(indent=None)
    if st.session_state.get(KEY + "spec") != spec_json:
        st.session_state[KEY + "spec"] = spec_json
        st.session_state[KEY + "results"] = {}
    return st.session_state[KEY + "results"]


def _apply(spec, message: str) -> None:
    _state.replace_spec(spec)  # also re-syncs the Design page's widgets
    st.session_state[KEY + "applied"] = message


def _fail(what: str, exc: Exception) -> None:
    st.error(f"{what} failed: {exc}")


def _memory_section(spec) -> None:
    st.subheader("Memory estimate")
    try:
        verdict = check_memory(spec)
    except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
        _fail("Memory estimate", exc)
        return
    estimate = verdict.estimate
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
    _peak_rss(spec, _results())
    peak = _results().get("rss_peak_mb")
    if peak is not None:
        st.caption(
            f"Estimate {format_bytes(estimate.total_bytes)} beside the measured peak RSS of a "
            f"short run: {peak:,.0f} MB (RSS also holds TensorFlow itself, ~0.5-1 GB)."
        )


def _stages_section(spec, results: dict) -> None:
    st.subheader("Stages: where the time goes")
    seconds = st.slider(
        "Seconds timed per stage", 0.1, 3.0, 0.5, 0.1, key=KEY + "seconds",
        help="Each prefix of the pipeline (source, + each step) is timed this long.",
    )  # fmt: skip
    if st.button("Analyze stages", type="primary", key=KEY + "run_stages"):
        bar = st.progress(0.0, text="timing the source ...")

        def progress(stage, done, total):
            bar.progress(done / total, text=f"timed {stage.label}")

        try:
            report = analyze_stages(spec, seconds=seconds, on_stage=progress)
            bar.progress(1.0, text="measuring the single-core rate ...")
            results["limit"] = machine_limit(
                spec, seconds=seconds, examples_per_s=report.final.examples_per_s
            )
            results["stages"] = report
        except Exception as exc:  # noqa: BLE001
            _fail("Stage analysis", exc)
        bar.empty()
    report, limit = results.get("stages"), results.get("limit")
    if report is None:
        st.info("Time each stage to find the slowest one.")
        return
    worst = report.bottleneck()
    st.markdown(
        f"**Slowest stage: {worst.label}** — adds {worst.added_us_per_example:,.0f} µs per "
        f"example, {report.share(worst):.0%} of the time. The pipeline delivers "
        f"{report.final.examples_per_s:,.0f} examples/s."
    )
    chart, gauge = st.columns([2, 1])
    chart.plotly_chart(figures.stage_waterfall(report), key=KEY + "waterfall")
    if limit is not None:
        gauge.plotly_chart(figures.machine_gauge(limit), key=KEY + "gauge")
        gauge.markdown(f"**Machine limit:** {limit.verdict()}.")
        gauge.caption(
            f"One core runs the whole pipeline at {limit.single_core_examples_per_s:,.0f} "
            f"examples/s; × {limit.cores} cores = {limit.limit_examples_per_s:,.0f}."
        )


def _recommendations_section(spec, results: dict) -> None:
    st.subheader("Recommendations")
    if st.button("Find recommendations", key=KEY + "run_recs"):
        bar = st.progress(0.0, text="measuring fixes ...")

        def progress(rule, done, total):
            bar.progress(done / total, text=f"measured {rule}")

        try:
            results["recs"] = recommend(
                spec,
                stages=results.get("stages"),
                seconds=st.session_state.get(KEY + "seconds", 0.5),
                on_progress=progress,
            )
        except Exception as exc:  # noqa: BLE001
            _fail("Recommendations", exc)
        bar.empty()
    recs = results.get("recs")
    if recs is None:
        hint = "" if results.get("stages") else " Analyze stages first for stage-based rules."
        st.info("Each rule's fix is measured before it is offered." + hint)
        return
    if not recs:
        st.success("No recommendation: none of the measured fixes helps this pipeline.")
    for i, rec in enumerate(recs):
        text, action = st.columns([5, 1])
        gain = f"{rec.gain():.2f}× examples/s" if rec.kind == "speed" else rec.benefit
        text.markdown(f"**{rec.title}** — {gain}  \n{rec.reason}.")
        if rec.kind == "quality":
            text.caption(f"Measured throughput with the fix: {rec.gain():.2f}×.")
        if action.button("Apply", key=f"{KEY}apply_rec_{i}"):
            _apply(rec.apply(), f"Applied: {rec.title}.")
            st.rerun()


def _tuner_section(spec, results: dict) -> None:
    st.subheader("Auto-tune")
    budget_col, trial_col, batch_col, order_col = st.columns([2, 2, 1, 1])
    budget = budget_col.slider("Budget (s)", 2, 300, 30, key=KEY + "budget")
    trial_s = trial_col.slider("Seconds per trial", 0.1, 2.0, 0.4, 0.1, key=KEY + "trial_s")
    batch = batch_col.checkbox("Tune batch size", key=KEY + "batch")
    reorder = order_col.checkbox("Allow reordering", key=KEY + "reorder")
    if st.button("Tune", type="primary", key=KEY + "run_tune"):
        bar = st.progress(0.0, text="measuring the pipeline as written ...")

        def progress(trial, used):
            rate = "failed" if trial.score is None else f"{trial.score:,.0f} examples/s"
            bar.progress(used, text=f"trial {trial.index}: {rate}")

        try:
            results["tune"] = tune(
                spec,
                budget_s=float(budget),
                trial_seconds=float(trial_s),
                tune_batch_size=batch,
                allow_reorder=reorder,
                on_trial=progress,
            )
        except Exception as exc:  # noqa: BLE001
            _fail("Tuning", exc)
        bar.empty()
    result = results.get("tune")
    if result is None:
        st.info("Coordinate descent over parallelism, vectorized maps, cache and prefetch.")
        return
    a, b, c = st.columns(3)
    a.metric("As written", f"{result.baseline_examples_per_s:,.0f} ex/s")
    b.metric("Tuned", f"{result.best_examples_per_s:,.0f} ex/s", f"{result.speedup():.2f}×")
    c.metric("Trials", f"{len(result.search.trials)} of {result.space.size()}")
    changes = result.changes()
    if changes:
        st.markdown(
            "Changes: " + "; ".join(f"`{k}` {old} → **{new}**" for k, (old, new) in changes.items())
        )
        if st.button("Apply best", type="primary", key=KEY + "apply_best"):
            _apply(result.apply(), f"Applied the tuned settings ({result.speedup():.2f}×).")
            st.rerun()
    else:
        st.success("The pipeline as written was the fastest setting found.")
    left, right = st.columns(2)
    left.plotly_chart(figures.trials_progress(result), key=KEY + "trials_progress")
    right.plotly_chart(figures.trials_parallel_coordinates(result), key=KEY + "parcoords")
    st.dataframe(pd.DataFrame(result.trials_table()), hide_index=True, key=KEY + "trials")


def _trace_section(spec) -> None:
    with st.expander("TensorBoard profiler trace"):
        st.caption("Capture a TensorFlow profiler trace of a short run for TensorBoard.")
        if st.button("Capture trace", key=KEY + "trace"):
            try:
                trace = capture_trace(spec)
            except Exception as exc:  # noqa: BLE001
                _fail("Trace capture", exc)
                return
            st.success(f"Trace of {trace.elements} elements written to `{trace.logdir}`.")
            st.markdown(trace.hint())
            st.code(trace.command(), language="bash")


def _peak_rss(spec, results: dict) -> None:
    if st.button("Measure peak memory (short run)", key=KEY + "rss"):
        from pipeline_core.profile import RunSettings, profile  # noqa: PLC0415

        with st.spinner("running the pipeline for a few seconds ..."):
            try:
                run = profile(spec, settings=RunSettings(max_batches=50, max_seconds=5.0))
                results["rss_peak_mb"] = run.readings_summary().get("rss_peak_mb")
            except Exception as exc:  # noqa: BLE001
                _fail("The short run", exc)


def main() -> None:
    st.title("Analyze & tune")
    spec = _state.get_spec()
    results = _results()
    applied = st.session_state.pop(KEY + "applied", None)
    if applied:
        st.success(applied + " The design now uses it.")
    st.caption(
        f"Pipeline **{spec.name}**: {spec.source.type} source → "
        + (" → ".join(s.op for s in spec.steps) or "no steps")
    )
    _stages_section(spec, results)
    _recommendations_section(spec, results)
    _tuner_section(spec, results)
    _memory_section(spec)
    _trace_section(spec)


main()
