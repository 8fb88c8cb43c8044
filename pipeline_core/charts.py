"""Plotly figures of runs: live on the Profile page, overlaid on the Runs page, in reports.

Every builder takes a sequence of `RunSeries` (one for a live run, several to
compare) and returns a `plotly.graph_objects.Figure` with one trace per run
(or per run and measure). No Streamlit here: the HTML report uses the same
figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go

BATCH_COLUMNS = ("index", "t_s", "wait_ms", "examples", "step_ms")
THROUGHPUT_WINDOW_S = 1.0
_HEIGHT = 280
_COLORS = plotly.colors.qualitative.Plotly


@dataclass(frozen=True)
class RunSeries:
    """The time series of one run, as the store and the live snapshots hold them.

    Attributes:
        name: legend name.
        batches: column name (`BATCH_COLUMNS`) -> list, one entry per batch.
        readings: flat reading dicts (`metrics.Reading.to_dict()`), each with `t`.
        baseline_mb: private memory of the process with TensorFlow loaded, before the
            pipeline was built (None when unknown, e.g. runs stored before it was measured).
    """

    name: str
    batches: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    readings: Sequence[Mapping[str, Any]] = ()
    baseline_mb: float | None = None

    @classmethod
    def from_record(cls, record: Any, *, name: str | None = None) -> RunSeries:
        """From a stored `RunRecord`."""
        baseline = (record.summary or {}).get("private_baseline_mb")
        return cls(name or f"#{record.id} {record.name}", record.batches, record.readings, baseline)

    @classmethod
    def from_snapshot(cls, snapshot: Any, *, name: str = "live run") -> RunSeries:
        """From a live `profile.Snapshot` (or a finished `RunResult` via `from_result`)."""
        return cls(
            name,
            {
                "index": list(range(len(snapshot.waits_ms))),
                "t_s": list(snapshot.batch_times_s),
                "wait_ms": list(snapshot.waits_ms),
                "examples": list(snapshot.batch_examples),
            },
            [r.to_dict() for r in snapshot.readings],
            _baseline_mb(snapshot),
        )

    @classmethod
    def from_result(cls, result: Any, *, name: str | None = None) -> RunSeries:
        """From a finished `profile.RunResult`."""
        return cls(
            name or result.name,
            {
                "index": list(range(len(result.waits_ns))),
                "t_s": [e / 1e9 for e in result.ends_ns],
                "wait_ms": [w / 1e6 for w in result.waits_ns],
                "examples": list(result.examples),
                "step_ms": [s / 1e6 for s in result.steps_ns],
            },
            [r.to_dict() for r in result.readings],
            _baseline_mb(result),
        )

    def column(self, name: str) -> np.ndarray:
        """One batch column as a float array (missing values as NaN)."""
        values = self.batches.get(name) or []
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    def reading(self, name: str) -> np.ndarray:
        """One reading field as a float array (missing values as NaN)."""
        values = [r.get(name) for r in self.readings]
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    @property
    def has_memory_kinds(self) -> bool:
        """Whether the readings tell private memory apart (runs stored before did not)."""
        return any(r.get("private_mb") is not None for r in self.readings)

    @property
    def has_gpu(self) -> bool:
        """Whether any reading holds a GPU value."""
        return any(r.get("gpu_utilization_percent") is not None for r in self.readings)


def _baseline_mb(run: Any) -> float | None:
    baseline = getattr(run, "baseline", None)
    return None if baseline is None else baseline.private_mb


def _figure(
    title: str, x: str, y: str, *, height: int = _HEIGHT, subtitle: str | None = None
) -> go.Figure:
    fig = go.Figure()
    heading: dict[str, Any] = {"text": title, "font": {"size": 14}}
    if subtitle:
        heading["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": "#52606d"}}
    fig.update_layout(
        title=heading,
        xaxis_title=x,
        yaxis_title=y,
        height=height,
        margin={"l": 50, "r": 10, "t": 58 if subtitle else 40, "b": 40},
        legend={"orientation": "h", "y": -0.25, "x": 0},
        template="plotly_white",
        uirevision=title,  # keep zoom/legend state while a live chart updates
    )
    return fig


def _label(run: RunSeries, what: str, runs: Sequence[RunSeries]) -> str:
    return what if len(runs) == 1 else f"{run.name} · {what}"


def wait_over_time(runs: Sequence[RunSeries]) -> go.Figure:
    """Per-batch wait (ms) against batch number; the first batch is marked apart."""
    fig = _figure("Wait for each batch", "batch", "wait (ms)")
    for run in runs:
        index, wait = run.column("index"), run.column("wait_ms")
        fig.add_scatter(x=index, y=wait, mode="lines", name=_label(run, "wait", runs))
        if len(wait) and len(runs) == 1:
            fig.add_scatter(
                x=index[:1], y=wait[:1], mode="markers", name="first batch",
                marker={"size": 9, "symbol": "diamond"},
            )  # fmt: skip
    return fig


def wait_histogram(runs: Sequence[RunSeries]) -> go.Figure:
    """Distribution of the steady-state waits (first batch left out)."""
    fig = _figure("Wait distribution (after the first batch)", "wait (ms)", "batches")
    for run in runs:
        fig.add_histogram(x=run.column("wait_ms")[1:], name=run.name, opacity=0.7, nbinsx=40)
    fig.update_layout(barmode="overlay", showlegend=len(runs) > 1)
    return fig


def rolling_throughput(
    t_s: np.ndarray, examples: np.ndarray, *, window_s: float = THROUGHPUT_WINDOW_S
) -> np.ndarray:
    """Examples/s over the trailing `window_s` at each batch (NaN where no span yet).

    The rate at batch i counts the examples of the batches after the first one
    in the window, divided by the time between them, so it is exact for a
    steady pipeline and never divides by a near-zero span.
    """
    t_s = np.asarray(t_s, dtype=float)
    cum = np.cumsum(np.nan_to_num(np.asarray(examples, dtype=float)))
    start = np.searchsorted(t_s, t_s - window_s, side="left")
    start = np.minimum(start, np.arange(len(t_s)))
    span = t_s - t_s[start]
    counted = cum - cum[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, counted / span, np.nan)


def throughput(runs: Sequence[RunSeries], *, window_s: float = THROUGHPUT_WINDOW_S) -> go.Figure:
    """Rolling examples/s against time."""
    fig = _figure(f"Throughput (rolling {window_s:g} s)", "time (s)", "examples/s")
    for run in runs:
        t_s = run.column("t_s")
        rate = rolling_throughput(t_s, run.column("examples"), window_s=window_s)
        fig.add_scatter(x=t_s, y=rate, mode="lines", name=_label(run, "examples/s", runs))
    return fig


def cpu(runs: Sequence[RunSeries], *, per_core: bool = True) -> go.Figure:
    """Process CPU (100 = one core) and, for a single run, each core's use."""
    fig = _figure("CPU", "time (s)", "%")
    for run in runs:
        t = run.reading("t")
        fig.add_scatter(x=t, y=run.reading("cpu_percent"), mode="lines",
                        name=_label(run, "process (100 = 1 core)", runs))  # fmt: skip
        if per_core and len(runs) == 1:
            cores = [r.get("per_core_percent") or [] for r in run.readings]
            width = max((len(c) for c in cores), default=0)
            for k in range(width):
                values = [c[k] if k < len(c) else None for c in cores]
                fig.add_scatter(x=t, y=values, mode="lines", name=f"core {k}",
                                line={"width": 1, "dash": "dot"})  # fmt: skip
    return fig


MEMORY_SUBTITLE = "private: held by the process (the ceiling applies) · file-backed: reclaimable"
COMPARE_MEMORY_SUBTITLE = (
    "solid: private, held by the process (the ceiling applies) · dotted: file-backed, reclaimable"
)
_MEMORY_HEIGHT = 330


def memory(runs: Sequence[RunSeries]) -> go.Figure:
    """The pipeline process's memory by kind, TensorFlow's baseline and memory available.

    Private memory (what the process holds) is drawn apart from file-backed pages
    (mapped libraries and data files, which the system can reclaim). One run also
    shows their sum (the RSS), TensorFlow's baseline and the memory available;
    compared runs get one colour each, solid private and dotted file-backed. Runs
    stored before the kinds were measured show their RSS alone.
    """
    if len(runs) != 1:
        return _compared_memory(runs)
    [run] = runs
    fig = _figure("Memory", "time (s)", "MB", height=_MEMORY_HEIGHT, subtitle=MEMORY_SUBTITLE)
    t = run.reading("t")
    if not run.has_memory_kinds:
        fig.add_scatter(x=t, y=run.reading("rss_mb"), mode="lines",
                        name="RSS (kinds not measured)")  # fmt: skip
    else:
        fig.add_scatter(x=t, y=run.reading("private_mb"), mode="lines", name="private",
                        line={"width": 2.5})  # fmt: skip
        fig.add_scatter(x=t, y=run.reading("file_mb"), mode="lines", name="file-backed",
                        line={"dash": "dot"})  # fmt: skip
        fig.add_scatter(x=t, y=run.reading("rss_mb"), mode="lines", name="RSS",
                        line={"width": 1})  # fmt: skip
    if run.baseline_mb is not None and len(t):
        fig.add_scatter(x=[t[0], t[-1]], y=[run.baseline_mb] * 2, mode="lines",
                        name="TF baseline", line={"dash": "dash", "width": 1, "color": "#9aa5b1"})  # fmt: skip
    fig.add_scatter(x=t, y=run.reading("available_mb"), mode="lines", yaxis="y2",
                    name="available (right)", line={"dash": "dash", "width": 1})  # fmt: skip
    # Available memory is often 100x the process's: its own axis keeps both readable.
    fig.update_layout(yaxis={"tickformat": ",.0f", "rangemode": "tozero"}, margin={"r": 60},
                      legend={"y": -0.3},
                      yaxis2={"title": "available (MB)", "overlaying": "y", "side": "right",
                              "tickformat": ",.0f", "showgrid": False})  # fmt: skip
    return fig


def _compared_memory(runs: Sequence[RunSeries]) -> go.Figure:
    fig = _figure("Memory", "time (s)", "MB", height=_MEMORY_HEIGHT,
                  subtitle=COMPARE_MEMORY_SUBTITLE)  # fmt: skip
    for i, run in enumerate(runs):
        color = _COLORS[i % len(_COLORS)]
        t = run.reading("t")
        if not run.has_memory_kinds:
            fig.add_scatter(x=t, y=run.reading("rss_mb"), mode="lines", line={"color": color},
                            name=f"{run.name} (RSS: kinds not measured)")  # fmt: skip
            continue
        fig.add_scatter(x=t, y=run.reading("private_mb"), mode="lines", name=run.name,
                        legendgroup=run.name, line={"color": color, "width": 2.5})  # fmt: skip
        fig.add_scatter(x=t, y=run.reading("file_mb"), mode="lines", legendgroup=run.name,
                        name=f"{run.name} · file-backed", showlegend=False,
                        line={"color": color, "dash": "dot"})  # fmt: skip
    fig.update_layout(yaxis={"tickformat": ",.0f", "rangemode": "tozero"}, legend={"y": -0.3})
    return fig


def gpu(runs: Sequence[RunSeries]) -> go.Figure | None:
    """GPU utilization and memory, or None when no run has GPU readings."""
    measured = [r for r in runs if r.has_gpu]
    if not measured:
        return None
    fig = _figure("GPU", "time (s)", "utilization %")
    for run in measured:
        t = run.reading("t")
        fig.add_scatter(x=t, y=run.reading("gpu_utilization_percent"), mode="lines",
                        name=_label(run, "utilization %", runs))  # fmt: skip
        fig.add_scatter(x=t, y=run.reading("gpu_memory_used_mb"), mode="lines", yaxis="y2",
                        name=_label(run, "memory MB", runs), line={"dash": "dash"})  # fmt: skip
    fig.update_layout(yaxis2={"title": "memory (MB)", "overlaying": "y", "side": "right"})
    return fig


def label_distribution(counts: Mapping[int, int], *, title: str = "Labels") -> go.Figure:
    """Bar chart of class -> count."""
    fig = _figure(title, "class", "count", height=240)
    keys = sorted(counts)
    fig.add_bar(x=[str(k) for k in keys], y=[counts[k] for k in keys], name="count")
    fig.update_layout(showlegend=False)
    return fig


def _by_worker(samples: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    workers: dict[str, list[Mapping[str, Any]]] = {}
    for sample in samples:
        workers.setdefault(sample["address"], []).append(sample)
    return workers


def workers_figure(samples: Sequence[Mapping[str, Any]], what: str = "cpu") -> go.Figure:
    """Each tf.data service worker's CPU (`what="cpu"`, 100 = one core) or RSS
    (`what="rss"`) over time, from `WorkerWatch` samples; gaps where it did not answer."""
    key, title, unit = {
        "cpu": ("cpu_percent", "Workers' CPU", "% (100 = 1 core)"),
        "rss": ("rss_mb", "Workers' memory (RSS)", "MB"),
    }[what]
    fig = _figure(title, "time (s)", unit)
    for address, rows in _by_worker(samples).items():
        values = [r.get(key) if r.get("up") else None for r in rows]
        fig.add_scatter(x=[r["t"] for r in rows], y=values, mode="lines", name=address)
    return fig


def scaling(points: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Throughput against workers beside the ideal line (`ScalingStudy.to_dict()["points"]`)."""
    fig = _figure("Scaling: throughput against workers", "workers", "examples/s")
    done = [p for p in points if p.get("examples_per_s")]
    workers = [p["workers"] for p in done]
    fig.add_scatter(x=workers, y=[p["examples_per_s"] for p in done], mode="lines+markers",
                    name="measured")  # fmt: skip
    fig.add_scatter(x=workers, y=[p["ideal_examples_per_s"] for p in done], mode="lines",
                    name="ideal (proportional to workers)", line={"dash": "dash"})  # fmt: skip
    fig.update_xaxes(tickmode="array", tickvals=workers)
    fig.update_yaxes(rangemode="tozero")
    return fig


def run_figures(runs: Sequence[RunSeries]) -> dict[str, go.Figure]:
    """Every figure of these runs by name (GPU left out when there is none)."""
    figures = {
        "wait": wait_over_time(runs),
        "wait_histogram": wait_histogram(runs),
        "throughput": throughput(runs),
        "cpu": cpu(runs, per_core=len(runs) == 1),
        "memory": memory(runs),
    }
    gpu_figure = gpu(runs)
    if gpu_figure is not None:
        figures["gpu"] = gpu_figure
    return figures
