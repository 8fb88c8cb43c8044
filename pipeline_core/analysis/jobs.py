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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.machine import MachineLimit
from pipeline_core.analysis.stages import StageReport
from pipeline_core.spec import PipelineSpec, load_spec

START_S = 120.0  # child start-up: import TensorFlow and build (slow on a loaded machine)
MEASURE_S = 15.0  # per measurement beyond its timed window: build, warm-up (≤ 10 s)
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


def stages_job(spec_json: str, *, seconds: float = 0.5, progress: Report) -> StageAnalysis:
    """Time every prefix of the spec, then its single-core rate (the machine limit)."""
    from pipeline_core.analysis.machine import machine_limit  # noqa: PLC0415
    from pipeline_core.analysis.stages import analyze_stages  # noqa: PLC0415

    spec = load_spec(spec_json)
    total = len(spec.steps) + 2

    def on_stage(stage, done: int, _total: int) -> None:
        progress(Progress(done, total, done / total, f"timed {stage.label}", _row_of_stage(stage)))

    report = analyze_stages(spec, seconds=seconds, on_stage=on_stage)
    progress(Progress(total - 1, total, (total - 1) / total, "measuring the single-core rate"))
    limit = machine_limit(spec, seconds=seconds, examples_per_s=report.final.examples_per_s)
    progress(Progress(total, total, 1.0, "measured the machine limit"))
    return StageAnalysis(report=report, limit=limit)


def recommend_job(
    spec_json: str,
    *,
    seconds: float = 0.5,
    stages: StageReport | None = None,
    progress: Report,
) -> tuple:
    """Measured recommendations (detached from their fix functions, so they can be sent)."""
    from pipeline_core.analysis.recommend import recommend  # noqa: PLC0415

    spec = load_spec(spec_json)

    def on_progress(rule: str, done: int, total: int) -> None:
        progress(Progress(done, total, done / total, f"measured {rule}", {"rule": rule}))

    found = recommend(spec, stages=stages, seconds=seconds, on_progress=on_progress)
    return tuple(r.detached() for r in found)


def tune_job(
    spec_json: str,
    *,
    budget_s: float = 30.0,
    trial_seconds: float = 0.4,
    tune_batch_size: bool = False,
    allow_reorder: bool = False,
    progress: Report,
):
    """Auto-tune the spec; one progress row per trial (knobs as text, examples/s)."""
    from pipeline_core.analysis.space import search_space  # noqa: PLC0415
    from pipeline_core.analysis.tuner import tune  # noqa: PLC0415

    spec = load_spec(spec_json)
    space = search_space(spec, tune_batch_size=tune_batch_size, allow_reorder=allow_reorder)

    def on_trial(trial, used: float) -> None:
        rate = "failed" if trial.score is None else f"{trial.score:,.0f} examples/s"
        row = {
            "trial": trial.index,
            "phase": trial.phase,
            **space.describe(trial.settings),
            "examples_per_s": None if trial.score is None else round(trial.score, 1),
            "error": trial.error,
        }
        progress(Progress(trial.index + 1, None, used, f"trial {trial.index}: {rate}", row))

    return tune(
        spec,
        budget_s=budget_s,
        trial_seconds=trial_seconds,
        space=space,
        on_trial=on_trial,
    )


def trace_job(spec_json: str, *, max_elements: int = 50, logdir: str | None = None, progress):
    """Capture a TensorFlow profiler trace of a short run."""
    from pipeline_core.analysis.trace import capture_trace  # noqa: PLC0415

    progress(Progress(0, 1, 0.0, f"tracing up to {max_elements} elements"))
    return capture_trace(load_spec(spec_json), logdir=logdir, max_elements=max_elements)


def memory_job(
    spec_json: str, *, max_batches: int = 50, max_seconds: float = 5.0, progress: Report
) -> float:
    """Peak resident memory (MB) of the child while it runs the spec briefly."""
    from pipeline_core.analysis.measure import measure_peak_rss  # noqa: PLC0415

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
    return START_S + (len(spec.steps) + 3) * (options.get("seconds", 0.5) + MEASURE_S)


def _recommend_timeout(spec: PipelineSpec, options: Mapping[str, Any]) -> float:
    from pipeline_core.analysis.recommend import RULES  # noqa: PLC0415

    return START_S + (len(RULES) + 1) * (options.get("seconds", 0.5) + MEASURE_S)


def _tune_timeout(spec: PipelineSpec, options: Mapping[str, Any]) -> float:
    budget = options.get("budget_s", 30.0)
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
    from pipeline_core.isolate import start_job  # noqa: PLC0415

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
    from pipeline_core.isolate import run_job  # noqa: PLC0415

    return run_job(**_job_arguments(kind, spec, timeout_s, options), on_progress=on_progress)


def _job_arguments(
    kind: str, spec: PipelineSpec, timeout_s: float | None, options: dict[str, Any]
) -> dict[str, Any]:
    """What `isolate.start_job`/`run_job` need for an analysis job of `kind` on `spec`."""
    from pipeline_core.run_settings import default_memory_limit_mb  # noqa: PLC0415

    job = _kind(kind)
    return {
        "fn": job.fn,
        "args": (spec.to_json(),),
        "kwargs": options,
        "what": job.what,
        "timeout_s": timeout_s or job.timeout_s(spec, options),
        "memory_limit_mb": default_memory_limit_mb(),
    }
