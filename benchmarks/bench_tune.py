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
- the tuned spec, the grid's best, the spec as written and the hand-written twin
  are then timed alternately (`benchmarks._timing`: fresh iterator, warm-up, a
  bare `for` loop over a fixed window; `REPEATS` rounds, order rotated; medians);
- the machine limit is cores × the single-core rate of the tuned spec.

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
from typing import Any

from benchmarks import bench_parity as parity
from benchmarks._timing import REPEATS, measure_window
from pipeline_core.analysis.machine import machine_limit
from pipeline_core.analysis.space import Knob, SearchSpace, search_space
from pipeline_core.analysis.tuner import tune
from pipeline_core.build import build
from pipeline_core.spec import PipelineSpec, load_spec

BUDGET_S = float(os.environ.get("PIPELINE_LAB_BENCH_TUNE_BUDGET_S") or 60.0)
GRID_TRIAL_S = 0.5
ONLY_ENV = "PIPELINE_LAB_BENCH_TUNE"  # comma-separated case keys (default: all)
GRID_PARALLEL = (None, "autotune")
GRID_DROPPED = ("options.private_threadpool_size", "options.autotune", "batch.parallel")


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


def alternate(datasets: dict[str, Any], repeats: int = REPEATS) -> dict[str, float]:
    """Median examples/s of each dataset, timed in rounds with the order rotated."""
    names = list(datasets)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for index in range(repeats):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(measure_window(datasets[name]).rate)
    return {n: statistics.median(r) for n, r in rates.items()}


def _changes(result) -> str:
    return "; ".join(f"{k}={v[1]}" for k, v in result.changes().items()) or "none"


def bench_one(case: Case) -> dict[str, Any]:
    spec = load_spec(case.spec())
    tuned = tune(spec, budget_s=BUDGET_S)
    grid_space_ = grid_space(spec)
    grid = tune(spec, space=grid_space_, method="grid", trial_seconds=GRID_TRIAL_S, budget_s=60.0)
    rates = alternate(
        {
            "tuned": build(tuned.apply()),
            "hand": case.hand(),
            "grid": build(grid.apply()),
            "written": build(spec),
        }
    )
    limit = machine_limit(tuned.apply(), examples_per_s=rates["tuned"])
    ratio = rates["tuned"] / rates["hand"]
    return {
        "pipeline": case.name,
        "tuned ex/s": rates["tuned"],
        "hand-written ex/s": rates["hand"],
        "tuned/hand": ratio,
        "target": f">= {case.target:.1f}",
        "met": "yes" if ratio >= case.target else "no",
        "tuned/limit (>=0.9)": limit.fraction(),
        "tuned/grid (>=0.95)": rates["tuned"] / rates["grid"],
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
