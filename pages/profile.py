"""Profile: run the designed pipeline in a child process and watch it live."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import streamlit as st

from pages import _jobs, _state
from pages._widgets import bug_message, number_setting, page_header, short_number, show_bug
from pipeline_core import charts
from pipeline_core.analysis import format_bytes, memory, memory_verdict
from pipeline_core.child import default_memory_limit_mb
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import MEMORY_NOTE
from pipeline_core.profile import RunSettings, start_profile
from pipeline_core.profile.scale import ScalingRun, worker_counts
from pipeline_core.profile.workers import summarize_workers
from pipeline_core.service import ELEMENTS_NOTE
from pipeline_core.steps import local_distribute_step
from pipeline_core.store import RunStore

REFRESH_S = 0.4  # progress and KPI tiles: >= 2 changes a second, light enough for 5 sessions
CHART_REFRESH_S = 1.0
STOP_WAIT_S = 1.5  # a Stop click waits this long for the run to end, to show "stopped" at once
STARTING = {
    "starting": "Starting: the run's process loads TensorFlow and builds the pipeline…",
    "running": "Running: waiting for the first batch (the buffers fill first)…",
}
STEPS = ("none", "fixed time (ms)", "small model")
CHART_ROWS = (("wait", "wait_histogram"), ("throughput", "cpu"), ("memory", "gpu"))
CONFIRM_KEY = "profile.run_anyway"  # + a digest of the spec: a confirmation holds for one design


def _settings() -> RunSettings:
    """Run settings from the settings widgets (raises ProfileError for bad ones)."""
    limit_col, amount_col, step_col, ms_col, mem_col = st.columns([1.3, 1, 1.3, 1, 1.2])
    repeat = st.checkbox(
        "Repeat the data until the limit",
        key=_state.kept("profile.repeat", True),
        help="A dataset shorter than the limit starts again, so the run lasts as long as "
        "the limit says; applied in the run's process, the design is unchanged. Off: the "
        "run ends with the data.",
    )
    limit = limit_col.radio(
        "Stop after",
        ("batches", "seconds"),
        horizontal=True,
        key=_state.kept("profile.limit", "batches"),
    )
    if limit == "batches":
        amount = number_setting(
            amount_col, "Batches", key="profile.batches", default=200, minimum=1, step=50
        )
    else:
        amount = number_setting(
            amount_col, "Seconds", key="profile.seconds", default=10.0, minimum=1.0, step=5.0
        )
    step = step_col.selectbox(
        "Simulated training step",
        STEPS,
        key=_state.kept("profile.step", STEPS[0]),
        help="Time a training step would take after each batch; with a "
        "step, the run reports how input-bound training would be.",
    )
    step_ms = number_setting(
        ms_col,
        "Step (ms)",
        key="profile.step_ms",
        default=20.0,
        minimum=0.0,
        step=5.0,
        disabled=step != STEPS[1],
    )
    memory = number_setting(
        mem_col,
        "Memory ceiling (MB)",
        key="profile.memory_mb",
        default=_default_memory(),
        minimum=64,
        step=256,
        help="The run is stopped when the pipeline process holds "
        "more private memory than this. Pages of memory-mapped "
        "files do not count: the system can drop and re-read them, "
        "so a file larger than the ceiling streams to the end.",
    )
    return RunSettings(
        max_batches=int(amount) if limit == "batches" else None,
        max_seconds=float(amount) if limit == "seconds" else None,
        memory_limit_mb=int(memory),
        step_ms=float(step_ms) if step == STEPS[1] else None,
        step_model="small" if step == STEPS[2] else None,
        repeat=bool(repeat),
    )


@st.cache_data(ttl=600, show_spinner=False)
def _default_memory() -> int:
    return default_memory_limit_mb()


def _largest(estimate):
    """The part of a memory estimate that holds the most (None when none holds bytes)."""
    sized = [p for p in estimate.parts if p.bytes]
    return max(sized, key=lambda p: p.bytes, default=None)


def _where(part) -> str:
    return "source" if part.step_index is None else f"steps[{part.step_index}]"


ESTIMATE_HOLDER = "profile.memory_estimate"  # which spec this session's estimate waits for
ESTIMATING = (
    "Estimating the memory of the source and buffers in a child process… Start is allowed "
    "meanwhile (the run then stores no estimate); the memory ceiling applies."
)


def _unavailable(reason: str) -> None:
    st.caption(f"Memory estimate unavailable ({reason}); the memory ceiling still applies.")


def _memory_verdict(spec):
    """The memory estimate of `spec` judged against the memory available now, or None with
    a note while it is made or when it failed. Sizing reads the user's files, so the
    estimate is made in a child process (`analysis.memory_estimate_job`), kept per spec."""
    estimates, spec_json = _jobs.memory_estimates(), spec.to_json(indent=None)
    try:
        job = estimates.job(spec_json, holder=ESTIMATE_HOLDER)
        if not job.done:
            _jobs.wait(job, ESTIMATING)
            return None
        failed = _jobs.failure(job)
        if failed is not None:  # a crash, the time limit or the memory ceiling
            _unavailable(failed[:1].lower() + failed[1:])
            st.button(
                "Estimate again",
                key="profile.memory_retry",
                on_click=estimates.forget,
                args=(spec_json,),
            )
            return None
        found = job.result(timeout=0)
        if found["error"] is not None:
            _unavailable(found["error"])
            return None
        return memory_verdict(found["estimate"], available=memory.available_bytes())
    except Exception as exc:  # an estimate failure must not block the page
        st.caption(bug_message("The memory estimate", exc) + " The memory ceiling still applies.")
        return None


def _memory_guard(spec) -> tuple[bool, dict | None]:
    """Show the memory estimate; returns (blocked, what to store with the run)."""
    verdict = _memory_verdict(spec)
    if verdict is None:
        return False, None
    estimate = verdict.estimate
    largest = _largest(estimate)
    text = (
        f"Memory estimate: **{format_bytes(estimate.total_bytes)}** held by the source and buffers, "
        f"{format_bytes(estimate.available_bytes)} available"
    )
    if largest is not None:
        text += f" · largest: {largest.what} at `{_where(largest)}` ({format_bytes(largest.bytes)})"
    if estimate.unknown:
        text += f" · not sized: {', '.join(estimate.unknown)}"
    st.caption(text)
    stored = {"memory_estimate": {"level": verdict.level, **estimate.to_dict()}}
    if verdict.level == "warn":
        st.warning(verdict.message, icon=":material/warning:")
    if verdict.level != "block":
        return False, stored
    st.error(verdict.message, icon=":material/block:")
    digest = hashlib.sha1(spec.to_json(indent=None).encode()).hexdigest()[:10]
    confirmed = st.checkbox(
        "Run anyway",
        key=f"{CONFIRM_KEY}.{digest}",
        help="Start despite the estimate; the memory ceiling still stops "
        "the run before it takes the machine down.",
    )
    return not confirmed, stored


BUILD_HOLDER = "profile.design"  # which spec this session's Start waits to hear about


def _build_problem(spec) -> str | None:
    """Why the design cannot be built, once the Design page's child has said so (one
    result per spec for every session); None while unknown or when it builds."""
    try:
        job = _jobs.element_specs().job(spec.to_json(indent=None), holder=BUILD_HOLDER)
    except Exception:  # the check is advisory: a run of a broken design fails with its reason
        return None
    if not job.done or not job.state().ok:
        return None
    return job.result(timeout=0)["error"]


def _start(settings: RunSettings, summary_extra: dict | None) -> None:
    spec = _state.get_spec()
    try:
        handle = start_profile(
            spec, settings=settings, store=RunStore(), name=spec.name, summary_extra=summary_extra
        )
    except PipelineLabError as exc:
        st.error(f"Cannot start: {exc}")
        return
    except Exception as exc:
        show_bug("Starting the run", exc)
        return
    _state.set_live_run(handle)


_fmt = short_number


def _kpis(snap, handle) -> None:
    steady = np.asarray(snap.waits_ms[1:] or snap.waits_ms, dtype=float)
    p50, p99 = np.percentile(steady, [50, 99]) if steady.size else (None, None)
    if snap.done:
        result = handle.result(timeout=0)
        rate, bound = result.examples_per_second(), result.input_bound_percent()
    else:
        rate, bound = snap.throughput, None
    tiles = st.columns(5)
    tiles[0].metric(
        "examples/s",
        _fmt(rate, ""),
        border=True,
        help="Rolling over the last seconds while running; steady state at the end.",
    )
    first = snap.batch_times_s[0] if snap.batch_times_s else None
    tiles[1].metric(
        "first batch",
        _fmt(first, "s"),
        border=True,
        help="Iterator creation to the first batch (warm-up: fills buffers).",
    )
    tiles[2].metric("wait p50", _fmt(p50, "ms"), border=True)
    tiles[3].metric("wait p99", _fmt(p99, "ms"), border=True)
    tiles[4].metric(
        "input-bound",
        _fmt(bound, "%"),
        border=True,
        help="Share of the training loop spent waiting for input; needs a "
        "simulated step and is computed at the end of the run.",
    )


def _progress(snap, settings: RunSettings) -> None:
    fractions = []
    if settings.max_batches:
        fractions.append(snap.batches / settings.max_batches)
    if settings.max_seconds:
        fractions.append(snap.elapsed_s / settings.max_seconds)
    # a stopped or failed run ends where it was, not at 100%
    done = 1.0 if snap.status == "completed" else min(1.0, max(fractions, default=0.0))
    text = f"{snap.status} · {snap.batches} batches · {snap.examples:,} examples · {snap.elapsed_s:.1f} s"
    st.progress(done, text=text)


def _charts(snap, name: str) -> None:
    figures = charts.run_figures([charts.RunSeries.from_snapshot(snap, name=name)])
    for row in CHART_ROWS:
        cols = st.columns(2)
        for col, chart in zip(cols, row, strict=True):
            with col:
                if chart in figures:
                    st.plotly_chart(figures[chart], key=f"profile.chart.{chart}", width="stretch")
                elif chart == "gpu":
                    st.info(_gpu_note(snap.gpu), icon=":material/memory:")


def _workers(snap) -> None:
    """The tf.data service workers a `distribute` step reads from: a table and their charts."""
    samples = list(snap.worker_samples)
    if not samples:
        return
    st.subheader("Workers", anchor=False)
    st.dataframe(
        [
            {
                "worker": w["address"],
                "CPU mean (% of a core)": short_number(w["cpu_mean_percent"]),
                "RSS peak (MB)": short_number(w["rss_peak_mb"]),
                "answering": "yes" if w["answered_at_end"] else "no: stopped answering",
            }
            for w in summarize_workers(samples)
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption(
        f"Read from each worker's readings endpoint every 0.5 s. Elements per worker: {ELEMENTS_NOTE}."
    )
    cols = st.columns(2)
    for col, what in zip(cols, ("cpu", "rss"), strict=True):
        with col:
            figure = charts.workers_figure(samples, what)
            st.plotly_chart(figure, key=f"profile.workers.{what}", width="stretch")


def _gpu_note(gpu: str) -> str:
    """Why there is no GPU chart, without repeating "no GPU" from the reason."""
    reason = gpu.removeprefix("no GPU").lstrip(": ").strip()
    if gpu in ("unknown", "available"):
        return "No GPU readings yet."
    detail = f": {reason}" if reason else " (no GPU found)"
    return f"No GPU readings{detail}. CPU and memory are measured above."


def _mb(value: float | None) -> str:
    return f"{value:,.0f} MiB" if value is not None else "—"


def _memory_after(handle) -> None:
    """The estimate made before the run beside what the run measured, by kind."""
    estimate = handle.summary_extra.get("memory_estimate")
    memory = handle.result(timeout=0).memory_summary()
    if estimate is None and memory["rss_peak_mb"] is None:
        return
    total = None if estimate is None else estimate["total_bytes"]
    total = float("inf") if total == "inf" else total
    tiles = st.columns(5)
    tiles[0].metric(
        "estimated buffers",
        format_bytes(total) if estimate else "—",
        border=True,
        help="Source arrays, cache, shuffle, prefetch and in-flight maps, "
        "estimated before the run.",
    )
    tiles[1].metric(
        "held by pipeline",
        _mb(memory["held_by_pipeline_mb"]),
        border=True,
        help="Private memory peak minus TensorFlow's own (measured before the "
        "pipeline was built): compare it with the estimate. It also holds "
        "TensorFlow's working memory while iterating (tens of MB).",
    )
    tiles[2].metric(
        "private peak",
        _mb(memory["private_peak_mb"]),
        border=True,
        help="Anonymous memory the pipeline process held at its highest, "
        "TensorFlow included; the memory ceiling applies to it.",
    )
    tiles[3].metric(
        "TF baseline",
        _mb(memory["private_baseline_mb"]),
        border=True,
        help="Private memory of the process with TensorFlow loaded, before the pipeline was built.",
    )
    tiles[4].metric(
        "peak RSS",
        _mb(memory["rss_peak_mb"]),
        border=True,
        help="Every resident page: private memory plus pages of mapped files "
        "(libraries, memory-mapped data), which the system can reclaim.",
    )
    st.caption(f"Memory: {MEMORY_NOTE}.")


def _scaling(spec, settings: RunSettings, extra: dict | None, why: str | None, busy: bool):
    """The scaling study: run the design with 1, 2, 4 … local workers, chart throughput
    against workers beside the ideal line, and say which kind of pipeline it is."""
    study = _state.live_study()
    with st.expander("Scaling study: the same design with 1, 2, 4 … local workers",
                     expanded=study is not None, icon=":material/stacked_line_chart:"):  # fmt: skip
        st.caption(
            "Runs the design once per worker count, with the limits above and the data "
            "repeated, each stored as a run. A pipeline that waits (slow storage, the "
            "sleep step) scales on one machine; one whose workers fill the cores cannot."
        )
        pick, go = st.columns([4, 1], vertical_alignment="bottom")
        typed = pick.text_input(
            "Worker counts",
            value="1, 2, 4",
            key="profile.scale_counts",
            help="Comma-separated, each 1 to 16, like 1, 2, 4 (the CLI's --workers).",
        )
        try:
            counts = worker_counts(typed)
        except PipelineLabError as exc:
            pick.caption(f":red[{exc}]")
            counts = ()
        if len(counts) == 1:
            pick.caption(":red[A study compares two worker counts or more, like 1, 2, 4.]")
        if go.button(
            "Run study",
            key="profile.scale",
            disabled=busy or why is not None or len(counts) < 2,
            help=why or "Give two worker counts or more.",
            width="stretch",
        ):
            try:
                study = ScalingRun(spec, counts, settings=replace(settings, repeat=True),
                                   store=RunStore(), summary_extra=extra)  # fmt: skip
            except PipelineLabError as exc:
                st.error(f"Cannot start the study: {exc}")
                return None
            except Exception as exc:
                show_bug("Starting the scaling study", exc)
                return None
            _state.set_live_study(study)
        if study is not None:
            _study_result(study)
    return study


def _study_result(study) -> None:
    result = study.study().to_dict()
    if not study.done:
        st.info(
            f"Running with {study.current} worker{'s' * (study.current != 1)} "
            f"({len(study.points) + 1} of "
            f"{len(study.counts)}); the live run below is this one.",
            icon=":material/hourglass_top:",
        )
    if result["points"]:
        st.dataframe(
            [
                {
                    "workers": p["workers"],
                    "examples/s": short_number(p["examples_per_s"]) if p["examples_per_s"]
                    else p["status"],
                    "ideal": short_number(p["ideal_examples_per_s"]),
                    "of ideal": "—" if p["efficiency"] is None else f"{p['efficiency']:.0%}",
                    "workers' CPU (%)": short_number(p["workers_cpu_percent"]),
                    "machine CPU (%)": short_number(p.get("machine_cpu_percent")),
                    "run": "—" if p["run_id"] is None else f"#{p['run_id']}",
                }
                for p in result["points"]
            ],
            hide_index=True,
            width="stretch",
        )  # fmt: skip
        st.plotly_chart(charts.scaling(result["points"]), key="profile.scaling", width="stretch")
    if study.done and result["points"]:
        (st.success if result["kind"] == "scales" else st.warning)(result["verdict"])
        ids = ",".join(str(p["run_id"]) for p in result["points"] if p["run_id"] is not None)
        if ids:
            st.page_link("pages/runs.py", label=f"Compare runs {ids} in Runs",
                         icon=":material/compare_arrows:", query_params={"run": ids})  # fmt: skip


def _outcome(snap, handle) -> None:
    if snap.status == "failed":
        st.error(f"The run failed: {snap.reason}", icon=":material/error:")
    elif snap.done:
        st.success(f"Run {snap.status}: {handle.result(timeout=0).verdict()}")
    if handle.store_error:
        st.warning(f"The run could not be stored: {handle.store_error}")
    elif handle.run_id is not None:
        st.page_link(
            "pages/runs.py",
            label=f"Open run #{handle.run_id} in Runs",
            icon=":material/history:",
            query_params={"run": str(handle.run_id)},
        )


spec = _state.get_spec()
page_header(
    "Profile",
    f"Pipeline **{spec.name}** · source `{spec.source.type}` · {len(spec.steps)} steps. "
    "The run goes in a child process: a failing pipeline cannot take the dashboard down.",
)

try:
    settings = _settings()
except PipelineLabError as exc:
    st.error(f"Fix the run settings: {exc}")
    st.stop()

blocked, estimate_summary = _memory_guard(spec)
problem = _build_problem(spec)
if problem is not None:
    st.error(
        f"Start is off: the design cannot be built: {problem} Fix it on the Design page.",
        icon=":material/block:",
    )
study = _state.poll_study()
handle = _state.live_run()
running = handle is not None and not handle.done
start_col, stop_col, _ = st.columns([1, 1, 6])
if start_col.button(
    "Start",
    type="primary",
    icon=":material/play_arrow:",
    key="profile.start",
    disabled=running or blocked or problem is not None,
    help="Fix the design first: it cannot be built." if problem else None,
    width="stretch",
):
    _start(settings, estimate_summary)
    handle = _state.live_run()
    running = handle is not None and not handle.done
if stop_col.button(
    "Stop", icon=":material/stop:", key="profile.stop", disabled=not running, width="stretch"
):
    if study is not None:
        study.stop()  # a scaling study starts no further run
    handle.stop()
    handle.wait(STOP_WAIT_S)  # usually ends well within it: this run draws "stopped"
    running = not handle.done
if local_distribute_step(spec) is not None:
    blocked_why = "Fix the design first: it cannot be built." if problem else None
    study = _scaling(spec, settings, estimate_summary, blocked_why, running or blocked) or study
    handle = _state.live_run()
    running = handle is not None and not handle.done


@st.fragment(run_every=REFRESH_S if running else None)
def live_figures() -> None:
    """Outcome, progress and KPI tiles of the session's run, every `REFRESH_S` while it
    runs; when it ends, the page is drawn once more with the timers off."""
    if handle is None:
        st.info("Set the limits and press **Start** to profile the current design.")
        return
    snap = handle.snapshot()
    if running and snap.done:
        st.rerun()  # the run ended: redraw the page once, with the timers off
    if handle.spec is not None and handle.spec != spec.to_dict():
        st.info(
            f"These results are of an earlier design, **{handle.spec.get('name')}**: the "
            "design has changed since this run started. Start again to profile this one.",
            icon=":material/history:",
        )
    _outcome(snap, handle)
    _progress(snap, handle.settings)
    if not snap.done and not snap.batches:
        st.info(STARTING.get(snap.status, STARTING["starting"]), icon=":material/hourglass_top:")
        return
    _kpis(snap, handle)
    if snap.done:
        _memory_after(handle)


@st.fragment(run_every=CHART_REFRESH_S if running else None)
def live_charts() -> None:
    """The charts of the session's run, once a second while it runs (drawing five charts
    is the page's heaviest work); none before the first batch, rather than empty axes."""
    if handle is None:
        return
    snap = handle.snapshot()
    if snap.batches or snap.done:
        _charts(snap, handle.name)
        _workers(snap)


live_figures()
live_charts()
