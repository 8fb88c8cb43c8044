"""Analysis work as isolated jobs: each runs in a child process via `pipeline_core.isolate`.

A user's pipeline that segfaults, runs out of memory or hangs must not take
the dashboard down, so the Analyze & tune page never measures in the server
process. Each job function here is module-level, takes the spec as JSON text
plus keyword options and a `progress` callback, reports one `Progress` per
measured stage / rule / trial, and returns picklable results (frozen
dataclasses). `start_analysis(kind, spec, **options)` starts one with its
reason wording, wall-clock timeout and memory ceiling from the `JOBS`
registry; `run_analysis` is the blocking form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.machine import MachineLimit, machine_limit
from pipeline_core.analysis.measure import WINDOW_S, measure_peak_rss
from pipeline_core.analysis.recommend import RULES, recommend
from pipeline_core.analysis.space import search_space
from pipeline_core.analysis.stages import StageReport, analyze_stages
from pipeline_core.analysis.trace import capture_trace
from pipeline_core.analysis.tuner import tune
from pipeline_core.child import default_memory_limit_mb
from pipeline_core.isolate import run_job, start_job
from pipeline_core.spec import PipelineSpec, load_spec

START_S = 120.0  # child start-up: import TensorFlow and build (slow on a loaded machine)
MEASURE_S = 15.0  # per measurement beyond its timed window: build, warm-up (≤ 10 s)
TUNE_BUDGET_S = 60.0
Report = Callable[[Any], None]


@dataclass(frozen=True)
class Progress:
    """One step of a job: how far it is, a line of text and an optional table row."""

    done: int
    total: int | None
    fraction: float
    text: str
    row: dict[str, Any] | None = None


@dataclass(frozen=True)
class StageAnalysis:
    """What `stages_job` returns: the stage report and the machine limit."""

    report: StageReport
    limit: MachineLimit


def _row_of_stage(stage) -> dict[str, Any]:
    return {
        "stage": stage.label,
        "examples/s": round(stage.examples_per_s, 1),
        "µs/example": round(stage.us_per_example, 1),
        "added µs": round(stage.added_us_per_example, 1),
    }


# --- the job functions (run in the child) ------------------------------------------------


def stages_job(
    spec_json: str, *, seconds: float = WINDOW_S, rounds: int = 1, progress: Report
) -> StageAnalysis:
    """Time every prefix of the spec and the consumer, then the machine limit."""
    spec = load_spec(spec_json)
    measured = rounds * (len(spec.steps) + 2)
    total = measured + 1

    def on_stage(stage, done: int, _total: int) -> None:
        text = f"timed {stage.label}" if stage else f"measurement {done} of {measured}"
        row = _row_of_stage(stage) if stage else None
        progress(Progress(done, total, done / total, text, row))

    report = analyze_stages(spec, seconds=seconds, rounds=rounds, on_stage=on_stage)
    progress(Progress(measured, total, measured / total, "measuring the machine limit"))
    limit = machine_limit(spec, seconds=seconds, examples_per_s=report.delivered.examples_per_s)
    progress(Progress(total, total, 1.0, "measured the machine limit"))
    return StageAnalysis(report=report, limit=limit)


def recommend_job(
    spec_json: str,
    *,
    seconds: float = WINDOW_S,
    rounds: int = 2,
    stages: StageReport | None = None,
    progress: Report,
) -> tuple:
    """Measured recommendations (detached from their fix functions, so they can be sent)."""
    spec = load_spec(spec_json)

    def on_progress(what: str, done: int, total: int) -> None:
        progress(Progress(done, total, done / total, f"measured {what}", {"measured": what}))

    found = recommend(spec, stages=stages, seconds=seconds, rounds=rounds, on_progress=on_progress)
    return tuple(r.detached() for r in found)


def tune_job(
    spec_json: str,
    *,
    budget_s: float = TUNE_BUDGET_S,
    trial_seconds: float = WINDOW_S,
    tune_batch_size: bool = False,
    allow_reorder: bool = False,
    seeds: Sequence[Mapping[str, Any]] = (),
    progress: Report,
):
    """Auto-tune the spec; one progress row per trial and per re-measurement."""
    spec = load_spec(spec_json)
    space = search_space(spec, tune_batch_size=tune_batch_size, allow_reorder=allow_reorder)
    done = 0

    def on_trial(trial, used: float) -> None:
        nonlocal done
        done += 1
        rate = "failed" if trial.score is None else f"{trial.score:,.0f} examples/s"
        row = {
            "trial": trial.index,
            "phase": trial.phase,
            **space.describe(trial.settings),
            "examples_per_s": None if trial.score is None else round(trial.score, 1),
            "error": trial.error,
        }
        progress(Progress(done, None, used, f"trial {trial.index}: {rate}", row))

    def on_verify(trial: int, round_: int, rate: float, used: float) -> None:
        nonlocal done
        done += 1
        text = f"re-measuring trial {trial} (round {round_ + 1}): {rate:,.0f} examples/s"
        row = {"trial": trial, "phase": "verify", "examples_per_s": round(rate, 1)}
        progress(Progress(done, None, used, text, row))

    return tune(
        spec,
        budget_s=budget_s,
        trial_seconds=trial_seconds,
        space=space,
        seeds=seeds,
        on_trial=on_trial,
        on_verify=on_verify,
    )


def trace_job(spec_json: str, *, max_elements: int = 50, logdir: str | None = None, progress):
    """Capture a TensorFlow profiler trace of a short run."""
    progress(Progress(0, 1, 0.0, f"tracing up to {max_elements} elements"))
    return capture_trace(load_spec(spec_json), logdir=logdir, max_elements=max_elements)


def memory_job(
    spec_json: str, *, max_batches: int = 50, max_seconds: float = 5.0, progress: Report
) -> float:
    """Peak resident memory (MB) of the child while it runs the spec briefly."""
    progress(Progress(0, 1, 0.0, f"running up to {max_batches} batches"))
    return measure_peak_rss(load_spec(spec_json), max_batches=max_batches, max_seconds=max_seconds)


# --- the registry and starting -------------------------------------------------------------


@dataclass(frozen=True)
class JobKind:
    """A job function, the words that name it in reasons, and its wall-clock limit."""

    fn: Callable[..., Any]
    what: str
    timeout_s: Callable[[PipelineSpec, Mapping[str, Any]], float]


def _stages_timeout(spec: PipelineSpec, options: Mapping[str, Any]) -> float:
    measurements = options.get("rounds", 1) * (len(spec.steps) + 2) + 2
    return START_S + measurements * (options.get("seconds", WINDOW_S) + MEASURE_S)


def _recommend_timeout(spec: PipelineSpec, options: Mapping[str, Any]) -> float:
    measurements = options.get("rounds", 2) * (len(RULES) + 1)
    return START_S + measurements * (options.get("seconds", WINDOW_S) + MEASURE_S)


def _tune_timeout(spec: PipelineSpec, options: Mapping[str, Any]) -> float:
    budget = options.get("budget_s", TUNE_BUDGET_S)
    return START_S + 1.5 * budget + 2 * (MEASURE_S + max(1.0, budget / 6))


JOBS: dict[str, JobKind] = {
    "stages": JobKind(stages_job, "stage analysis", _stages_timeout),
    "recommend": JobKind(recommend_job, "measuring recommendations", _recommend_timeout),
    "tune": JobKind(tune_job, "tuning", _tune_timeout),
    "trace": JobKind(trace_job, "the trace capture", lambda spec, o: START_S + 60.0),
    "memory": JobKind(
        memory_job, "the short memory run", lambda spec, o: START_S + o.get("max_seconds", 5.0)
    ),
}


def _kind(kind: str) -> JobKind:
    if kind not in JOBS:
        raise ValueError(
            f"The `kind` argument should be one of {', '.join(JOBS)}. Received: kind={kind!r}"
        )
    return JOBS[kind]


def start_analysis(
    kind: str, spec: PipelineSpec, *, timeout_s: float | None = None, **options: Any
):
    """Start analysis job `kind` on `spec` in a child process; return its `isolate.Job`.

    Args:
        kind: a key of `JOBS` ("stages", "recommend", "tune", "trace", "memory").
        spec: the pipeline.
        timeout_s: wall-clock limit (default: from the job's settings, generous).
        **options: the job function's keyword options (e.g. `seconds=0.5`).

    Raises:
        ValueError: unknown kind; IsolateError: options that cannot be sent.
    """
    return start_job(**_job_arguments(kind, spec, timeout_s, options))


def run_analysis(
    kind: str,
    spec: PipelineSpec,
    *,
    timeout_s: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **options: Any,
):
    """Blocking form of `start_analysis`: the job's result.

    Raises:
        JobFailed: the job raised, crashed, ran out of time or memory (`.reason`).
    """
    return run_job(**_job_arguments(kind, spec, timeout_s, options), on_progress=on_progress)


def _job_arguments(
    kind: str, spec: PipelineSpec, timeout_s: float | None, options: dict[str, Any]
) -> dict[str, Any]:
    """What `isolate.start_job`/`run_job` need for an analysis job of `kind` on `spec`."""
    job = _kind(kind)
    return {
        "fn": job.fn,
        "args": (spec.to_json(),),
        "kwargs": options,
        "what": job.what,
        "timeout_s": timeout_s or job.timeout_s(spec, options),
        "memory_limit_mb": default_memory_limit_mb(),
    }
