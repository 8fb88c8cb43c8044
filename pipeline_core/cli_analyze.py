"""`python -m pipeline_core analyze|tune SPEC.json`: the bottleneck and the fix, headless.

`analyze` prints the stage table (the bottleneck marked), the machine limit
and the memory estimate; `--recommend` adds measured recommendations. `tune`
runs the auto-tuner within `--budget-s` and prints every trial and the
speedup; `--output-spec` writes the tuned spec. `--json OUT` writes the same
figures as JSON (`analyze` names the bottleneck step index in
`stages.bottleneck_step`, null for the source).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    out = Path(path)
    try:
        out.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"cannot write {str(out)!r}: {exc.strerror}; pick a writable path"
        ) from None
    print(f"wrote {out}", file=sys.stderr)


def _analyze(args: argparse.Namespace) -> int:
    from pipeline_core.analysis import (  # noqa: PLC0415
        analyze_stages,
        format_bytes,
        format_stage_table,
        machine_limit,
        memory_estimate,
        recommend,
    )
    from pipeline_core.spec import load_spec  # noqa: PLC0415

    spec = load_spec(Path(args.spec))
    print(f"analyzing {spec.name!r}: timing {len(spec.steps) + 1} stages ...", file=sys.stderr)
    report = analyze_stages(spec, seconds=args.seconds)
    print(format_stage_table(report))
    worst = report.bottleneck()
    print(f"\nbottleneck: {worst.label} ({report.share(worst):.0%} of the time per example)")
    limit = machine_limit(spec, seconds=args.seconds, examples_per_s=report.final.examples_per_s)
    print(
        f"machine limit: {limit.limit_examples_per_s:,.0f} examples/s "
        f"({limit.single_core_examples_per_s:,.0f}/s on one core × {limit.cores}); "
        f"{limit.verdict()}"
    )
    memory = memory_estimate(spec)
    print(
        f"memory estimate: {format_bytes(memory.total_bytes)} held by buffers "
        f"({format_bytes(memory.available_bytes)} available)"
    )
    data: dict[str, Any] = {
        "stages": report.to_dict(),
        "machine_limit": limit.to_dict(),
        "memory": memory.to_dict(),
    }
    if args.recommend:
        found = recommend(spec, stages=report, seconds=args.seconds)
        print("\nrecommendations:" if found else "\nrecommendations: none (nothing measured helps)")
        for r in found:
            print(f"  - {r.title}: {r.benefit} — {r.reason}")
        data["recommendations"] = [r.to_dict() for r in found]
    _write_json(args.json, data)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from pipeline_core.analysis import tune  # noqa: PLC0415
    from pipeline_core.spec import load_spec  # noqa: PLC0415

    spec = load_spec(Path(args.spec))

    def progress(trial, used: float) -> None:
        rate = "failed" if trial.score is None else f"{trial.score:,.0f} examples/s"
        print(f"  trial {trial.index:>3} [{used:>4.0%} of budget] {rate}", file=sys.stderr)

    print(f"tuning {spec.name!r} for up to {args.budget_s:g} s ...", file=sys.stderr)
    result = tune(
        spec,
        budget_s=args.budget_s,
        trial_seconds=args.trial_seconds,
        tune_batch_size=args.batch_size,
        allow_reorder=args.allow_reorder,
        on_trial=progress,
    )
    rows = result.trials_table()
    knobs = [k.name for k in result.space.knobs]
    print("  ".join(["trial", *knobs, "examples/s"]))
    for row in rows:
        rate = "failed" if row["examples_per_s"] is None else f"{row['examples_per_s']:,.0f}"
        print("  ".join([str(row["trial"]), *(row[k] for k in knobs), rate]))
    print(
        f"\n{len(rows)} trials of a {result.space.size()}-point grid in {result.elapsed_s:.1f} s; "
        f"as written {result.baseline_examples_per_s:,.0f} examples/s, tuned "
        f"{result.best_examples_per_s:,.0f} examples/s: {result.speedup():.2f}× speedup"
    )
    for knob, (before, after) in result.changes().items():
        print(f"  {knob}: {before} -> {after}")
    if args.output_spec:
        Path(args.output_spec).write_text(result.apply().to_json(), encoding="utf-8")
        print(f"wrote the tuned spec to {args.output_spec}", file=sys.stderr)
    _write_json(args.json, result.to_dict())
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, received {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `analyze` and `tune` commands."""
    analyze = subparsers.add_parser(
        "analyze", help="time each stage of a spec, name the bottleneck, machine limit, memory"
    )
    analyze.add_argument("spec", help="path of a pipeline spec JSON file")
    analyze.add_argument("--json", metavar="OUT", help="also write the figures as JSON here")
    analyze.add_argument(
        "--seconds", type=_positive, default=0.5, help="timed window per stage (default 0.5)"
    )
    analyze.add_argument(
        "--recommend", action="store_true", help="also measure the recommendations"
    )
    analyze.set_defaults(handler=_analyze)

    tune = subparsers.add_parser("tune", help="auto-tune a spec's parallelism, cache, prefetch")
    tune.add_argument("spec", help="path of a pipeline spec JSON file")
    tune.add_argument(
        "--budget-s", type=_positive, default=30.0, help="search budget in seconds (default 30)"
    )
    tune.add_argument("--json", metavar="OUT", help="also write every trial as JSON here")
    tune.add_argument(
        "--trial-seconds", type=_positive, default=0.4, help="timed window per trial (0.4)"
    )
    tune.add_argument("--batch-size", action="store_true", help="also tune the batch size")
    tune.add_argument("--allow-reorder", action="store_true", help="also try deterministic = false")
    tune.add_argument("--output-spec", metavar="PATH", help="write the tuned spec here")
    tune.set_defaults(handler=_tune)
