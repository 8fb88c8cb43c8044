"""Memory estimates against element sizes known by arithmetic."""

from __future__ import annotations

import math

import pytest

from pipeline_core.analysis.examples import stage_counts
from pipeline_core.analysis.memory import check_memory, format_bytes, memory_estimate, stage_bytes
from pipeline_core.spec import load_spec


def make(steps, **source):
    src = {"type": "synthetic", "num_examples": 1000, "shape": [8, 8, 3], **source}
    return load_spec({"source": src, "steps": steps})


# (dtype, bytes of one [8, 8, 3] example + its int64 label)
SIZES = [("float32", 8 * 8 * 3 * 4 + 8), ("uint8", 8 * 8 * 3 + 8), ("float64", 8 * 8 * 3 * 8 + 8)]


@pytest.mark.parametrize(("dtype", "size"), SIZES)
def test_element_bytes_follow_shape_dtype_and_batch(dtype, size):
    spec = make(
        [
            {"op": "batch", "batch_size": 10},
            {"op": "map", "augmentations": [{"name": "normalize"}]},
        ],
        dtype=dtype,
    )
    normalized = 10 * (8 * 8 * 3 * 4 + 8)  # normalize turns features into float32
    assert stage_bytes(spec) == (size, 10 * size, normalized)


def test_counts_follow_batch_take_and_repeat():
    spec = make(
        [
            {"op": "take", "count": 95},
            {"op": "batch", "batch_size": 10},
            {"op": "repeat", "count": 3},
            {"op": "batch", "batch_size": 4, "drop_remainder": True},
            {"op": "repeat"},
        ]
    )
    assert stage_counts(spec) == (1000, 95, 10, 30, 7, math.inf)


@pytest.mark.parametrize("shape", [[5, 5, 3], [8, 8, 3]])
def test_cache_shuffle_and_prefetch_parts(shape):
    element = math.prod(shape) * 4 + 8
    spec = make(
        [
            {"op": "cache"},
            {"op": "shuffle", "buffer_size": 100},
            {"op": "batch", "batch_size": 10},
            {"op": "prefetch", "buffer_size": 3},
        ],
        shape=shape,
    )
    estimate = memory_estimate(spec, available=10**9)
    parts = {p.what: p for p in estimate.parts}
    assert parts["synthetic source data"].bytes == 1000 * element  # its cached chunks
    assert parts["prefetch buffer"].bytes == 3 * 10 * element  # batches are new tensors
    if shape == [5, 5, 3]:  # 300 bytes of features: not 64-aligned, so slices are copies
        assert parts["memory cache"].bytes == 1000 * element
        assert parts["shuffle buffer"].bytes == 100 * element
        assert estimate.total_bytes == (1000 + 1000 + 100 + 30) * element
    else:  # 768 bytes: slices are views of the cached chunks (measured: a cache and a
        # shuffle buffer of 10,000 such elements added 5 and 11 MiB to 117 MiB of data)
        assert parts["memory cache"].bytes == parts["shuffle buffer"].bytes == 0
        assert "shares the source's memory" in parts["memory cache"].note
        assert estimate.total_bytes == (1000 + 30) * element
    assert not estimate.exceeds_available()
    assert estimate.to_dict()["total_bytes"] == estimate.total_bytes


def test_shuffle_buffer_holds_at_most_the_dataset():
    spec = make([{"op": "shuffle", "buffer_size": 5000}], num_examples=50)
    parts = {p.what: p for p in memory_estimate(spec).parts}
    assert parts["shuffle buffer"].elements == 50


def test_in_memory_numpy_arrays_count_twice():
    spec = load_spec(
        {"source": {"type": "numpy", "num_examples": 200, "shape": [4, 4], "dtype": "float64"}}
    )
    (part,) = memory_estimate(spec).parts
    assert part.bytes == 2 * 200 * (4 * 4 * 8 + 8)  # the arrays and TensorFlow's copy
    assert "TensorFlow's copy" in part.note


def test_a_synthetic_source_above_1_gib_is_not_held():
    spec = make([], num_examples=1_000_000, shape=[64, 64, 3])  # 12 GiB: made chunk by chunk
    assert memory_estimate(spec, available=10**9).parts == ()


def _numpy(steps, shape=(8, 8, 4)):
    source = {"type": "numpy", "num_examples": 1000, "shape": list(shape), "dtype": "float32"}
    return load_spec({"source": source, "steps": steps})


def test_buffers_over_a_numpy_source_share_its_memory_until_a_map_or_batch():
    shuffle, cache = {"op": "shuffle", "buffer_size": 500}, {"op": "cache"}
    brighten = {"op": "map", "augmentations": [{"name": "random_brightness"}]}
    parts = memory_estimate(_numpy([shuffle, cache, {"op": "prefetch", "buffer_size": 4}])).parts
    shared = {p.what: p for p in parts if p.step_index is not None}
    assert {what: p.bytes for what, p in shared.items()} == {
        "shuffle buffer": 0.0, "memory cache": 0.0, "prefetch buffer": 0.0
    }  # fmt: skip
    assert all("shares the source's memory" in p.note for p in shared.values())
    copied = {p.what: p for p in memory_estimate(_numpy([brighten, cache])).parts}
    assert copied["memory cache"].bytes == 1000 * (8 * 8 * 4 * 4 + 8)
    assert "shares" not in copied["memory cache"].note
    # 8x8x3 float32 = 768 bytes: a multiple of 64, shared; 5x5x3 = 300 bytes: copied
    unaligned = {p.what: p for p in memory_estimate(_numpy([cache], shape=(5, 5, 3))).parts}
    assert unaligned["memory cache"].bytes == 1000 * (5 * 5 * 3 * 4 + 8)


def test_maps_hold_their_calls_in_flight():
    def maps(parallel):
        step = {"op": "map", "augmentations": [{"name": "random_brightness"}],
                "num_parallel_calls": parallel}  # fmt: skip
        return {p.what: p for p in memory_estimate(make([step])).parts}

    element = 8 * 8 * 3 * 4 + 8
    assert maps(None)["map output"].bytes == element  # input and output alive together
    assert maps(8)["parallel map in flight"].bytes == 8 * element
    autotuned = maps("autotune")["parallel map in flight"]
    assert autotuned.note.startswith("autotune: assumed") and autotuned.elements >= 1


def test_a_memory_mapped_file_is_named_and_not_counted(tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((100, 8, 8, 3), np.float32))
    spec = load_spec({"source": {"type": "npy", "features_path": str(tmp_path / "x.npy")}})
    estimate = memory_estimate(spec)
    (part,) = estimate.parts
    assert (part.what, part.bytes) == ("memory-mapped file", 0.0)
    assert "file-backed" in part.note and estimate.unknown == ()


def test_memory_guard_warns_and_blocks():
    # 31x31x3 float32 is not a multiple of 64 bytes: the cache holds copies, not views.
    steps = [{"op": "repeat", "count": 2}, {"op": "cache"}]
    spec = make(steps, num_examples=10_000, shape=[31, 31, 3])
    need = 3 * 10_000 * (31 * 31 * 3 * 4 + 8)  # the synthetic source's data, the cache twice
    assert check_memory(spec, available=need * 4).level == "ok"
    assert check_memory(spec, available=int(need * 1.5)).level == "warn"
    blocked = check_memory(spec, available=need // 2)
    assert blocked.level == "block"
    assert "memory cache at steps[1]" in blocked.message and "confirm" in blocked.message
    assert blocked.estimate.exceeds_available()


def test_cache_of_an_endless_dataset_is_unbounded():
    spec = make([{"op": "repeat"}, {"op": "cache"}])
    estimate = memory_estimate(spec, available=10**12)
    assert math.isinf(estimate.total_bytes) and estimate.exceeds_available()
    assert format_bytes(estimate.total_bytes) == "unbounded"


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_bytes(None) == "unknown"


def test_image_folder_count_comes_from_the_files(tmp_path):
    from PIL import Image

    for label, count in (("a", 2), ("b", 3)):
        (tmp_path / label).mkdir()
        for i in range(count):
            Image.new("RGB", (6, 6)).save(tmp_path / label / f"{i}.png")
    spec = load_spec(
        {
            "source": {"type": "image_folder", "path": str(tmp_path), "image_size": [4, 4]},
            "steps": [{"op": "interleave"}, {"op": "cache"}],
        }
    )
    assert stage_counts(spec)[:2] == (5, 5)
    (part,) = memory_estimate(spec).parts
    assert part.elements == 5 and part.bytes == 5 * stage_bytes(spec)[1]


def test_csv_rows_are_counted_as_the_csv_reader_reads_them(tmp_path):
    # a header, a quoted field with a line break inside one row, and two files
    (tmp_path / "a.csv").write_text('x,label\n1.5,0\n"2\n",1\n3,0\n')
    (tmp_path / "b.csv").write_text("x,label\n4,1\n")
    spec = load_spec(
        {
            "source": {"type": "csv", "path": str(tmp_path / "*.csv")},
            "steps": [{"op": "cache"}, {"op": "batch", "batch_size": 3}],
        }
    )
    assert stage_counts(spec) == (4, 4, 2)
    assert memory_estimate(spec).parts[0].elements == 4
    (tmp_path / "c.txt").write_text("4,1\n5,0\n6,1\n")
    plain = {"type": "csv", "path": str(tmp_path / "c.txt"), "header": False}
    plain["label_column"] = "column1"
    assert stage_counts(load_spec({"source": plain})) == (3,)
    (tmp_path / "d.txt").write_text('7,1\n"8,0\n')  # a quote never closed
    broken = {**plain, "path": str(tmp_path / "[cd].txt")}
    assert stage_counts(load_spec({"source": broken})) == (None,)


def test_a_distributed_design_is_estimated_without_a_service():
    spec = load_spec(
        {
            "source": {"type": "synthetic", "num_examples": 100, "shape": [4, 4, 3]},
            "steps": [
                {"op": "sleep", "ms": 1},
                {"op": "distribute"},
                {"op": "batch", "batch_size": 10},
                {"op": "prefetch", "buffer_size": 2},
            ],
        }
    )
    sizes = stage_bytes(spec)
    assert sizes[2] == sizes[1] == sizes[0]  # the distribute step passes elements on
    assert sizes[3] > sizes[0]  # a batch of 10
    assert memory_estimate(spec).total_bytes > 0
