"""Auto-tuning quality: adaptive search against an exhaustive grid and the machine limit.

For each reference pipeline (seed Example 3 as written; an image-folder
decode + augment pipeline and a TFRecord pipeline, both written naively:
sequential reads and maps, no cache, no prefetch):

- the adaptive tuner (`tune`, coordinate descent) and an exhaustive grid over
  the same knobs (parallelism limited to sequential / autotune so the grid
  stays small) both run;
- their winners and the pipeline as written are then re-measured alternately
  (`ROUNDS` rounds, median) so a ratio is not a lucky sample;
- reported: tuned ÷ grid best (target >= 0.95), tuned ÷ machine limit
  (cores × single-core rate, target >= 0.9; above 1 means the work is not
  CPU-bound), tuning time ÷ grid time (target <= 0.25), speedup over as written.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from pipeline_core.analysis.machine import machine_limit
from pipeline_core.analysis.measure import measure_spec
from pipeline_core.analysis.space import Knob, SearchSpace, search_space
from pipeline_core.analysis.tuner import tune
from pipeline_core.spec import PipelineSpec, load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRIAL_S = 0.3
CONFIRM_S = 1.0
ROUNDS = 3
BUDGET_S = 30.0
PARALLEL = (None, "autotune")


def _naive(spec: dict[str, Any]) -> dict[str, Any]:
    """As a first draft is written: sequential reads and maps, no cache, no prefetch."""
    steps = []
    for step in spec["steps"]:
        if step["op"] in ("cache", "prefetch"):
            continue
        if step["op"] in ("map", "interleave"):
            step = {**step, "num_parallel_calls": None}
        steps.append(step)
    return {**spec, "name": spec["name"] + " (naive)", "steps": steps}


def pipelines() -> dict[str, PipelineSpec]:
    from pipeline_core.demo_data import ensure_demo_data  # noqa: PLC0415

    ensure_demo_data()
    read = {p.stem: json.loads(p.read_text()) for p in EXAMPLES.glob("*.json")}
    return {
        "example 3 as written": load_spec(read["03_map_batch_prefetch"]),
        "image folder, naive": load_spec(_naive(read["04_image_folder"])),
        "tfrecord, naive": load_spec(_naive(read["05_tfrecord"])),
    }


def small_space(spec: PipelineSpec) -> SearchSpace:
    """The tuner's space with parallelism limited to PARALLEL (plus the value as written)."""
    full = search_space(spec)
    base = full.baseline()
    knobs = []
    for knob in full.knobs:
        values = knob.values
        if knob.name.endswith(".parallel"):
            values = tuple(dict.fromkeys((base[knob.name], *PARALLEL)))
        knobs.append(Knob(knob.name, values, knob.description))
    return SearchSpace(spec=spec, knobs=tuple(knobs))


def _median_rates(specs: dict[str, PipelineSpec]) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(ROUNDS):
        for name, spec in specs.items():
            rates[name].append(measure_spec(spec, seconds=CONFIRM_S).examples_per_s)
    return {name: statistics.median(r) for name, r in rates.items()}


def _changes(result) -> str:
    return "; ".join(f"{k}={v[1]}" for k, v in result.changes().items()) or "none"


def bench_one(name: str, spec: PipelineSpec) -> dict[str, Any]:
    space = small_space(spec)
    adaptive = tune(spec, space=space, budget_s=BUDGET_S, trial_seconds=TRIAL_S)
    grid = tune(spec, space=space, method="grid", trial_seconds=TRIAL_S)
    rates = _median_rates({"written": spec, "tuned": adaptive.apply(), "grid": grid.apply()})
    limit = machine_limit(adaptive.apply(), seconds=CONFIRM_S, examples_per_s=rates["tuned"])
    return {
        "pipeline": name,
        "grid points": space.size(),
        "tuner trials": len(adaptive.search.trials),
        "as written ex/s": rates["written"],
        "tuned ex/s": rates["tuned"],
        "grid best ex/s": rates["grid"],
        "tuned/grid": rates["tuned"] / rates["grid"],
        "tuned/limit": limit.fraction(),
        "tune s": adaptive.elapsed_s,
        "grid s": grid.elapsed_s,
        "tune/grid time": adaptive.elapsed_s / grid.elapsed_s,
        "speedup": rates["tuned"] / rates["written"],
        "tuned changes": _changes(adaptive),
        "grid changes": _changes(grid),
    }


def run() -> list[dict[str, Any]]:
    """One row per reference pipeline."""
    return [bench_one(name, spec) for name, spec in pipelines().items()]


if __name__ == "__main__":
    for row in run():
        print(row)
