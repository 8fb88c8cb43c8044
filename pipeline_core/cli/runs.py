"""CLI commands `profile`, `scale` and `runs` (registered into `python -m pipeline_core`).

python -m pipeline_core profile SPEC.json [--batches N] [--seconds S]
    [--step-ms M | --step-model small] [--json OUT] [--no-store] [--db PATH]
python -m pipeline_core scale SPEC.json --workers 1,2,4 [--batches N] [--seconds S]
    [--json OUT] [--no-store] [--db PATH]
python -m pipeline_core runs list|show ID|export ID [--format json|csv] [-o FILE]
    |delete ID|rename ID NAME|import FILE [--db PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline_core.cli._io import positive_float, positive_int, write_json, write_output
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import MEMORY_NOTE

EXIT_FAILED_RUN = 1
EXIT_STOPPED_RUN = 3  # stopped before its limit (the memory ceiling); the partial run is stored


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def format_summary(summary: dict[str, Any]) -> str:
    """A two-column table of a run summary (`RunResult.to_summary_dict()`)."""
    latency = summary.get("latency_ms") or {}
    rows = [
        ("status", summary.get("status")),
        ("reason", summary.get("reason") or summary.get("end_reason")),
        ("batches", summary.get("batches")),
        ("examples", summary.get("examples")),
        ("first batch", _fmt(summary.get("first_batch_s"), "s", 3)),
        ("examples/s (steady)", _fmt(summary.get("examples_per_s"), digits=1)),
        ("batches/s (steady)", _fmt(summary.get("batches_per_s"), digits=1)),
        ("wait p50", _fmt(latency.get("p50"), "ms", 3)),
        ("wait p90", _fmt(latency.get("p90"), "ms", 3)),
        ("wait p99", _fmt(latency.get("p99"), "ms", 3)),
        ("wait max", _fmt(latency.get("max"), "ms", 3)),
        ("stalls", summary.get("stalls")),
        ("simulated step", summary.get("step")),
        ("input-bound", _fmt(summary.get("input_bound_percent"), "%", 1)),
        ("process CPU (mean)", _fmt(summary.get("cpu_percent_mean"), "% of a core", 0)),
        ("held by the pipeline", _fmt(summary.get("held_by_pipeline_mb"), "MB", 0)),
        ("private memory peak", _fmt(summary.get("private_peak_mb"), "MB", 0)),
        ("TensorFlow baseline", _fmt(summary.get("private_baseline_mb"), "MB private", 0)),
        ("file-backed peak", _fmt(summary.get("file_peak_mb"), "MB", 0)),
        ("RSS peak", _fmt(summary.get("rss_peak_mb"), "MB", 0)),
        ("GPU utilisation", _fmt(summary.get("gpu_utilization_mean"), "%", 0)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value if value is not None else 'n/a'}" for label, value in rows]
    if summary.get("private_peak_mb") is not None:
        lines.append(f"(memory: {MEMORY_NOTE})")
    for worker in summary.get("workers") or ():
        cpu = _fmt(worker["cpu_mean_percent"], "% of a core", 0)
        rss = _fmt(worker["rss_peak_mb"], "MB", 0)
        gone = "" if worker["answered_at_end"] else ", stopped answering"
        lines.append(f"{'worker ' + worker['address']:<{width}}  CPU {cpu}, RSS peak {rss}{gone}")
    if summary.get("verdict"):
        lines.append(f"\n{summary['verdict']}")
    return "\n".join(lines)


def _store(args: argparse.Namespace):
    from pipeline_core.store import RunStore

    return RunStore(args.db)


# --- profile --------------------------------------------------------------------------------


def _progress(snapshot) -> None:
    rate = f"{snapshot.throughput:,.0f} examples/s" if snapshot.throughput else "..."
    sys.stderr.write(
        f"\r{snapshot.status}: {snapshot.batches} batches, {rate}, {snapshot.elapsed_s:.1f} s   "
    )
    sys.stderr.flush()


def _profile(args: argparse.Namespace) -> int:
    from pipeline_core.profile import RunSettings, profile
    from pipeline_core.spec import load_spec

    spec = load_spec(Path(args.spec))
    settings = RunSettings(
        max_batches=args.batches,
        max_seconds=args.seconds,
        memory_limit_mb=args.memory_mb,
        step_ms=args.step_ms,
        step_model=args.step_model,
        name=args.name,
        repeat=args.repeat,
    )
    store = None if args.no_store else _store(args)
    live = _progress if sys.stderr.isatty() else None
    result = profile(spec, settings=settings, store=store, on_snapshot=live)
    if live:
        sys.stderr.write("\n")
    summary = result.to_summary_dict()
    print(format_summary(summary))
    if result.run_id is not None:
        print(f"\nstored as run {result.run_id} in {store.path}")
    if args.json:
        write_json(summary, args.json)
    if result.status == "stopped":  # nobody presses Stop here: the memory ceiling did
        sys.stderr.write(f"error: {result.reason}\n")
        return EXIT_STOPPED_RUN
    return EXIT_FAILED_RUN if result.status == "failed" else 0


def format_study(study: dict[str, Any]) -> str:
    """The table of a scaling study (`ScalingStudy.to_dict()`) and its verdict."""
    head = (
        "workers",
        "examples/s",
        "ideal",
        "speed-up",
        "of ideal",
        "workers' CPU",
        "machine CPU",
        "run",
    )
    rows = [head]
    for p in study["points"]:
        rate = _fmt(p["examples_per_s"], digits=0) if p["status"] == "completed" else p["status"]
        rows.append(
            (
                str(p["workers"]),
                rate,
                _fmt(p["ideal_examples_per_s"], digits=0),
                "n/a" if p["speedup"] is None else f"{p['speedup']:.2f}×",
                "n/a" if p["efficiency"] is None else f"{p['efficiency']:.0%}",
                _fmt(p["workers_cpu_percent"], "%", 0),
                _fmt(p.get("machine_cpu_percent"), "%", 0),
                "—" if p["run_id"] is None else f"#{p['run_id']}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([*lines, "", study["verdict"]])


def _scale(args: argparse.Namespace) -> int:
    from pipeline_core.profile import RunSettings
    from pipeline_core.profile.scale import scaling_study, worker_counts

    counts = worker_counts(args.workers)
    settings = RunSettings(max_batches=args.batches, max_seconds=args.seconds, repeat=True)
    store = None if args.no_store else _store(args)

    def said(point) -> None:
        rate = _fmt(point.examples_per_s, "examples/s", 0)
        print(f"{point.workers} workers: {point.status}, {rate}", file=sys.stderr, flush=True)

    study = scaling_study(Path(args.spec), counts, settings=settings, store=store,
                          on_point=said)  # fmt: skip
    data = study.to_dict()
    print(format_study(data))
    if store is not None:
        ids = ",".join(str(p.run_id) for p in study.points if p.run_id is not None)
        print(f"\nstored as runs {ids}; compare them on the Runs page (?run={ids})")
    if args.json:
        write_json(data, args.json)
    return 0 if all(p.status == "completed" for p in study.points) else EXIT_FAILED_RUN


# --- runs -----------------------------------------------------------------------------------


def _runs_list(args: argparse.Namespace) -> int:
    runs = _store(args).list_runs()
    if not runs:
        print("no runs yet; profile a spec with `python -m pipeline_core profile SPEC.json`")
        return 0
    header = ("id", "created", "status", "batches", "examples/s", "p50 ms", "input-bound", "held MB",
              "name")  # fmt: skip
    rows = [
        (
            str(r.id),
            r.created[:19].replace("T", " "),
            r.status,
            _fmt(r.batches),
            _fmt(r.examples_per_s, digits=1),
            _fmt(r.latency_p50_ms, digits=3),
            _fmt(r.input_bound_percent, "%", 1),
            _fmt(r.held_by_pipeline_mb, digits=0),
            r.name,
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)), row[-1])
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    rec = _store(args).get_run(args.id)
    print(f"run {rec.id}: {rec.name}\ncreated {rec.created}, status {rec.status}")
    if rec.error:
        print(f"reason: {rec.error}")
    if rec.summary:
        print("\n" + format_summary(rec.summary))
    if rec.environment:
        print("\nenvironment:")
        for key, value in rec.environment.items():
            print(f"  {key}: {value}")
    spec_name = (rec.spec or {}).get("name", "(a Python dataset factory)")
    print(f"\nspec: {spec_name}; {len(rec.batches['index'])} batches, {len(rec.readings)} readings")
    return 0


def _runs_dump(args: argparse.Namespace) -> int:
    store = _store(args)
    text = store.dump_csv(args.id) if args.format == "csv" else store.dump_json(args.id)
    write_output(text, args.output)
    return 0


def _runs_delete(args: argparse.Namespace) -> int:
    _store(args).delete(args.id)
    print(f"deleted run {args.id}")
    return 0


def _runs_rename(args: argparse.Namespace) -> int:
    _store(args).rename(args.id, args.name)
    print(f"renamed run {args.id} to {args.name.strip()!r}")
    return 0


def _runs_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineLabError(
            f"cannot read {args.file!r}: {exc.strerror}; check the path"
        ) from None
    run_id = _store(args).import_json(text)
    print(f"imported {args.file} as run {run_id}")
    return 0


# --- registration ---------------------------------------------------------------------------


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", help="run database file (default $PIPELINE_LAB_DB or <data dir>/runs.sqlite)"
    )


def _add_profile(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="run a spec in a child process and time it")
    p.add_argument("spec", help="path of a pipeline spec JSON file")
    p.add_argument("--batches", type=positive_int, default=200, help="batch limit (200)")
    p.add_argument("--seconds", type=positive_float, default=30.0, help="time limit (30 s)")
    p.add_argument(
        "--memory-mb",
        type=positive_int,
        help="ceiling on the run's private memory; pages of memory-mapped files do not count "
        "(default: half the available memory)",
    )
    step = p.add_mutually_exclusive_group()
    step.add_argument("--step-ms", type=float, help="simulate a training step of M ms")
    step.add_argument(
        "--step-model", choices=("small",), help="train a small Keras model on each batch"
    )
    p.add_argument(
        "--repeat",
        action="store_true",
        help="repeat the data until a limit ends the run (default: one pass of the data)",
    )
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT")
    p.add_argument("--name", help="run name (default: the spec's name)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    _db_option(p)
    p.set_defaults(handler=_profile)


def _add_scale(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scale", help="profile a spec through 1, 2, 4 … local tf.data service workers"
    )
    p.add_argument("spec", help='a spec with a {"op": "distribute", "service": "local"} step')
    p.add_argument("--workers", default="1,2,4", help="worker counts to run (1,2,4)")
    p.add_argument("--batches", type=positive_int, default=200, help="batch limit per run (200)")
    p.add_argument("--seconds", type=positive_float, default=20.0, help="time limit per run (20 s)")
    p.add_argument("--json", metavar="OUT", help="write the study as JSON to OUT")
    p.add_argument("--no-store", action="store_true", help="do not record the runs")
    _db_option(p)
    p.set_defaults(handler=_scale)


def _add_runs(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="list, show, export, delete, rename, import runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    commands = {
        "list": ("list stored runs, newest first", _runs_list),
        "show": ("a run's summary and environment", _runs_show),
        "export": ("write a run as JSON or CSV", _runs_dump),
        "delete": ("delete a run", _runs_delete),
        "rename": ("rename a run", _runs_rename),
        "import": ("add a run from an exported JSON file", _runs_import),
    }
    for name, (text, handler) in commands.items():
        p = sub.add_parser(name, help=text)
        if name in ("show", "export", "delete", "rename"):
            p.add_argument("id", type=int, help="run id (see `runs list`)")
        if name == "rename":
            p.add_argument("name", help="the new name")
        if name == "export":
            p.add_argument("--format", choices=("json", "csv"), default="json")
            p.add_argument("-o", "--output", help="write here (default: stdout)")
        if name == "import":
            p.add_argument("file", help="a JSON file written by `runs export`")
        _db_option(p)
        p.set_defaults(handler=handler)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `profile`, `scale` and `runs` commands to `python -m pipeline_core`."""
    _add_profile(subparsers)
    _add_scale(subparsers)
    _add_runs(subparsers)
