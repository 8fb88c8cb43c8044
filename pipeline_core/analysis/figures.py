"""Plotly figures of analysis results (no Streamlit: pages and reports share them)."""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go

from pipeline_core.analysis.machine import MachineLimit
from pipeline_core.analysis.stages import StageReport
from pipeline_core.analysis.tuner import TuneResult

_HEIGHT = 320
_SLOW = "#d62728"
_FAST = "#2ca02c"
_NORMAL = "#1f77b4"
_CONSUMER = "#7f7f7f"


def _stage_color(stage, worst, added: float) -> str:
    if stage.kind == "consumer":
        return _CONSUMER
    if stage is worst:
        return _SLOW
    return _FAST if added < 0 else _NORMAL


def stage_waterfall(report: StageReport) -> go.Figure:
    """Horizontal bars of the µs per example each stage adds, in pipeline order (top to
    bottom), then the consumer's own cost (grey); the bottleneck in red, stages that save
    time in green. Labels stay readable however many steps there are."""
    worst = report.bottleneck()
    stages = report.rows
    added = [s.added_us_per_example for s in stages]
    colors = [_stage_color(s, worst, a) for s, a in zip(stages, added, strict=True)]
    low, high = min(0.0, *added), max(0.0, *added)
    pad = 0.35 * ((high - low) or 1.0)
    fig = go.Figure(
        go.Bar(
            y=[s.label for s in stages],
            x=added,
            orientation="h",
            marker_color=colors,
            text=[
                f"{a:+,.0f} µs · {report.share(s):.0%}" for s, a in zip(stages, added, strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            customdata=[[s.examples_per_s, s.us_per_example] for s in stages],
            hovertemplate="%{y}<br>adds %{x:,.1f} µs/example<br>prefix: %{customdata[1]:,.1f} "
            "µs/example, %{customdata[0]:,.0f} examples/s<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(range=[low - (pad if low < 0 else 0), high + pad], zeroline=True)
    fig.update_layout(
        height=max(240, 90 + 40 * len(stages)),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title=f"Cost each stage adds (slowest: {worst.label})",
        xaxis_title="µs added per example",
        showlegend=False,
    )
    return fig


def _gauge_title(limit: MachineLimit) -> str:
    if limit.bound_by() == "consumer":
        return f"{limit.fraction():.0%} of what one Python loop can pull"
    return f"{limit.fraction():.0%} of what {limit.cores} cores can do"


def machine_gauge(limit: MachineLimit) -> go.Figure:
    """A gauge of the measured rate against the machine limit (`MachineLimit`)."""
    top = max(limit.limit_examples_per_s, limit.examples_per_s) * 1.1 or 1.0
    fig = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=limit.examples_per_s,
            number={"suffix": " ex/s", "valueformat": ",.0f"},
            title={"text": _gauge_title(limit)},
            gauge={
                "axis": {"range": [0, top]},
                "bar": {"color": _NORMAL},
                "threshold": {
                    "line": {"color": _SLOW, "width": 3},
                    "value": limit.limit_examples_per_s,
                },
            },
        )
    )
    fig.update_layout(height=260, margin={"l": 30, "r": 30, "t": 60, "b": 10})
    return fig


_SHORT = {
    "options.max_intra_op_parallelism": "intra-op threads",
    "options.private_threadpool_size": "thread pool",
    "options.autotune": "autotune",
    "interleave.parallel": "interleave",
    "source.parallel": "decode",
}


def knob_label(name: str) -> str:
    """A short axis label for a knob (`options.max_intra_op_parallelism` -> intra-op threads)."""
    return _SHORT.get(name, name)


_TICK_CHARS = 18  # an axis's value labels beside it; the first axis's stand in the margin


def tick_label(text: str) -> str:
    """A value label short enough to stand beside a parallel-coordinates axis: a cache of
    whole batches by its passes ("whole batches ×8"), anything else longer than
    `_TICK_CHARS` cut with an ellipsis (the trial table below the chart has it whole)."""
    whole = re.match(r"whole batches(?: of (\d+) passes)?\b", text)
    if whole:
        return f"whole batches ×{whole.group(1)}" if whole.group(1) else "whole batches"
    return text if len(text) <= _TICK_CHARS else text[: _TICK_CHARS - 1] + "…"


def knob_influence(result: TuneResult) -> dict[str, float]:
    """Per knob: best examples/s over its values, highest minus lowest (how much it matters)."""
    out = {}
    for knob in result.space.knobs:
        best: dict[str, float] = {}
        for t in result.search.trials:
            if t.ok:
                key = repr(t.settings[knob.name])
                best[key] = max(best.get(key, 0.0), t.score)
        out[knob.name] = (max(best.values()) - min(best.values())) if len(best) > 1 else 0.0
    return out


def trials_parallel_coordinates(result: TuneResult, *, max_knobs: int = 4) -> go.Figure:
    """One line per successful trial across the knobs that matter most (the winner's changes
    first, then by influence, at most `max_knobs`), colored by examples/s."""
    rows = [r for r in result.trials_table() if r["examples_per_s"] is not None]
    influence = knob_influence(result)
    changed = set(result.changes())
    ranked = sorted(result.space.knobs, key=lambda k: (k.name not in changed, -influence[k.name]))
    dims: list[dict[str, Any]] = []
    for knob in ranked[:max_knobs]:
        labels = list(result.space.describe({knob.name: v})[knob.name] for v in knob.values)
        dims.append(
            {
                "label": knob_label(knob.name),
                "values": [labels.index(r[knob.name]) for r in rows],
                "tickvals": list(range(len(labels))),
                "ticktext": [tick_label(label) for label in labels],
                "range": [0, max(len(labels) - 1, 1)],
            }
        )
    rates = [r["examples_per_s"] for r in rows]
    dims.append({"label": "examples/s", "values": rates})
    fig = go.Figure(
        go.Parcoords(
            line={"color": rates, "colorscale": "Viridis", "showscale": True},
            dimensions=dims,
        )
    )
    hidden = len(result.space.knobs) - min(len(result.space.knobs), max_knobs)
    title = f"{hidden} knobs that mattered less hidden" if hidden else None
    # the axis names stand above the axes: the note goes to the figure's top edge, above them
    note = {"text": title, "font": {"size": 12}, "y": 0.99, "yref": "container", "yanchor": "top"}
    fig.update_layout(
        height=_HEIGHT + 60,
        margin={"l": 110, "r": 40, "t": 80, "b": 20},  # room for the first axis's labels
        title=note if title else None,
    )
    return fig


def trials_progress(result: TuneResult) -> go.Figure:
    """Examples/s of each trial in order, the best window so far, and the re-measured
    figures of the verified trials (diamonds: the figures the headline uses)."""
    trials = result.search.trials
    best, running = [], 0.0
    for t in trials:
        running = max(running, t.score or 0.0)
        best.append(running)
    verified = result.verified
    fig = go.Figure(
        [
            go.Scatter(
                x=[t.index for t in trials],
                y=[t.score for t in trials],
                mode="markers",
                name="trial (one window)",
            ),
            go.Scatter(
                x=[t.index for t in trials], y=best, mode="lines", name="best window so far"
            ),
            go.Scatter(
                x=[r.trial for r in verified],
                y=[r.median for r in verified],
                mode="markers",
                marker={"symbol": "diamond", "size": 12, "color": _SLOW},
                name="re-measured (median)",
            ),
        ]
    )
    fig.add_hline(y=result.baseline_examples_per_s, line_dash="dot", annotation_text="as written")
    fig.update_layout(
        height=_HEIGHT,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="trial",
        yaxis_title="examples/s",
    )
    return fig
