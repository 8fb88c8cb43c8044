"""The profiler against pipelines of known cost, in real child processes.

Each child costs seconds (TensorFlow import), so the runs start together in one
module fixture (at most a few at a time) and several assertions share a run.
Tolerances are wide enough for a busy 2-core machine and narrow enough that a
wrong formula fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline_core.metrics import Reading
from pipeline_core.profile import (
    EMPTY_DATASET,
    ProfileError,
    RunResult,
    RunSettings,
    Snapshot,
    profile,
    start_profile,
)
from pipeline_core.store import RunStore
from tests import REPO

# --- dataset factories (module level, so the child process can import them) -------------


def _tf():
    from pipeline_core._tf import tf

    return tf()


def _with_py(ds, fn):
    """Map a Python function over the features (one call per element)."""
    tf = _tf()
    return ds.map(lambda f, y: (tf.py_function(fn, [f], tf.float32), y))


def sleepy_20ms():
    """40 elements, a sequential map sleeping 20 ms each: 50 examples/s."""

    def nap(f):
        time.sleep(0.02)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(40).map(lambda i: (tf.zeros([2]), i))
    return _with_py(ds, nap).batch(4)


_HELD: list[np.ndarray] = []


def allocates_400mb():
    """Holds 400 MB (touched) from element 3 on; 20 ms per element."""

    def grab(f):
        if int(f.numpy()[0]) == 3:
            _HELD.append(np.ones(400 * 1024 * 1024 // 8))
        time.sleep(0.02)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(30).map(lambda i: (tf.fill([2], tf.cast(i, tf.float32)), i))
    return _with_py(ds, grab).batch(1)


def grows_forever():
    """Adds 60 MB per element, forever."""

    def grab(f):
        _HELD.append(np.ones(60 * 1024 * 1024 // 8))
        time.sleep(0.02)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(1).repeat().map(lambda i: (tf.zeros([2]), i))
    return _with_py(ds, grab).batch(1)


def raises_at_3():
    def boom(f):
        if int(f.numpy()[0]) == 3:
            raise ValueError("boom at element 3")
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(10).map(lambda i: (tf.fill([2], tf.cast(i, tf.float32)), i))
    return _with_py(ds, boom).batch(1)


def segfaults_at_2():
    def crash(f):
        if int(f.numpy()[0]) == 2:
            os.kill(os.getpid(), signal.SIGSEGV)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(10).map(lambda i: (tf.fill([2], tf.cast(i, tf.float32)), i))
    return _with_py(ds, crash).batch(1)


def empty():
    tf = _tf()
    return tf.data.Dataset.range(0).map(lambda i: (tf.zeros([2]), i)).batch(4)


def slow_forever():
    """A batch every 50 ms, forever."""

    def nap(f):
        time.sleep(0.05)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(1).repeat().map(lambda i: (tf.zeros([2]), i))
    return _with_py(ds, nap).batch(1)


def hangs_at_3():
    """Three quick batches, then a wait of 100 s."""

    def stall(f):
        time.sleep(100 if int(f.numpy()[0]) == 3 else 0.01)
        return f

    tf = _tf()
    ds = tf.data.Dataset.range(10).map(lambda i: (tf.fill([2], tf.cast(i, tf.float32)), i))
    return _with_py(ds, stall).batch(1)


def float_labels():
    """10 elements with float scalar labels (a regression target), batch 4."""
    tf = _tf()
    ds = tf.data.Dataset.range(10).map(lambda i: (tf.zeros([2]), tf.cast(i, tf.float32)))
    return ds.batch(4)


def _spec(n, batch, *, drop=False, steps_before=(), steps_after=()):
    return {
        "name": f"known-{n}-{batch}",
        "source": {"type": "synthetic", "num_examples": n, "shape": [4, 4, 1], "seed": 1},
        "steps": [
            *steps_before,
            {"op": "batch", "batch_size": batch, "drop_remainder": drop},
            *steps_after,
        ],
    }


_SLEEP_30 = {"op": "map", "augmentations": [{"name": "sleep", "ms": 30}]}

# name -> (source, settings, with store)
RUNS = {
    # timing-sensitive ones first, while the machine is least busy
    "sleep_throughput": (sleepy_20ms, RunSettings(max_batches=None), False),
    "fast_with_step": (
        _spec(2000, 16, steps_after=({"op": "prefetch", "buffer_size": 4},)),
        RunSettings(max_batches=15, step_ms=20),
        False,
    ),
    "slow_tiny_step": (
        _spec(400, 8, steps_after=(_SLEEP_30,)),
        RunSettings(max_batches=12, step_ms=1),
        False,
    ),
    "partial": (_spec(10, 4), RunSettings(max_batches=None), True),
    "drop_remainder": (_spec(10, 4, drop=True), RunSettings(max_batches=None), False),
    "float_labels": (float_labels, RunSettings(max_batches=None), False),
    "allocates": (allocates_400mb, RunSettings(max_batches=None), False),
    "ceiling": (grows_forever, RunSettings(memory_limit_mb=1400, max_seconds=60), False),
    "hangs": (hangs_at_3, RunSettings(max_seconds=1), False),
    "time_limit": (slow_forever, RunSettings(max_batches=None, max_seconds=0.6), False),
    "raises": (raises_at_3, RunSettings(), False),
    "segfault": (segfaults_at_2, RunSettings(), False),
    "empty": (empty, RunSettings(), False),
    "model_step": (_spec(64, 8), RunSettings(max_batches=6, step_model="small"), False),
}
_PARALLEL = 3


def _dataset_object():
    """A Dataset object (not a factory): a TF map (a random op included) over 10, batch 4."""
    tf = _tf()
    ds = tf.data.Dataset.range(10)
    ds = ds.map(lambda i: (tf.random.uniform([3]) + tf.cast(i, tf.float32), i))
    return ds.batch(4)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("profile-db") / "runs.sqlite")


BIG_FILE_MB = 768  # a sparse .npy: made at once, read back as zero pages
BIG_CEILING_MB = 600  # below the file, above TensorFlow's own private memory (~250 MB)


def _big_npy_runs(folder: Path) -> list[tuple[str, tuple]]:
    """A memory-mapped file larger than the ceiling: streamed, and cached in memory."""
    path = folder / "big.npy"
    rows = BIG_FILE_MB * 1024 * 1024 // (64 * 64 * 3 * 4)
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 64, 64, 3)).flush()
    source = {"type": "npy", "features_path": str(path)}
    settings = RunSettings(max_batches=None, max_seconds=120, memory_limit_mb=BIG_CEILING_MB)
    streamed = {"name": "big npy", "source": source, "steps": [{"op": "batch", "batch_size": 64}]}
    cached = {**streamed, "steps": [{"op": "cache"}, *streamed["steps"]]}
    return [("big_npy", (streamed, settings, False)), ("big_npy_cached", (cached, settings, False))]


@pytest.fixture(scope="module")
def results(store, tmp_path_factory) -> dict[str, RunResult]:
    dataset_run = (_dataset_object(), RunSettings(max_batches=None), False)
    big = _big_npy_runs(tmp_path_factory.mktemp("big-npy"))
    pending = [*RUNS.items(), ("dataset_object", dataset_run), *big]
    running: dict[str, object] = {}
    done: dict[str, RunResult] = {}
    while pending or running:
        while pending and len(running) < _PARALLEL:
            key, (source, settings, stored) = pending.pop(0)
            running[key] = start_profile(
                source,
                settings=settings,
                store=store if stored else None,
                name=key,
                summary_extra={"note": f"extra for {key}", "batches": -1},
            )
        for key, handle in list(running.items()):
            if handle.done:
                done[key] = handle.result()
                del running[key]
        time.sleep(0.05)
    return done


# --- truth on known pipelines -------------------------------------------------------------


def test_exact_counts_with_partial_last_batch(results):
    r = results["partial"]
    assert (r.status, r.end_reason) == ("completed", "end of data"), r.reason
    assert r.examples == (4, 4, 2)
    assert (r.batches, r.total_examples) == (3, 10)


def test_a_dataset_object_is_rebuilt_in_the_child(results):
    r = results["dataset_object"]
    assert (r.status, r.end_reason) == ("completed", "end of data"), r.reason
    assert r.examples == (4, 4, 2)
    assert (r.batches, r.total_examples) == (3, 10)


def test_exact_counts_with_drop_remainder(results):
    r = results["drop_remainder"]
    assert r.status == "completed", r.reason
    assert r.examples == (4, 4)


def test_batches_of_float_scalar_labels_count_their_examples(results):
    r = results["float_labels"]
    assert (r.status, r.end_reason) == ("completed", "end of data"), r.reason
    assert r.examples == (4, 4, 2)


def test_sleeping_map_gives_throughput_near_one_over_sleep(results):
    r = results["sleep_throughput"]
    assert r.status == "completed", r.reason
    assert r.total_examples == 40
    rate = r.examples_per_second()
    assert 50 / 1.35 <= rate <= 50 * 1.35, rate  # 20 ms per example, sequential
    p50 = r.latency_ms()["p50"]
    assert 80 / 1.35 <= p50 <= 80 * 1.35, p50  # 4 examples per batch
    assert r.batches_per_second() == pytest.approx(rate / 4, rel=0.01)


def test_fast_pipeline_with_a_step_is_not_input_bound(results):
    r = results["fast_with_step"]
    assert r.status == "completed" and r.batches == 15, r.reason
    assert r.input_bound_percent() < 15
    steps_ms = [s / 1e6 for s in r.steps_ns]
    assert all(19 <= s < 200 for s in steps_ms), steps_ms
    assert r.verdict().startswith("Not input-bound")


def test_slow_pipeline_with_a_tiny_step_is_input_bound(results):
    r = results["slow_tiny_step"]
    assert r.status == "completed" and r.batches == 12, r.reason
    assert r.input_bound_percent() > 85
    assert r.verdict().startswith("Input-bound")
    assert r.end_reason == "batch limit (12)"


def test_known_allocation_shows_in_rss_and_private_memory(results):
    r = results["allocates"]
    assert r.status == "completed", r.reason
    first = r.readings[0]
    summary = r.to_summary_dict()
    assert 400 * 0.8 <= summary["rss_peak_mb"] - first.rss_mb <= 400 * 1.6, summary
    assert 400 * 0.8 <= summary["private_peak_mb"] - first.private_mb <= 400 * 1.6, summary
    # TensorFlow's own memory is measured before the pipeline and kept apart.
    assert 50 < summary["private_baseline_mb"] <= first.private_mb, summary
    held = summary["held_by_pipeline_mb"]
    assert held == pytest.approx(summary["private_peak_mb"] - summary["private_baseline_mb"])
    assert 400 * 0.8 <= held <= 400 * 1.6, summary


def _ceiling_batch(reason: str, limit: int) -> int:
    found = re.match(rf"stopped: memory ceiling {limit} MB exceeded at batch (\d+) ", reason)
    assert found, reason
    assert "private memory" in reason and "raise the ceiling" in reason  # what and the fix
    return int(found.group(1))


def test_memory_ceiling_stops_the_run(results):
    r = results["ceiling"]
    assert r.status == "stopped"
    batch = _ceiling_batch(r.reason, 1400)
    assert 1 <= batch <= r.batches + 1
    assert r.batches < 40  # stopped long before 60 s


def test_a_memory_mapped_file_larger_than_the_ceiling_streams_to_the_end(results):
    r = results["big_npy"]
    rows = BIG_FILE_MB * 1024 * 1024 // (64 * 64 * 3 * 4)
    assert (r.status, r.end_reason, r.total_examples) == ("completed", "end of data", rows), (
        r.reason
    )
    summary = r.to_summary_dict()
    # The file's pages were resident (RSS went far past the ceiling) ...
    assert summary["rss_peak_mb"] > BIG_CEILING_MB, summary
    assert summary["file_peak_mb"] - r.baseline.file_mb > 0.5 * BIG_FILE_MB, summary
    # ... but the pipeline held little of its own.
    assert summary["private_peak_mb"] < BIG_CEILING_MB, summary


def test_caching_that_file_in_memory_is_stopped_at_the_ceiling(results):
    r = results["big_npy_cached"]
    assert r.status == "stopped", r.reason
    _ceiling_batch(r.reason, BIG_CEILING_MB)
    assert r.total_examples < BIG_FILE_MB * 1024 * 1024 // (64 * 64 * 3 * 4)


def test_raising_pipeline_fails_with_its_message(results):
    r = results["raises"]
    assert r.status == "failed"
    assert "boom at element 3" in r.reason
    assert "at batch 4" in r.reason
    assert r.batches == 3  # the batches before the error are kept


def test_a_hanging_pipeline_fails_after_the_time_limit(results):
    r = results["hangs"]
    assert r.status == "failed"
    assert r.reason.startswith("the pipeline hangs: no batch for ")
    assert "time limit of 1 s" in r.reason and "after 3 batches" in r.reason
    assert r.batches == 3
    assert r.elapsed_s < 10


def test_the_time_limit_ends_a_run_as_completed(results):
    r = results["time_limit"]
    assert (r.status, r.end_reason) == ("completed", "time limit (0.6 s)")
    assert 0.6 <= r.ends_ns[-1] / 1e9 < 0.6 + 0.2  # the batch that crossed the limit is last
    assert 0.6 / 0.05 - 4 <= r.batches <= 0.6 / 0.05 + 1


def test_crashing_child_fails_with_the_signal(results):
    r = results["segfault"]
    assert r.status == "failed"
    assert "SIGSEGV" in r.reason


def test_empty_dataset_fails_clearly(results):
    r = results["empty"]
    assert r.status == "failed"
    assert r.reason.startswith(EMPTY_DATASET)


def test_small_model_step_trains_on_batches(results):
    r = results["model_step"]
    assert r.status == "completed", r.reason
    assert r.batches == 6
    assert all(s > 0 for s in r.steps_ns)
    assert 0 <= r.input_bound_percent() <= 100


def test_the_small_model_trains_once_per_batch(tf):
    from pipeline_core.profile.worker import _ModelStep

    step = _ModelStep(tf, batched=True)
    batch = (tf.zeros([4, 3]), tf.constant([0, 1, 2, 1], tf.int64))
    step(batch)
    step(batch)
    assert int(step.model.optimizer.iterations) == 2


def test_readings_environment_and_summary_keys(results):
    r = results["sleep_throughput"]
    assert len(r.readings) >= 3
    reading = r.readings[-1]
    assert reading.rss_mb > 50
    assert 0 < reading.private_mb < reading.rss_mb and reading.file_mb > 0
    assert len(reading.per_core_percent) == os.cpu_count()
    assert reading.cpu_share_percent == pytest.approx(reading.cpu_percent / os.cpu_count())
    env = r.environment
    assert env["tensorflow"] and env["python"] and env["cpu_cores"] >= 1
    summary = r.to_summary_dict()
    for key in (
        "status",
        "batches",
        "examples",
        "first_batch_s",
        "examples_per_s",
        "latency_ms",
        "cpu_percent_mean",
        "rss_peak_mb",
        "private_peak_mb",
        "file_peak_mb",
        "private_baseline_mb",
        "held_by_pipeline_mb",
        "input_bound_percent",
    ):
        assert key in summary
    assert set(summary["latency_ms"]) >= {"p50", "p90", "p99"}
    assert summary["input_bound_percent"] is None


def test_process_cpu_never_exceeds_every_core_busy(results):
    """The first reading (right after the build) included: no 3000% on a 2-core machine."""
    ceiling = 100 * os.cpu_count() + 50
    for key, r in results.items():
        cpu = [reading.cpu_percent for reading in r.readings]
        assert all(0 <= c <= ceiling for c in cpu), (key, cpu[:3])


def test_the_store_holds_the_run_as_it_ended(results, store):
    r = results["partial"]
    rec = store.get_run(r.run_id)
    assert rec.status == "completed"
    assert rec.batches["examples"] == [4, 4, 2]
    assert rec.spec["name"] == "known-10-4"
    assert rec.summary["examples"] == 10
    assert rec.summary["note"] == "extra for partial"  # extra keys are stored ...
    assert rec.summary["batches"] == 3  # ... but never replace a measured figure
    assert rec.environment["tensorflow"]
    assert len(rec.readings) == len(r.readings)


# --- live behaviour: snapshots and stop --------------------------------------------------


def test_snapshots_flow_and_stop_ends_within_a_second():
    handle = start_profile(slow_forever, settings=RunSettings(max_batches=None, max_seconds=60))
    deadline = time.monotonic() + 120
    while handle.snapshot().batches < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first = handle.snapshot()
    assert first.status == "running", first.reason
    time.sleep(2.0)
    later = handle.snapshot()
    assert isinstance(later, Snapshot)
    assert (later.readings_count - first.readings_count) / 2.0 >= 4
    assert later.batches > first.batches
    assert later.throughput == pytest.approx(20, rel=0.5)  # one example per 50 ms
    assert later.recent_waits_ms and len(later.waits_ms) == later.batches
    asked = time.monotonic()
    handle.stop()
    assert handle.wait(5)
    assert time.monotonic() - asked <= 1.0
    result = handle.result(timeout=0)
    assert result.status == "stopped"
    assert result.reason.startswith("stopped by request after")
    assert result.batches >= later.batches  # the partial result is kept


# --- pure figures on hand-made series -----------------------------------------------------


def _result(waits_ms, examples, steps_ms=None, settings=None):
    ends, t = [], 0.0
    steps_ms = steps_ms or [0.0] * len(waits_ms)
    for wait, step in zip(waits_ms, steps_ms, strict=True):
        t += wait
        ends.append(int(t * 1e6))
        t += step
    return RunResult(
        status="completed",
        reason=None,
        end_reason="end of data",
        name="hand-made",
        settings=settings or RunSettings(),
        waits_ns=tuple(int(w * 1e6) for w in waits_ms),
        examples=tuple(examples),
        ends_ns=tuple(ends),
        steps_ns=tuple(int(s * 1e6) for s in steps_ms),
        readings=(Reading(0.0, 150.0, 75.0, (80.0, 70.0), 500.0, 1000.0),),
    )


def test_figures_exclude_the_first_batch():
    r = _result([500, 10, 10, 10, 10], [32, 32, 32, 32, 16])
    assert r.first_batch_s == pytest.approx(0.5)
    assert r.examples_per_second() == pytest.approx((32 * 3 + 16) / 0.040)
    assert r.examples_per_second(include_first=True) == pytest.approx(144 / 0.540)
    assert r.batches_per_second() == pytest.approx(4 / 0.040)
    assert r.latency_ms() == {"p50": 10.0, "p90": 10.0, "p99": 10.0, "max": 10.0}
    assert r.stall_count() == 0
    assert r.input_bound_percent() is None


def test_percentiles_stalls_and_input_bound_share():
    waits = [100] + [2] * 97 + [40, 60]
    steps = [8] * 100
    r = _result(waits, [8] * 100, steps, RunSettings(step_ms=8))
    lat = r.latency_ms()
    assert lat["p50"] == 2.0 and lat["max"] == 60.0
    assert 2.0 < lat["p99"] < 60.0
    assert r.stall_count() == 2
    expected = 100 * (2 * 97 + 100) / (2 * 97 + 100 + 8 * 99)
    assert r.input_bound_percent() == pytest.approx(expected)
    assert r.to_summary_dict()["cpu_percent_mean"] == 150.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batches": 0}, "max_batches should be >= 1"),
        ({"step_ms": 5, "step_model": "small"}, "either step_ms or step_model"),
        ({"step_model": "huge"}, "step_model should be None or 'small'"),
        ({"sample_hz": 2}, "sample_hz should be between 4 and 50"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ProfileError, match=message):
        RunSettings(**kwargs)


def test_a_dataset_running_python_or_a_lambda_is_refused_with_the_fix(tf):
    ds = tf.data.Dataset.range(3).map(lambda i: tf.py_function(lambda x: x, [i], tf.int64))
    with pytest.raises(ProfileError, match="pass a module-level function that returns the") as err:
        start_profile(ds)
    assert "(EagerPyFunc)" in str(err.value) and "or profile a spec" in str(err.value)
    with pytest.raises(ProfileError, match="define it at module level"):
        profile(lambda: None)


def test_a_factory_defined_in_a_script_main_runs(tmp_path):
    script = tmp_path / "my_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from pipeline_core.profile import RunSettings, profile

            def make():
                import tensorflow as tf
                return tf.data.Dataset.range(7).map(lambda i: (tf.zeros([3]), i)).batch(3)

            if __name__ == "__main__":
                r = profile(make, settings=RunSettings(max_batches=None))
                print("RESULT", r.status, r.examples, r.reason)
            """
        )
    )
    repo = REPO
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert "RESULT completed (3, 3, 1) None" in proc.stdout, proc.stderr[-2000:]


SHORT = {
    "name": "five batches",
    "source": {"type": "synthetic", "num_examples": 40, "shape": [4, 4, 3]},
    "steps": [{"op": "batch", "batch_size": 8}],
}


def test_repeat_runs_a_short_dataset_to_the_limit_and_says_so():
    result = profile(SHORT, settings=RunSettings(max_batches=23, repeat=True))
    assert result.status == "completed" and result.batches == 23
    assert result.data_length == 5 and result.repeated
    summary = result.to_summary_dict()
    assert summary["data_length"] == 5 and summary["repeated"] is True
    once = profile(SHORT, settings=RunSettings(max_batches=23))
    assert once.batches == 5 and once.end_reason == "end of data" and not once.repeated


def test_repeat_needs_a_limit():
    with pytest.raises(ProfileError, match="repeat needs a limit"):
        RunSettings(max_batches=None, max_seconds=None, repeat=True)
