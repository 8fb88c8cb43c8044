"""Scale-out on tf.data service: throughput against local workers, wait-bound and CPU-bound.

Two pipelines, each with a `distribute` step (service "local") after its expensive part,
run as a scaling study (`pipeline_core.profile.scale`) with 1, 2 and 4 worker
processes on this machine, repeated `BENCH_REPEATS` times (medians):

- wait-bound: 10 ms `sleep` per element before the distribute step (like slow
  storage): each worker waits, so 4 workers should read close to 4× as fast;
- CPU-bound: a `cpu_work` map (matrix products) before the distribute step: the workers share
  this machine's cores, so past the core count they cannot add throughput.

The last rows measure what the service costs: a cheap pipeline (the source and batch
only) and the wait-bound one, each with 1 local worker against the same pipeline
without a distribute step, read in this process ("ideal" is the in-process figure,
"of ideal" the ratio).
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from pipeline_core.metrics import available_cores
from pipeline_core.profile import RunSettings, profile
from pipeline_core.profile.scale import ScalingStudy, scaling_study

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
WORKERS = (1, 2, 4)
SETTINGS = RunSettings(max_batches=400, max_seconds=6.0, repeat=True)
SOURCE = {"type": "synthetic", "num_examples": 4096, "shape": [8, 8, 3], "dtype": "uint8"}
TAIL = [{"op": "distribute", "service": "local"}, {"op": "batch", "batch_size": 16}]
WAIT = "wait-bound (sleep 10 ms)"
CASES = {
    WAIT: [{"op": "sleep", "ms": 10}],
    "CPU-bound (cpu_work, 50 products of 64×64)": [
        {"op": "map", "augmentations": [{"name": "cpu_work", "iterations": 50, "size": 64}]}
    ],
}


def _spec(name: str, steps: list[dict[str, Any]], tail=TAIL) -> dict[str, Any]:
    return {"name": f"bench scale: {name}", "source": SOURCE, "steps": [*steps, *tail]}


def run() -> list[dict[str, Any]]:
    rows = []
    for name, steps in CASES.items():
        studies: list[ScalingStudy] = [
            scaling_study(_spec(name, steps), WORKERS, settings=SETTINGS) for _ in range(REPEATS)
        ]
        for i, count in enumerate(WORKERS):
            rates = [s.points[i].examples_per_s or 0.0 for s in studies]
            cpus = [s.points[i].workers_cpu_percent or 0.0 for s in studies]
            machine = [s.points[i].machine_cpu_percent or 0.0 for s in studies]
            base = statistics.median(s.points[0].examples_per_s or 0.0 for s in studies)
            rate = statistics.median(rates)
            rows.append(
                {
                    "pipeline": name,
                    "workers": count,
                    "examples/s (median)": rate,
                    "ideal": base * count,
                    "of ideal": f"{rate / (base * count):.0%}" if base else "n/a",
                    "workers' CPU %": statistics.median(cpus),
                    "machine CPU %": statistics.median(machine),
                    "spread": f"{min(rates):,.0f}-{max(rates):,.0f}",
                }
            )
        kinds = [s.kind() for s in studies]
        rows[-1]["verdict"] = max(set(kinds), key=kinds.count)  # the most studies'
        rows[-1]["verdicts"] = ", ".join(kinds)
    one_worker = [{**TAIL[0], "workers": 1}, TAIL[1]]
    for name, steps in (("cheap (source + batch)", []), ("wait-bound", CASES[WAIT])):
        here, served = [], []
        for _ in range(REPEATS):  # alternating
            here.append(profile(_spec("no service", steps, TAIL[1:]), settings=SETTINGS))
            served.append(profile(_spec("1 worker", steps, one_worker), settings=SETTINGS))
        local = statistics.median(r.examples_per_second() or 0.0 for r in here)
        one = statistics.median(r.examples_per_second() or 0.0 for r in served)
        rows.append(
            {
                "pipeline": f"{name}: 1 worker ÷ in-process (service overhead)",
                "workers": 1,
                "examples/s (median)": one,
                "ideal": local,
                "of ideal": f"{one / local:.2f}" if local else "n/a",
            }
        )
    rows.append({"pipeline": f"cores: {available_cores()}", "workers": ""})
    return rows
