"""`python -m pipeline_core analyze|tune SPEC.json`: the bottleneck and the fix, headless.

`analyze` prints the stage table (the bottleneck marked, then the consumer's
own cost), the machine limit and the memory estimate; `--recommend` adds
measured recommendations and checks that their baseline agrees with the
stage analysis. `tune` runs the auto-tuner within `--budget-s`, prints every
trial with the re-measured figures and the story the result tells (the
winner and as written, both re-measured; why the fastest single window was
not kept, when it was not); `--output-spec` writes the tuned spec. `--json
OUT` writes the same figures as JSON (`analyze` names the bottleneck step
index in `stages.bottleneck_step`, null for the source).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline_core.analysis import (
    WINDOW_S,
    agreement,
    analyze_stages,
    format_bytes,
    format_stage_table,
    machine_limit,
    memory_estimate,
    recommend,
    tune,
)
from pipeline_core.cli._io import positive_float, positive_int, write_file, write_json
from pipeline_core.spec import load_spec


def _analyze(args: argparse.Namespace) -> int:
    spec = load_spec(Path(args.spec))
    print(f"analyzing {spec.name!r}: timing {len(spec.steps) + 2} rows ...", file=sys.stderr)
    report = analyze_stages(spec, seconds=args.seconds, rounds=args.rounds)
    print(format_stage_table(report))
    worst = report.bottleneck()
    print(f"\nbottleneck: {worst.label} ({report.share(worst):.0%} of the time per example)")
    if report.consumer_bound():
        print(
            "the consumer's Python loop costs more per example than any stage: batch the "
            "data (or use a larger batch) so each pull carries more examples"
        )
    delivered = report.delivered.examples_per_s
    limit = machine_limit(spec, seconds=args.seconds, examples_per_s=delivered)
    print(
        f"machine limit: {limit.limit_examples_per_s:,.0f} examples/s "
        f"({limit.single_core_examples_per_s:,.0f}/s a core, {limit.cores} one-thread copies "
        f"side by side; a Python "
        f"loop pulls ready elements at {limit.consumer_examples_per_s:,.0f}/s); "
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
        agreed = agreement(stages=report, recommendations=found)
        print("\n" + agreed.summary())
        for line in agreed.explanations():
            print("  " + line)
        data["agreement"] = agreed.to_dict()
    if args.json:
        write_json(data, args.json)
    return 0


def _tune(args: argparse.Namespace) -> int:
    spec = load_spec(Path(args.spec))

    def progress(trial, used: float) -> None:
        rate = "failed" if trial.score is None else f"{trial.score:,.0f} examples/s"
        print(f"  trial {trial.index:>3} [{used:>4.0%} of budget] {rate}", file=sys.stderr)

    def verifying(trial: int, round_: int, rate: float, used: float) -> None:
        print(
            f"  re-measure #{trial:<3} round {round_ + 1} [{used:>4.0%} of budget] "
            f"{rate:,.0f} examples/s",
            file=sys.stderr,
        )

    print(f"tuning {spec.name!r} for up to {args.budget_s:g} s ...", file=sys.stderr)
    result = tune(
        spec,
        budget_s=args.budget_s,
        trial_seconds=args.trial_seconds,
        tune_batch_size=args.batch_size,
        allow_reorder=args.allow_reorder,
        on_trial=progress,
        on_verify=verifying,
    )
    rows = result.trials_table()
    knobs = [k.name for k in result.space.knobs]
    print("  ".join(["trial", "phase", *knobs, "examples/s", "re-measured", "outcome"]))
    for row in rows:
        rate = "failed" if row["examples_per_s"] is None else f"{row['examples_per_s']:,.0f}"
        again = row["re-measured ex/s"]
        again = "-" if again is None else f"{again:,.0f}"
        cells = [str(row["trial"]), row["phase"], *(row[k] for k in knobs), rate, again]
        print("  ".join([*cells, row["outcome"]]).rstrip())
    print()
    for line in result.story():
        print(line)
    for knob, (before, after) in result.changes().items():
        print(f"  {knob}: {before} -> {after}")
    if args.output_spec:
        write_file(args.output_spec, result.apply().to_json())
        print(f"wrote the tuned spec to {args.output_spec}", file=sys.stderr)
    if args.json:
        write_json(result.to_dict(), args.json)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `analyze` and `tune` commands."""
    analyze = subparsers.add_parser(
        "analyze", help="time each stage of a spec, name the bottleneck, machine limit, memory"
    )
    analyze.add_argument("spec", help="path of a pipeline spec JSON file")
    analyze.add_argument("--json", metavar="OUT", help="also write the figures as JSON here")
    analyze.add_argument(
        "--seconds",
        type=positive_float,
        default=WINDOW_S,
        help=f"timed window per measurement (default {WINDOW_S:g})",
    )
    analyze.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="measure every stage this many times (median)",
    )
    analyze.add_argument(
        "--recommend", action="store_true", help="also measure the recommendations"
    )
    analyze.set_defaults(handler=_analyze)

    tune_parser = subparsers.add_parser(
        "tune", help="auto-tune a spec's parallelism, vectorizing, cache, prefetch, options"
    )
    tune_parser.add_argument("spec", help="path of a pipeline spec JSON file")
    tune_parser.add_argument(
        "--budget-s",
        type=positive_float,
        default=60.0,
        help="budget of search and re-measurement in seconds (default 60)",
    )
    tune_parser.add_argument("--json", metavar="OUT", help="also write every trial as JSON here")
    tune_parser.add_argument(
        "--trial-seconds",
        type=positive_float,
        default=WINDOW_S,
        help=f"timed window per trial and re-measurement ({WINDOW_S:g})",
    )
    tune_parser.add_argument("--batch-size", action="store_true", help="also tune the batch size")
    tune_parser.add_argument(
        "--allow-reorder", action="store_true", help="also try deterministic = false"
    )
    tune_parser.add_argument("--output-spec", metavar="PATH", help="write the tuned spec here")
    tune_parser.set_defaults(handler=_tune)
