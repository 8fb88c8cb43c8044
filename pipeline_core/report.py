"""Comparing stored runs and a self-contained HTML report of them.

- `compare_figures(records, baseline_id=...)`: key figures of each run and the
  ratio to a chosen baseline run (direction-aware: says which is better).
- `spec_differences(records)`: the spec fields whose values differ between runs.
- `settings_text(settings)` / `settings_differences(records)`: how a run was run
  (limits, simulated step, memory ceiling, repeat) in words, and where runs differ.
- `html_report(records, ...)`: one HTML file (plotly.js inline, no network
  needed) with the figures table, spec differences, overlaid charts, each
  run's summary, spec and environment.

Records are `store.RunRecord`s (anything with `id, name, created, status,
error, spec, environment, summary, settings, batches, readings`).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.io as pio

from pipeline_core import charts
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import MEMORY_NOTE


@dataclass(frozen=True)
class Figure:
    """One key figure read from a run's stored summary."""

    key: str
    label: str
    unit: str
    higher_is_better: bool | None  # None: a count, neither better nor worse
    read: Callable[[Mapping[str, Any]], float | None]


def _get(*path: str) -> Callable[[Mapping[str, Any]], float | None]:
    def read(summary: Mapping[str, Any]) -> float | None:
        value: Any = summary
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    return read


FIGURES: tuple[Figure, ...] = (
    Figure("examples_per_s", "throughput", "examples/s", True, _get("examples_per_s")),
    Figure("first_batch_s", "first batch", "s", False, _get("first_batch_s")),
    Figure("p50", "wait p50", "ms", False, _get("latency_ms", "p50")),
    Figure("p99", "wait p99", "ms", False, _get("latency_ms", "p99")),
    Figure("input_bound", "input-bound", "%", False, _get("input_bound_percent")),
    Figure("stalls", "stalls", "batches", False, _get("stalls")),
    Figure("cpu", "process CPU (mean)", "% of a core", False, _get("cpu_percent_mean")),
    Figure("held", "held by pipeline", "MB", False, _get("held_by_pipeline_mb")),
    Figure("private", "private peak", "MB", False, _get("private_peak_mb")),
    Figure("baseline", "TF baseline", "MB", None, _get("private_baseline_mb")),
    # File pages and RSS are not "worse" when larger: the system reclaims file pages.
    Figure("file", "file-backed peak", "MB", None, _get("file_peak_mb")),
    Figure("rss", "peak RSS", "MB", None, _get("rss_peak_mb")),
    Figure("batches", "batches", "", None, _get("batches")),
)


def key_figures(summary: Mapping[str, Any]) -> list[tuple[Figure, float | None]]:
    """Each key figure of one run's stored summary (None when not measured)."""
    return [(figure, figure.read(summary or {})) for figure in FIGURES]


@dataclass(frozen=True)
class FigureRow:
    """One figure across runs: values and ratios to the baseline (None when unknown)."""

    figure: Figure
    values: tuple[float | None, ...]
    ratios: tuple[float | None, ...]

    def verdicts(self) -> tuple[str, ...]:
        """ "better"/"worse"/"same"/"" of each run against the baseline."""
        out = []
        for ratio in self.ratios:
            if ratio is None or self.figure.higher_is_better is None:
                out.append("")
            elif abs(ratio - 1.0) < 0.02:
                out.append("same")
            else:
                out.append("better" if (ratio > 1) == self.figure.higher_is_better else "worse")
        return tuple(out)


def _baseline_index(records: Sequence[Any], baseline_id: int | None) -> int:
    if baseline_id is None:
        return 0
    for i, record in enumerate(records):
        if record.id == baseline_id:
            return i
    ids = ", ".join(str(r.id) for r in records)
    raise PipelineLabError(
        f"baseline run {baseline_id} is not among the compared runs ({ids}); pick one of them"
    )


def compare_figures(records: Sequence[Any], *, baseline_id: int | None = None) -> list[FigureRow]:
    """Key figures of each run with their ratio to the baseline run (default: the first)."""
    base = _baseline_index(records, baseline_id)
    rows = []
    for figure in FIGURES:
        values = tuple(figure.read(r.summary or {}) for r in records)
        reference = values[base]
        ratios = tuple(
            None if v is None or not reference else v / reference for v in values
        )  # fmt: skip
        rows.append(FigureRow(figure, values, ratios))
    return rows


def run_label(record: Any) -> str:
    """`#id name`, the column title of a run."""
    return f"#{record.id} {record.name}"


def figures_table(
    records: Sequence[Any], *, baseline_id: int | None = None
) -> list[dict[str, str]]:
    """`compare_figures` as display rows: one column per run, `value (×ratio)`."""
    base = _baseline_index(records, baseline_id)
    table = []
    for row in compare_figures(records, baseline_id=baseline_id):
        line = {"figure": row.figure.label, "unit": row.figure.unit}
        for i, (record, value, ratio, verdict) in enumerate(
            zip(records, row.values, row.ratios, row.verdicts(), strict=True)
        ):
            text = "n/a" if value is None else f"{value:,.4g}"
            if i != base and ratio is not None:
                text += f"  (×{ratio:.2f} {verdict})" if verdict else f"  (×{ratio:.2f})"
            line[run_label(record) + (" [baseline]" if i == base else "")] = text
        table.append(line)
    return table


# --- spec differences ------------------------------------------------------------


def flatten_spec(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values of a spec by field path (`steps[1].batch_size`)."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten_spec(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list | tuple) and data and any(isinstance(v, Mapping) for v in data):
        for i, value in enumerate(data):
            out.update(flatten_spec(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = list(data) if isinstance(data, tuple) else data
    return out


_ABSENT = "—"


def spec_differences(records: Sequence[Any]) -> list[dict[str, str]]:
    """Field paths whose value differs between the runs' specs, one column per run.

    A field one spec lacks shows as "—" (e.g. a step only one run has).
    """
    flat = [flatten_spec(r.spec or {}) for r in records]
    paths: list[str] = []
    for spec in flat:
        paths.extend(p for p in spec if p not in paths)
    rows = []
    for path in paths:
        values = [spec.get(path, _ABSENT) for spec in flat]
        if any(v != values[0] for v in values[1:]):
            row = {"field": path}
            for record, value in zip(records, values, strict=True):
                row[run_label(record)] = value if value is _ABSENT else json.dumps(value)
            rows.append(row)
    return rows


# --- run settings ------------------------------------------------------------------

# (stored key, label, words for a value): what `RunSettings` a comparison shows.
_SETTINGS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("max_batches", "batch limit", lambda v: "none" if v is None else f"{v:,} batches"),
    ("max_seconds", "time limit", lambda v: "none" if v is None else f"{v:g} s"),
    ("step_ms", "simulated step", lambda v: "none" if v is None else f"{v:g} ms"),
    ("step_model", "step model", lambda v: "none" if v is None else f"{v} model"),
    ("memory_limit_mb", "memory ceiling", lambda v: "none" if v is None else f"{v:,} MB"),
    ("repeat", "repeat data", lambda v: "—" if v is None else ("on" if v else "off")),
)


def settings_text(settings: Mapping[str, Any], *, short: bool = False) -> str:
    """How a run was run, in one line ("up to 200 batches · step: 20 ms · memory ceiling
    4,096 MB · data repeated"); runs stored before a setting existed just lack it.
    `short`: the few words a table column has room for ("≤ 200 batches · step: 20 ms ·
    mem 4.0 GB · repeated")."""
    upto = "≤ " if short else "up to "
    parts = []
    if settings.get("max_batches"):
        parts.append(f"{upto}{settings['max_batches']:,} batches")
    if settings.get("max_seconds"):
        parts.append(f"{upto}{settings['max_seconds']:g} s")
    if settings.get("step_model"):
        parts.append(f"step: {settings['step_model']} model")
    elif settings.get("step_ms") is not None:
        parts.append(f"step: {settings['step_ms']:g} ms")
    if mb := settings.get("memory_limit_mb"):
        if not short:
            parts.append(f"memory ceiling {mb:,} MB")
        else:
            parts.append(f"mem {mb / 1024:.1f} GB" if mb >= 1024 else f"mem {mb:,} MB")
    if "repeat" in settings:
        if short:
            parts.append("repeated" if settings["repeat"] else "one pass")
        else:
            parts.append(
                "data repeated to the limit" if settings["repeat"] else "one pass of the data"
            )
    return " · ".join(parts) or "default settings"


def settings_differences(records: Sequence[Any]) -> list[dict[str, str]]:
    """The run settings whose values differ between the runs, one column per run."""
    rows = []
    for key, label, words in _SETTINGS:
        values = [(r.settings or {}).get(key) for r in records]
        if any(v != values[0] for v in values[1:]):
            row = {"setting": label}
            for record, value in zip(records, values, strict=True):
                row[run_label(record)] = words(value)
            rows.append(row)
    return rows


# --- HTML ------------------------------------------------------------------------


def _table(rows: Sequence[Mapping[str, Any]], *, empty: str) -> str:
    if not rows:
        return f"<p class='muted'>{html.escape(empty)}</p>"
    heads = list(rows[0])
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in heads)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(h, '')))}</td>" for h in heads) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _run_section(record: Any) -> str:
    summary = record.summary or {}
    verdict = summary.get("verdict") or ""
    error = f"<p class='error'>Failed: {html.escape(record.error)}</p>" if record.error else ""
    details = [
        ("summary", json.dumps(summary, indent=2, default=str)),
        ("settings", json.dumps(record.settings or {}, indent=2, default=str)),
        ("spec", json.dumps(record.spec, indent=2)),
        ("environment", json.dumps(record.environment or {}, indent=2, default=str)),
    ]
    blocks = "".join(
        f"<details><summary>{name}</summary><pre>{html.escape(text)}</pre></details>"
        for name, text in details
    )
    return (
        f"<section><h3>{html.escape(run_label(record))}</h3>"
        f"<p>{html.escape(record.status)} · {html.escape(record.created)} · "
        f"{html.escape(settings_text(record.settings or {}))}</p>"
        f"{error}<p>{html.escape(verdict)}</p>{blocks}</section>"
    )


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1f2933;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #d9e2ec;padding:.3rem .6rem;text-align:left}
th{background:#f0f4f8}.muted{color:#829ab1}.error{color:#b42318;font-weight:600}
pre{background:#f7f9fb;padding:.6rem;overflow:auto;font-size:.8rem}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:.5rem}
"""


def html_report(
    records: Sequence[Any], *, baseline_id: int | None = None, title: str | None = None
) -> str:
    """A self-contained HTML report of one or more stored runs (plotly.js inline).

    Raises:
        PipelineLabError: no runs, or a baseline that is not among them.
    """
    if not records:
        raise PipelineLabError("a report needs at least one run; select one or more runs")
    title = title or (
        f"Pipeline Lab run {run_label(records[0])}"
        if len(records) == 1
        else f"Pipeline Lab: {len(records)} runs compared"
    )
    series = [charts.RunSeries.from_record(r, name=run_label(r)) for r in records]
    figures = charts.run_figures(series)
    chart_html = []
    for i, figure in enumerate(figures.values()):
        chart_html.append(
            pio.to_html(
                figure, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}
            )
        )
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='muted'>Generated {stamp} by Pipeline Lab.</p>",
        "<h2>Key figures</h2>",
        _table(figures_table(records, baseline_id=baseline_id), empty="No figures."),
        f"<p class='muted'>Memory: {html.escape(MEMORY_NOTE)}.</p>",
    ]
    if len(records) > 1:
        parts += [
            "<h2>Spec differences</h2>",
            _table(spec_differences(records), empty="The specs are identical."),
            "<h2>Settings differences</h2>",
            _table(settings_differences(records), empty="The runs used the same settings."),
        ]
    if not any(s.batches.get("index") for s in series):
        parts.append("<p class='muted'>No batches were recorded.</p>")
    parts += ["<h2>Charts</h2><div class='charts'>", *chart_html, "</div>", "<h2>Runs</h2>"]
    parts += [_run_section(r) for r in records]
    parts.append("</body></html>")
    return "\n".join(parts)
