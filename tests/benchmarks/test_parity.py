"""The parity benchmark compares like with like: each spec twin and its hand-written twin
yield elements of the same structure, and a row can be produced. Times nothing."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from benchmarks import _timing
from benchmarks import bench_parity as parity

CHEAP = ("ex1", "ex2", "ex3", "ex3-synthetic", "synthetic-source")


def _structure(elements) -> list[tuple[str, tuple[int | None, ...]]]:
    return [(e.dtype.name, tuple(e.shape)) for e in elements]


def _case(key: str) -> parity.Case:
    (case,) = parity.selected(parity.cases(), key)
    return case


def test_every_case_has_a_unique_key():
    keys = [c.key for c in parity.cases()]
    assert len(keys) == len(set(keys))
    assert {"ex1", "ex2", "ex3", "image-folder", "tfrecord", "csv", "npy", "export"} <= set(keys)


@pytest.mark.parametrize("key", CHEAP)
def test_spec_twin_and_hand_written_twin_yield_the_same_structure(key):
    spec_ds, hand_ds = _case(key).make()
    assert _structure(spec_ds.element_spec) == _structure(hand_ds.element_spec)
    assert _structure(next(iter(spec_ds))) == _structure(next(iter(hand_ds)))


@pytest.fixture
def small_data(monkeypatch):
    """File data a few KB large (the folder names carry the sizes, so no clash)."""
    monkeypatch.setattr(parity, "JPEG_PER_CLASS", 2)
    monkeypatch.setattr(parity, "JPEG_SIZE", 48)
    monkeypatch.setattr(parity, "TFRECORD_PER_SHARD", 4)
    monkeypatch.setattr(parity, "TFRECORD_SIZE", 32)
    monkeypatch.setattr(parity, "CSV_ROWS_PER_FILE", 40)
    monkeypatch.setattr(parity, "NPY_ROWS", 256)
    monkeypatch.setattr(parity, "AUGMENT_IMAGES", 4)


@pytest.mark.parametrize("key", ["augment", "image-folder", "tfrecord", "csv", "npy", "export"])
def test_file_and_export_twins_yield_the_same_structure(key, small_data):
    measured, against = _case(key).make()
    assert _structure(measured.element_spec) == _structure(against.element_spec)
    assert _structure(next(iter(measured))) == _structure(next(iter(against)))


def test_the_hand_written_arrays_are_the_numpy_source_data():
    from pipeline_core.build import build

    features, label = next(iter(build({"source": parity.spec_example1()["source"]})))
    images, labels = parity.numpy_arrays(1024, (28, 28, 1), np.float32, 10, seed=0)
    np.testing.assert_array_equal(features.numpy(), images[0])
    assert int(label) == labels[0]


def test_a_row_comes_out_of_a_tiny_window():
    row = parity.measure(_case("ex1"), repeats=1, window_s=0.05, warmup_s=0.05)
    assert row["ex/s"] > 0 and row["against ex/s"] > 0
    assert row["measured"] == "build(spec)" and row["against"] == "hand-written"
    assert row["met"] in ("yes", "yes (noise)", "yes (same graph)", "no")
    assert row["graph"] == "same"  # Ex. 1 as a spec is the hand-written graph


def test_a_dataset_that_runs_out_inside_the_window_is_refused(tf):
    with pytest.raises(_timing.RanOut):
        _timing.Timer(tf.data.Dataset.range(3).batch(1), fresh_every=1).window(5.0, 0.0)


@pytest.mark.parametrize(
    ("ratios", "target", "expected"),
    [
        ((1.02, 1.01, 1.0), 1.0, "yes"),
        ((0.98, 0.97, 1.01), 1.0, "yes (noise)"),
        ((0.98, 0.97, 0.99), 1.0, "no"),
        ((0.95, 1.05, 0.95), 1.0, "no"),
        ((0.975, 0.98, 0.99), 0.97, "yes"),
    ],
)
def test_verdict(ratios, target, expected):
    measured = tuple(_timing.Window(round(r * 1000), wall_s=1.0, cpu_s=1.0) for r in ratios)
    against = (_timing.Window(1000, wall_s=1.0, cpu_s=1.0),) * len(ratios)
    paired = _timing.Paired(a=measured, b=against)
    assert parity.verdict(paired, target) == expected
    # both sides the same graph: below the target is noise alone, never "no"
    same = parity.verdict(paired, target, same=True)
    assert same == ("yes (same graph)" if expected == "no" else expected)


@pytest.mark.parametrize(
    ("key", "same"),
    [
        ("calibration", True),
        ("ex1", True),
        ("ex2", True),
        ("csv", True),
        ("export", True),
        ("ex3", False),  # the map's per-element seed: a zipped Dataset.random
        ("synthetic-source", False),  # cached examples against from_tensor_slices
        ("tfrecord", False),  # DecodeImage for DecodeJpeg in the parse function
    ],
)
def test_same_graph_tells_pipelines_that_run_the_same_ops_from_others(key, same, small_data):
    assert parity.same_graph(_case(key)) is same


def test_the_graph_signature_sees_a_changed_constant_and_a_changed_function(tf):
    def ds(batch=4, scale=2.0):
        return tf.data.Dataset.range(8).map(lambda x: tf.cast(x, tf.float32) * scale).batch(batch)

    assert parity.graph_signature(ds()) == parity.graph_signature(ds())
    assert parity.graph_signature(ds()) != parity.graph_signature(ds(batch=2))
    assert parity.graph_signature(ds()) != parity.graph_signature(ds(scale=3.0))
    shuffled = ds().shuffle(4, seed=1)
    assert parity.graph_signature(shuffled) == parity.graph_signature(ds().shuffle(4, seed=1))
    assert parity.graph_signature(shuffled) != parity.graph_signature(ds().shuffle(4, seed=2))


def test_selected_filters_by_key():
    assert [c.key for c in parity.selected(parity.cases(), "csv, npy")] == ["csv", "npy"]
    assert len(parity.selected(parity.cases(), "")) == len(parity.cases())


def test_cpu_ratio_is_above_one_when_the_measured_side_costs_less():
    cheap = (_timing.Window(1000, wall_s=1.0, cpu_s=0.5),)
    dear = (_timing.Window(1000, wall_s=1.0, cpu_s=1.0),)
    assert _timing.Paired(a=cheap, b=dear).cpu_ratio == pytest.approx(2.0)


def _paired(measured_rates):
    measured = tuple(_timing.Window(r, wall_s=1.0, cpu_s=1.0) for r in measured_rates)
    against = (_timing.Window(1000, wall_s=1.0, cpu_s=1.0),) * len(measured)
    return _timing.Paired(a=measured, b=against)


def test_the_ratio_interval_is_narrow_for_steady_windows_and_wide_for_noisy_ones():
    assert _paired([1000] * 9).ratio_interval() == (1.0, 1.0)
    steady = _paired([990, 1000, 1010] * 5).ratio_interval()
    noisy = _paired([700, 1000, 1300] * 5).ratio_interval()
    assert steady[0] <= 1.0 <= steady[1] and steady[1] - steady[0] <= 0.02 + 1e-9
    assert noisy[0] < steady[0] and noisy[1] > steady[1]
    assert _paired([700, 1000, 1300] * 5).ratio_interval() == noisy  # seeded


def test_each_side_is_timed_in_a_process_of_its_own():
    paired = _timing.paired_in_processes(
        parity.hand_example1,
        parity.hand_example1,
        repeats=3,
        window_s=0.05,
        warmup_s=0.0,
        fresh_every=2,
        settle_s=0.0,
        processes=1,
    )
    assert len(paired.a) == len(paired.b) == 3
    assert all(w.examples > 0 and w.cpu_s > 0 for w in paired.a + paired.b)


def _no_such_file():
    raise FileNotFoundError("no such file: /nowhere.npy")


def test_a_child_that_cannot_build_its_dataset_is_reported():
    with pytest.raises(RuntimeError, match="FileNotFoundError: no such file"):
        _timing.paired_in_processes(
            parity.hand_example1, _no_such_file, repeats=1, window_s=0.05, settle_s=0.0
        )


def test_a_reused_iterator_is_replaced_every_few_windows(tf):
    made = []

    class Counted:
        def __iter__(self):
            made.append(1)
            return iter(tf.data.Dataset.range(10**6).batch(4))

    timer = _timing.Timer(Counted(), fresh_every=2)
    for _ in range(5):
        timer.window(0.01, 0.0)
    timer.close()
    assert len(made) == 3  # windows 1-2, 3-4, 5


def test_each_dataset_gets_an_untimed_window_and_every_window_settles(monkeypatch, tf):
    calls = []
    monkeypatch.setattr(_timing, "settle", lambda seconds=None: calls.append("settle"))
    a = tf.data.Dataset.range(10**6).batch(4)
    b = tf.data.Dataset.range(10**6).batch(8)
    sides = [_timing.Timer(a, fresh_every=1), _timing.Timer(b, fresh_every=1)]
    paired = _timing.Paired(*_timing._alternate(sides, 2, 0.02, 0.0, 0.02))
    assert len(paired.a) == len(paired.b) == 2  # the untimed windows are not kept
    assert calls == ["settle"] * 6  # 2 untimed + 2 x 2 timed windows


def test_rounds_rotate_the_order_so_no_side_always_goes_first():
    calls = []

    class Side:
        def __init__(self, name):
            self.name = name

        def window(self, window_s, warmup_s):
            calls.append((self.name, window_s))
            return _timing.Window(len(calls), wall_s=window_s, cpu_s=0.0)

    windows = _timing._alternate([Side("a"), Side("b"), Side("c")], 3, 0.5, 0.0, 2.0)
    assert calls[:3] == [("a", 2.0), ("b", 2.0), ("c", 2.0)]  # one untimed window each
    assert "".join(name for name, _ in calls[3:]) == "abc" + "bca" + "cab"
    assert [[w.examples for w in side] for side in windows] == [[4, 9, 11], [5, 7, 12], [6, 8, 10]]


def test_rounds_are_split_among_sets_of_processes_started_one_after_another(monkeypatch):
    events = []

    class FakeChild:  # stands in for a process: records its life, times nothing
        def __init__(self, make, fresh_every, settle_s):
            self.name, self.set = make(), sum(e[0] == "start" for e in events) // 2
            events.append(("start", self.name))

        def ready(self):
            pass

        def window(self, window_s, warmup_s):
            events.append(("window", self.name, self.set))
            return _timing.Window(1000 * (self.set + 1), wall_s=1.0, cpu_s=0.0)

        def close(self):
            events.append(("close", self.name))

    monkeypatch.setattr(_timing, "_Child", FakeChild)
    makers = {"a": partial(str, "a"), "b": partial(str, "b")}
    windows = _timing.timed_in_processes(makers, repeats=5, processes=2)
    assert _timing.process_groups(5, 2) == (0, 0, 0, 1, 1)
    assert [w.examples for w in windows["a"]] == [1000] * 3 + [2000] * 2
    # the second set starts only after the first has closed, and goes on rotating
    kinds = [e[0] for e in events]
    assert kinds.index("start", 2) > kinds.index("close") + 1
    timed = [e[1] for e in events if e[0] == "window"]
    assert "".join(timed) == "ab" + "ab" + "ba" + "ab" + "ab" + "ba" + "ab"  # untimed first


def test_processes_that_disagree_widen_the_interval():
    """Three pairs of processes, each steady, the measured side ~0%, 3% and 6% ahead."""
    sets = [[0, 5, -5, 10, -10, 0, 0], [30, 35, 25, 40, 20, 30, 30], [60, 65, 55, 70, 50, 60, 60]]
    a = tuple(_timing.Window(1000 + d, wall_s=1.0, cpu_s=1.0) for s in sets for d in s)
    b = (_timing.Window(1000, wall_s=1.0, cpu_s=1.0),) * 21
    pooled = _timing.Paired(a, b).ratio_interval()
    by_process = _timing.Paired(a, b, _timing.process_groups(21, 3)).ratio_interval()
    assert by_process[0] < pooled[0] and by_process[1] > pooled[1]
    assert by_process[0] <= 1.0  # one process pair alone may be all there is to it
