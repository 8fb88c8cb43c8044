"""Auto-tuning against the targets of issue 8: hand-written AUTOTUNE, the machine limit and
an exhaustive grid.

For each reference pipeline of the parity benchmark (`bench_parity`: the spec as
a user writes it in Pipeline Lab, AUTOTUNE everywhere, and its hand-written twin
written the way the TensorFlow guide writes it, on the same data):

- `tune(spec)` runs as a user runs it (default window, `BUDGET_S`): search,
  exploration, then re-measurement of the best trials against the baseline;
- an exhaustive grid runs over a reduced space (`grid_space`: parallelism
  limited to sequential / autotune, the rarely decisive thread-pool and
  autotune switches left out) so it finishes, one `GRID_TRIAL_S` window a point;
- the tuned spec, the grid's best, the spec as written, the hand-written twin and
  the tuned spec limited to one core are then timed as the parity benchmark times
  its pairs (`benchmarks._timing.timed_in_processes`): each built in a process of
  its own, one running at a time, short windows of a bare `for` loop in
  `REPEATS` rounds whose order rotates; medians, and 90% paired bootstrap
  intervals of the ratios (window i of each comes from round i);
- the machine limit is the rate of one-thread copies of the tuned spec, one per
  core, side by side (`machine.copies_dataset`), or the rate of a bare loop over
  its first elements ready in memory (the consumer), when lower; both are timed
  in those same rounds.

Columns, with the issue's targets: tuned ÷ hand-written AUTOTUNE (>= 1.5 where
caching or vectorizing applies — seed Example 3 and the image folder — and
>= 1.0 elsewhere), tuned ÷ machine limit (>= 0.9), tuned ÷ grid best (>= 0.95).
The grid's space is a subset of the tuner's, so a ratio above 1 means the tuner
found something the grid could not try.

    python -m benchmarks tune
    PIPELINE_LAB_BENCH_TUNE=ex3,image-folder python -m benchmarks tune
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks import bench_parity as parity
from benchmarks._timing import Paired, Window, timed_in_processes
from pipeline_core.analysis.examples import examples_in, is_batched
from pipeline_core.analysis.machine import consumer_dataset, copies_dataset, machine_limit
from pipeline_core.analysis.measure import cache_pass_examples
from pipeline_core.analysis.space import Knob, SearchSpace, search_space
from pipeline_core.analysis.tuner import tune
from pipeline_core.build import build
from pipeline_core.metrics import available_cores
from pipeline_core.spec import PipelineSpec, load_spec

BUDGET_S = float(os.environ.get("PIPELINE_LAB_BENCH_TUNE_BUDGET_S") or 60.0)
GRID_TRIAL_S = 0.5
ONLY_ENV = "PIPELINE_LAB_BENCH_TUNE"  # comma-separated case keys (default: all)
GRID_PARALLEL = (None, "autotune")
GRID_DROPPED = ("options.private_threadpool_size", "options.autotune", "batch.parallel")
# six processes a row, 11 rounds of 0.5 s windows: about a minute of timing
REPEATS = int(os.environ.get("PIPELINE_LAB_BENCH_TUNE_REPEATS") or 11)


@dataclass(frozen=True)
class Case:
    """A reference pipeline: its spec, its hand-written twin, the speedup target."""

    key: str
    name: str
    spec: Callable[[], dict[str, Any]]
    hand: Callable[[], Any]
    target: float


def cases() -> list[Case]:
    return [
        Case("ex3", "seed Ex. 3: numpy uint8 64x64", parity.spec_example3, parity.hand_example3, 1.5),
        Case(
            "image-folder",
            "image folder: JPEG, resize 224",
            parity.spec_image_folder,
            parity.hand_image_folder,
            1.5,
        ),
        Case("augment", "augment only: cached 224 float", parity.spec_augment, parity.hand_augment, 1.0),
        Case("tfrecord", "TFRecord: 4 shards", parity.spec_tfrecord, parity.hand_tfrecord, 1.0),
        Case("csv", "CSV: 4 files", parity.spec_csv, parity.hand_csv, 1.0),
    ]  # fmt: skip


def grid_space(spec: PipelineSpec) -> SearchSpace:
    """The tuner's space, reduced so an exhaustive grid finishes (see the module docstring)."""
    full = search_space(spec)
    base = full.baseline()
    knobs = []
    for knob in full.knobs:
        if knob.name in GRID_DROPPED:
            continue
        values = knob.values
        if knob.name.endswith(".parallel"):
            allowed = (*GRID_PARALLEL, "none")  # "none": no interleave step
            values = tuple(dict.fromkeys(v for v in (base[knob.name], *values) if v in allowed))
        elif knob.name == "prefetch":
            values = tuple(dict.fromkeys((base["prefetch"], "none", "autotune")))
        if len(values) > 1:
            knobs.append(Knob(knob.name, values, knob.description))
    return SearchSpace(spec=spec, knobs=tuple(knobs))


def _interval(a: tuple[Window, ...], b: tuple[Window, ...], scale: float = 1.0) -> str:
    low, high = Paired(a, b).ratio_interval()
    return f"{low * scale:.2f}-{high * scale:.2f}"


def _changes(result) -> str:
    return "; ".join(f"{k}={v[1]}" for k, v in result.changes().items()) or "none"


def filled(spec_json: str, copies: int | None = None) -> Any:
    """`build(spec)` (or, with `copies`, `copies_dataset(spec, copies)`) with its memory
    caches full: one iterator reads what the copies' passes through the spec's cache
    hold (`cache_pass_examples`) and one element more, then goes. A completed memory
    cache serves every later iterator of the same dataset, so each window times the
    steady state, as every epoch after the cache filled; a cache the timer's fresh
    iterators left half full would be dropped and filled again (a cache of 8 passes
    of a CSV takes about 4 s to fill)."""
    spec = load_spec(spec_json)
    dataset = build(spec) if copies is None else copies_dataset(spec, copies)
    wanted = (copies or 1) * cache_pass_examples(spec)
    if wanted > 1:
        batched, seen = is_batched(spec), 0
        for element in dataset:
            seen += examples_in(element, batched=batched)
            if seen > wanted:  # one element into the next pass: the cache is complete
                break
    return dataset


def bench_one(case: Case) -> dict[str, Any]:
    spec = load_spec(case.spec())
    tuned = tune(spec, budget_s=BUDGET_S)
    grid_space_ = grid_space(spec)
    grid = tune(spec, space=grid_space_, method="grid", trial_seconds=GRID_TRIAL_S, budget_s=60.0)
    tuned_spec = tuned.apply()
    cores = available_cores()
    tuned_json = tuned_spec.to_json()
    windows = timed_in_processes(
        {
            "tuned": partial(filled, tuned_json),
            "hand": case.hand,
            "grid": partial(filled, grid.apply().to_json()),
            "written": partial(filled, spec.to_json()),
            "cores": partial(filled, tuned_json, cores),
            "consumer": partial(consumer_dataset, tuned_json),
        },
        repeats=REPEATS,
    )
    rates = {name: statistics.median(w.rate for w in ws) for name, ws in windows.items()}
    limit = machine_limit(
        tuned_spec,
        cores=cores,
        examples_per_s=rates["tuned"],
        measure=lambda _spec: rates["cores"],
        consumer=lambda _spec: rates["consumer"],
    )
    ratio = rates["tuned"] / rates["hand"]
    if limit.bound_by() == "cores":  # tuned ÷ the cores' copies side by side, round by round
        limit_interval = _interval(windows["tuned"], windows["cores"])
    else:
        limit_interval = f"consumer {_interval(windows['tuned'], windows['consumer'])}"
    return {
        "pipeline": case.name,
        "tuned ex/s": rates["tuned"],
        "hand-written ex/s": rates["hand"],
        "tuned/hand": ratio,
        "90%": _interval(windows["tuned"], windows["hand"]),
        "target": f">= {case.target:.1f}",
        "met": "yes" if ratio >= case.target else "no",
        "tuned/limit (>=0.9)": limit.fraction(),
        "bound by": limit.bound_by(),
        "limit 90%": limit_interval,
        "tuned/grid (>=0.95)": rates["tuned"] / rates["grid"],
        "grid 90%": _interval(windows["tuned"], windows["grid"]),
        "speedup vs written": rates["tuned"] / rates["written"],
        "tuner trials": len(tuned.search.trials),
        "tune s": tuned.elapsed_s,
        "grid points": grid_space_.size(),
        "grid s": grid.elapsed_s,
        "tuned changes": _changes(tuned),
        "grid changes": _changes(grid),
        "load avg": os.getloadavg()[0],
    }


def run() -> list[dict[str, Any]]:
    """One row per reference pipeline (filtered by `$PIPELINE_LAB_BENCH_TUNE`)."""
    keys = {k.strip() for k in os.environ.get(ONLY_ENV, "").split(",") if k.strip()}
    rows = []
    for case in cases():
        if keys and case.key not in keys:
            continue
        try:
            rows.append(bench_one(case))
        except Exception as exc:  # report it in its row, go on with the rest
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            rows.append({"pipeline": case.name, "met": "ERROR", "error": message[:160]})
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
