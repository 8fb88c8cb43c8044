"""Warm start: how long a job takes to show its first figure, with and without the spare.

The dashboard keeps one spare child with TensorFlow imported (`child.keep_warm`), so
Start does not wait for an 8-15 s import. Measured in one process, alternating cold
(no spare: a fresh child imports TensorFlow) and warm (the spare waits, ready):

- profile: `start_profile(seed Example 3)` -> the first batch in a snapshot
  (target: <= 1.5 s warm);
- stages: `start_analysis("stages", seed Example 3)` -> the first stage figure in the
  job's progress (target: <= 2 s warm).

The page adds its own refresh (0.5 s) on top of the profile figure.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from pipeline_core import child
from pipeline_core.analysis import start_analysis
from pipeline_core.profile import RunSettings, start_profile
from pipeline_core.spec import load_spec

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
EXAMPLE3 = Path(__file__).resolve().parents[1] / "examples" / "03_map_batch_prefetch.json"
TARGETS = {"profile": 1.5, "stages": 2.0}


def _first_batch(spec: dict[str, Any]) -> float:
    start = time.perf_counter()
    handle = start_profile(spec, settings=RunSettings(max_batches=20))
    while handle.snapshot().batches < 1 and not handle.done:
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    handle.stop()
    handle.wait(60)
    return seconds


def _first_stage(spec: dict[str, Any]) -> float:
    start = time.perf_counter()
    job = start_analysis("stages", load_spec(spec), seconds=0.5)
    while not any(getattr(p, "row", None) for p in job.state().progress) and not job.done:
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    job.cancel()
    job.wait(30)
    return seconds


def _spare_ready() -> None:
    deadline = time.monotonic() + 120
    while not child.spare_ready(1):  # started once the last child has ended
        if time.monotonic() > deadline:
            raise RuntimeError("no warm spare started within 120 s")


def run() -> list[dict[str, Any]]:
    spec = json.loads(EXAMPLE3.read_text())
    measures = {"profile": _first_batch, "stages": _first_stage}
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(REPEATS):
            for what, measure in measures.items():
                child.keep_warm(False)
                times.setdefault((what, "cold"), []).append(measure(spec))
                child.keep_warm(True)
                _spare_ready()
                times.setdefault((what, "warm"), []).append(measure(spec))
    finally:
        child.keep_warm(False)
    rows = []
    for what in measures:
        cold, warm = times[(what, "cold")], times[(what, "warm")]
        rows.append(
            {
                "first figure": "first batch (profile)"
                if what == "profile"
                else "first stage (analysis)",
                "cold median s": statistics.median(cold),
                "warm median s": statistics.median(warm),
                "warm max s": max(warm),
                "target s": TARGETS[what],
                "met": "yes" if statistics.median(warm) <= TARGETS[what] else "no",
                "load avg": round(os.getloadavg()[0], 1),
            }
        )
    return rows
