"""A scaling study: the same spec read through 1, 2, 4 … local tf.data service workers.

The spec's `distribute` step (service "local") is run once per worker count, each as an
ordinary profile run (stored, so the Runs page compares them). The study reports
throughput against workers beside the ideal line, and says from the readings which kind
of pipeline it is: one that waits (slow storage, the `sleep` step) scales on one
machine; one whose workers already use the machine's cores cannot.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline_core.metrics import available_cores
from pipeline_core.profile.result import RunResult
from pipeline_core.profile.run import start_profile
from pipeline_core.profile.settings import ProfileError, RunSettings
from pipeline_core.spec import load_spec
from pipeline_core.steps import LOCAL, DistributeStep

SCALES_EFFICIENCY = 0.6  # the last count reaches this share of the ideal: it scales
CPU_BOUND_SHARE = 0.75  # workers + consumer use this share of the cores: CPU-bound
MAX_WORKERS = 16


@dataclass(frozen=True)
class ScalePoint:
    """One run of the study."""

    workers: int
    status: str
    reason: str | None
    examples_per_s: float | None
    workers_cpu_percent: float | None  # the workers' CPU means added up (100 = one core)
    consumer_cpu_percent: float | None  # the profiling process's CPU mean
    run_id: int | None
    # the whole machine's CPU mean over the run, all processes (100 = one core busy)
    machine_cpu_percent: float | None = None

    @classmethod
    def from_result(cls, workers: int, result: RunResult) -> ScalePoint:
        summary = result.to_summary_dict()
        cpus = [w["cpu_mean_percent"] for w in summary["workers"]]
        known = [c for c in cpus if c is not None]
        return cls(
            workers=workers,
            status=result.status,
            reason=result.reason,
            examples_per_s=summary["examples_per_s"],
            workers_cpu_percent=sum(known) if known else None,
            consumer_cpu_percent=summary.get("cpu_percent_mean"),
            run_id=result.run_id,
            machine_cpu_percent=summary.get("machine_cpu_percent_mean"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ScalingStudy:
    """The points of a study, in worker order, and the machine's cores."""

    points: tuple[ScalePoint, ...]
    cores: int

    @property
    def base(self) -> ScalePoint | None:
        """The first point with a throughput: speed-ups are against it."""
        return next((p for p in self.points if p.examples_per_s), None)

    def speedup(self, point: ScalePoint) -> float | None:
        base = self.base
        if base is None or not point.examples_per_s:
            return None
        return point.examples_per_s / base.examples_per_s

    def ideal(self, point: ScalePoint) -> float | None:
        """The throughput `point` would reach if it grew in proportion to the workers."""
        base = self.base
        return None if base is None else base.examples_per_s * point.workers / base.workers

    def efficiency(self, point: ScalePoint) -> float | None:
        ideal, speedup = self.ideal(point), self.speedup(point)
        if ideal is None or speedup is None or self.base is None:
            return None
        return point.examples_per_s / ideal

    def _measured(self) -> list[ScalePoint]:
        return [p for p in self.points if p.examples_per_s]

    def _cpu_used(self, point: ScalePoint) -> float:
        """The CPU busy at `point` (100 = one core): the workers' and the consumer's, or the
        whole machine's where that reads more.

        The workers' figure is the mean of what each reported when scraped; the
        machine's is sampled by the profiling process over the run and counts every
        process (the dispatcher too), so it catches CPU the workers' figures miss.
        """
        processes = (point.workers_cpu_percent or 0.0) + (point.consumer_cpu_percent or 0.0)
        return max(processes, point.machine_cpu_percent or 0.0)

    def kind(self) -> str:
        """ "scales", "cpu-bound", "does not scale", or "unknown" (under two runs measured),
        from the last count's throughput against ideal and the CPU the machine had left."""
        measured = self._measured()
        if len(measured) < 2:
            return "unknown"
        last = measured[-1]
        if self.efficiency(last) >= SCALES_EFFICIENCY and self.speedup(last) > 1.2:
            return "scales"
        if self._cpu_used(last) / (100.0 * self.cores) >= CPU_BOUND_SHARE:
            return "cpu-bound"
        return "does not scale"

    def verdict(self) -> str:
        """`kind()` in a sentence with the figures behind it and what to do."""
        kind, measured = self.kind(), self._measured()
        if kind == "unknown":
            failed = [p for p in self.points if p.status != "completed"]
            why = f": {failed[0].reason}" if failed else ""
            return f"Not enough runs completed to tell how it scales{why}."
        last = measured[-1]
        efficiency, used = self.efficiency(last), self._cpu_used(last)
        counts = (
            f"{last.workers} workers read {self.speedup(last):.2f}× as fast as "
            f"{measured[0].workers} ({efficiency:.0%} of ideal)"
        )
        if kind == "scales":
            each = (last.workers_cpu_percent or 0.0) / last.workers
            return (
                f"Scales: {counts}. Each worker used {each:.0f}% of a core: the workers "
                "wait (like slow storage) rather than compute, so more workers add "
                "throughput, on this machine or others."
            )
        if kind == "cpu-bound":
            return (
                f"CPU-bound: {counts} while this machine's cores were {used:.0f}% busy "
                f"of {100 * self.cores:.0f}% ({self.cores} cores). More "
                "workers here cannot help: start workers on other machines (`python -m "
                "pipeline_core serve worker`, README: Scale out)."
            )
        return (
            f"Does not scale: {counts} with the CPUs {used / (100.0 * self.cores):.0%} "
            "busy. The limit is elsewhere: the steps after the distribute step (they run "
            "in the consumer), the dispatcher, or moving the data; move steps above the "
            "distribute step, or try compression null."
        )

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for point in self.points:
            rows.append(
                {
                    **point.to_dict(),
                    "speedup": self.speedup(point),
                    "ideal_examples_per_s": self.ideal(point),
                    "efficiency": self.efficiency(point),
                }
            )
        return {"cores": self.cores, "points": rows, "kind": self.kind(), "verdict": self.verdict()}


def _workers(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def worker_counts(text: str) -> tuple[int, ...]:
    """ "1,2,4" → (1, 2, 4); raises `ProfileError` naming the fix."""
    try:
        counts = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ProfileError(
            f"worker counts {text!r} are not whole numbers: write them like 1,2,4"
        ) from None
    if not counts or any(not 1 <= n <= MAX_WORKERS for n in counts):
        raise ProfileError(f"worker counts must be 1 to {MAX_WORKERS}, like 1,2,4; got {text!r}")
    if len(set(counts)) != len(counts):
        raise ProfileError(f"worker counts {text!r} repeat a count: give each once")
    return tuple(sorted(counts))


def with_workers(spec: Any, workers: int) -> dict[str, Any]:
    """The spec with its local distribute step set to `workers` workers.

    Raises:
        ProfileError: the spec has no distribute step with service "local".
    """
    model = load_spec(spec)
    index = next(
        (
            i
            for i, step in enumerate(model.steps)
            if isinstance(step, DistributeStep) and step.service == LOCAL
        ),
        None,
    )
    if index is None:
        raise ProfileError(
            'a scaling study needs a distribute step with "service": "local": add '
            '{"op": "distribute", "service": "local"} after the steps the workers should '
            "run (usually after the source and the maps, before batch)"
        )
    data = copy.deepcopy(model.to_dict())
    data["steps"][index]["workers"] = workers
    return data


class ScalingRun:
    """A scaling study in progress, one profile run at a time, never blocking.

    `poll()` records the current run once it has ended and starts the next count;
    the Profile page polls it from its refresh, `scaling_study` in a loop. `stop()`
    stops the current run and starts no other.
    """

    def __init__(
        self,
        spec: Any,
        workers: Sequence[int],
        *,
        settings: RunSettings | None = None,
        store: Any = None,
        summary_extra: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or RunSettings(max_batches=200, max_seconds=20.0, repeat=True)
        self.name = self.settings.name or load_spec(spec).name or "pipeline"
        self.variants = [(count, with_workers(spec, count)) for count in workers]
        self.store = store
        self.summary_extra = summary_extra
        self.points: list[ScalePoint] = []
        self.handle: Any = None  # the current (or last) run's RunHandle
        self.stopped = False
        self._next = 0
        self._start_next()

    @property
    def counts(self) -> list[int]:
        return [count for count, _ in self.variants]

    @property
    def current(self) -> int | None:
        """The worker count running now, None when the study is over."""
        return None if self.done else self.variants[self._next - 1][0]

    @property
    def done(self) -> bool:
        return len(self.points) == self._next and (self.stopped or self._next == len(self.variants))

    def _start_next(self) -> None:
        count, variant = self.variants[self._next]
        settings = dataclasses.replace(self.settings, name=f"{self.name} · {_workers(count)}")
        self.handle = start_profile(
            variant, settings=settings, store=self.store, summary_extra=self.summary_extra
        )
        self._next += 1

    def poll(self) -> ScalePoint | None:
        """Record the current run if it has ended (and start the next); the new point."""
        if self.handle is None or not self.handle.done or len(self.points) == self._next:
            return None
        point = ScalePoint.from_result(self.variants[self._next - 1][0], self.handle.result())
        self.points.append(point)
        if not self.stopped and self._next < len(self.variants):
            self._start_next()
        return point

    def stop(self) -> None:
        self.stopped = True
        if self.handle is not None and not self.handle.done:
            self.handle.stop()

    def study(self) -> ScalingStudy:
        """The study of the runs recorded so far."""
        return ScalingStudy(tuple(self.points), available_cores())


def scaling_study(
    spec: Any,
    workers: Sequence[int],
    *,
    settings: RunSettings | None = None,
    store: Any = None,
    on_point: Callable[[ScalePoint], None] | None = None,
) -> ScalingStudy:
    """Profile `spec` once per worker count (in order) and return the study.

    Each run is named "<name> · N workers" ("1 worker") and stored in `store` when
    given; `on_point` gets each point as it completes. Ctrl-C stops the study and
    keeps what was measured.
    """
    study = ScalingRun(spec, workers, settings=settings, store=store)
    try:
        while not study.done:
            study.handle.wait(0.2)
            point = study.poll()
            if point is not None and on_point is not None:
                on_point(point)
    except KeyboardInterrupt:
        study.stop()
        study.handle.wait(30)
        study.poll()
    return study.study()
