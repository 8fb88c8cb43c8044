"""What a run leaves: the frozen `RunResult` with its derived figures, and live `Snapshot`s.

Only the first batch (warm-up: iterator creation, buffer fill) is kept apart:
steady-state figures exclude it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline_core.metrics import ProcessMemory, Reading, summarize_readings
from pipeline_core.profile.settings import RunSettings
from pipeline_core.profile.workers import summarize_workers


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class RunResult:
    """A finished run: the per-batch series, readings and methods for derived figures.

    Series are aligned per batch: `waits_ns` (the consumer's wait for the batch),
    `examples` (leading dimension of its features), `ends_ns` (when it arrived,
    ns since just before the iterator was created), `steps_ns` (simulated step).
    `baseline` is the child's memory with TensorFlow loaded, before the pipeline
    was built (None when the run failed before that).
    """

    status: str
    reason: str | None
    end_reason: str | None
    name: str
    settings: RunSettings
    waits_ns: tuple[int, ...]
    examples: tuple[int, ...]
    ends_ns: tuple[int, ...]
    steps_ns: tuple[int, ...]
    readings: tuple[Reading, ...] = ()
    environment: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    run_id: int | None = None
    elapsed_s: float = 0.0
    baseline: ProcessMemory | None = None
    data_length: int | None = None  # elements in one pass of the data (None: not known)
    # samples of the tf.data service workers read (`pipeline_core.profile.workers`)
    worker_samples: tuple[dict[str, Any], ...] = ()

    @property
    def repeated(self) -> bool:
        """The data ran out and started again (`RunSettings.repeat`) during the run."""
        return self.data_length is not None and self.batches > self.data_length

    @property
    def batches(self) -> int:
        return len(self.waits_ns)

    @property
    def total_examples(self) -> int:
        return sum(self.examples)

    @property
    def first_batch_s(self) -> float | None:
        """Seconds from creating the iterator to the first batch (warm-up)."""
        return self.ends_ns[0] / 1e9 if self.ends_ns else None

    def _steady_span_s(self) -> float | None:
        if len(self.ends_ns) < 2:
            return None
        span = (self.ends_ns[-1] - self.ends_ns[0]) / 1e9
        return span if span > 0 else None

    def examples_per_second(self, *, include_first: bool = False) -> float | None:
        """Examples per second; steady state (after the first batch) unless `include_first`."""
        if include_first:
            if not self.ends_ns or self.ends_ns[-1] <= 0:
                return None
            return self.total_examples / (self.ends_ns[-1] / 1e9)
        span = self._steady_span_s()
        return sum(self.examples[1:]) / span if span else None

    def batches_per_second(self, *, include_first: bool = False) -> float | None:
        """Batches per second; steady state unless `include_first`."""
        if include_first:
            if not self.ends_ns or self.ends_ns[-1] <= 0:
                return None
            return self.batches / (self.ends_ns[-1] / 1e9)
        span = self._steady_span_s()
        return (self.batches - 1) / span if span else None

    def _steady_waits_ms(self) -> list[float]:
        waits = self.waits_ns[1:] or self.waits_ns
        return [w / 1e6 for w in waits]

    def latency_ms(self) -> dict[str, float | None]:
        """Steady-state wait per batch: p50, p90, p99 and max, in ms."""
        waits = self._steady_waits_ms()
        return {
            "p50": _percentile(waits, 50),
            "p90": _percentile(waits, 90),
            "p99": _percentile(waits, 99),
            "max": max(waits, default=None),
        }

    def stall_count(self, *, factor: float = 5.0) -> int:
        """Steady-state waits longer than `factor` x the median (and over 1 ms)."""
        waits = self._steady_waits_ms()
        median = _percentile(waits, 50)
        if median is None:
            return 0
        return sum(1 for w in waits if w > factor * median and w > 1.0)

    def input_bound_percent(self) -> float | None:
        """Share of the training loop spent waiting for input: wait / (wait + step), steady
        state. None when no step was simulated."""
        if not self.settings.has_step or self.batches == 0:
            return None
        sl = slice(1, None) if self.batches > 1 else slice(None)
        wait = sum(self.waits_ns[sl])
        step = sum(self.steps_ns[sl])
        return 100.0 * wait / (wait + step) if wait + step > 0 else None

    def readings_summary(self) -> dict[str, Any]:
        """Mean CPU, peak memory by kind, minimum available memory, GPU figures."""
        return summarize_readings(self.readings)

    def memory_summary(self) -> dict[str, float | None]:
        """Peaks by kind, TensorFlow's baseline and what the pipeline held above it (MB).

        `held_by_pipeline_mb` = private peak - private baseline: the memory the
        pipeline's buffers, caches and source arrays took, without TensorFlow itself
        and without file pages the system can reclaim.
        """
        readings = self.readings_summary()
        base = self.baseline
        peak = readings["private_peak_mb"]
        held = None if base is None or peak is None else max(0.0, peak - base.private_mb)
        return {
            "private_peak_mb": peak,
            "file_peak_mb": readings["file_peak_mb"],
            "rss_peak_mb": readings["rss_peak_mb"],
            "private_baseline_mb": None if base is None else base.private_mb,
            "rss_baseline_mb": None if base is None else base.rss_mb,
            "held_by_pipeline_mb": held,
        }

    def verdict(self) -> str:
        """One line on what the run says about the pipeline."""
        if self.status == "failed":
            return f"Failed: {self.reason}"
        rate = self.examples_per_second()
        rate_text = f"{rate:,.0f} examples/s" if rate else "too few batches for a rate"
        share = self.input_bound_percent()
        if share is None:
            return (
                f"The pipeline delivers {rate_text} (p50 wait "
                f"{_ms(self.latency_ms()['p50'])}); simulate a training step to see whether "
                "it would keep an accelerator busy."
            )
        if share >= 50:
            return (
                f"Input-bound: the training loop waits for input {share:.0f}% of the time "
                "- speed up the pipeline (parallel map, prefetch, cache, vectorized maps)."
            )
        if share >= 10:
            return (
                f"Partly input-bound: {share:.0f}% of the loop is spent waiting for input; "
                "more parallelism or prefetch would help."
            )
        return f"Not input-bound: input waits are {share:.1f}% of the loop; the pipeline keeps up."

    def to_summary_dict(self) -> dict[str, Any]:
        """JSON-able key figures (the CLI's --json and the stored summary)."""
        latency = self.latency_ms()
        readings = self.readings_summary()
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "end_reason": self.end_reason,
            "batches": self.batches,
            "examples": self.total_examples,
            "elapsed_s": self.elapsed_s,
            "first_batch_s": self.first_batch_s,
            "examples_per_s": self.examples_per_second(),
            "examples_per_s_with_first": self.examples_per_second(include_first=True),
            "batches_per_s": self.batches_per_second(),
            "latency_ms": latency,
            "stalls": self.stall_count(),
            "step": _step_text(self.settings),
            "data_length": self.data_length,
            "repeated": self.repeated,
            "input_bound_percent": self.input_bound_percent(),
            "workers": summarize_workers(self.worker_samples),
            **readings,
            **self.memory_summary(),
            "verdict": self.verdict(),
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _step_text(settings: RunSettings) -> str:
    if settings.step_model:
        return f"model:{settings.step_model}"
    if settings.step_ms is not None:
        return f"{settings.step_ms:g} ms"
    return "none"


@dataclass(frozen=True)
class Snapshot:
    """The state of a run so far, for live charts (copied; safe to keep).

    `recent_waits_ms` holds the last 50 waits; `throughput` is examples/s over
    the last 2 s of batches. The full series so far are in `waits_ms`,
    `batch_times_s` (arrival, s since the iterator was created), `batch_examples`
    and `readings`; `baseline` is TensorFlow's memory before the pipeline was built.
    """

    status: str
    batches: int
    examples: int
    elapsed_s: float
    recent_waits_ms: tuple[float, ...]
    throughput: float | None
    latest_reading: Reading | None
    readings_count: int
    reason: str | None
    done: bool
    waits_ms: tuple[float, ...]
    batch_times_s: tuple[float, ...]
    batch_examples: tuple[int, ...]
    readings: tuple[Reading, ...]
    gpu: str
    baseline: ProcessMemory | None = None
    worker_samples: tuple[dict[str, Any], ...] = ()  # tf.data service workers, so far
