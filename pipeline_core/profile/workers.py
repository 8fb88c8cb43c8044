"""Readings of the tf.data service workers a run reads from, taken during the run.

Each worker serves its own readings over HTTP (`pipeline_core.service`), so the
workers may run on other machines. `WorkerWatch` polls them on a daemon thread in
the profiling child; its samples travel with the run's ticks, and
`summarize_workers` turns them into one entry per worker for the run's summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

SAMPLE_S = 0.5  # how often each worker is read


class WorkerWatch:
    """Polls `workers` ({"address", "metrics_url"} each) every `SAMPLE_S` seconds.

    A worker that does not answer gives a sample with `"up": False`, so a worker that
    died mid-run shows as such rather than vanishing.
    """

    def __init__(self, workers: Sequence[dict[str, Any]], t0: float | None = None) -> None:
        self.workers = list(workers)
        self.t0 = time.monotonic() if t0 is None else t0
        self._samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pl-workers", daemon=True)

    def start(self) -> WorkerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * SAMPLE_S + 1.0)

    def take(self) -> list[dict[str, Any]]:
        """The samples taken since the last call."""
        with self._lock:
            out, self._samples = self._samples, []
        return out

    def sample(self) -> list[dict[str, Any]]:
        """Read every worker once, now."""
        from pipeline_core.service import read_worker

        out = []
        for worker in self.workers:
            data = read_worker(worker["metrics_url"]) if worker.get("metrics_url") else None
            sample = {
                "address": worker["address"],
                "t": time.monotonic() - self.t0,
                "up": data is not None,
            }
            if data is not None:
                sample.update(cpu_percent=data.get("cpu_percent"), rss_mb=data.get("rss_mb"))
            out.append(sample)
        with self._lock:
            self._samples.extend(out)
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - started)))


def summarize_workers(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per worker: address, elements/s (None: TensorFlow's worker server does
    not publish an element count, `service.ELEMENTS_NOTE`), CPU mean (%, 100 = one
    core), RSS peak (MB), and whether it still answered at the end."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_worker.setdefault(sample["address"], []).append(sample)
    out = []
    for address, rows in by_worker.items():
        up = [r for r in rows if r.get("up")]
        cpu = [r["cpu_percent"] for r in up if r.get("cpu_percent") is not None]
        rss = [r["rss_mb"] for r in up if r.get("rss_mb") is not None]
        out.append(
            {
                "address": address,
                "elements_per_s": None,
                "cpu_mean_percent": sum(cpu) / len(cpu) if cpu else None,
                "rss_peak_mb": max(rss, default=None),
                "answered_at_end": bool(rows[-1].get("up")),
            }
        )
    return out
