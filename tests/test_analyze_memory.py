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


def test_cache_shuffle_and_prefetch_parts():
    element = 8 * 8 * 3 * 4 + 8
    spec = make(
        [
            {"op": "cache"},
            {"op": "shuffle", "buffer_size": 100},
            {"op": "batch", "batch_size": 10},
            {"op": "prefetch", "buffer_size": 3},
        ]
    )
    estimate = memory_estimate(spec, available=10**9)
    parts = {p.what: p for p in estimate.parts}
    assert parts["memory cache"].bytes == 1000 * element
    assert parts["shuffle buffer"].bytes == 100 * element
    assert parts["prefetch buffer"].bytes == 3 * 10 * element
    assert estimate.total_bytes == (1000 + 100 + 30) * element
    assert not estimate.exceeds_available()
    assert estimate.to_dict()["total_bytes"] == estimate.total_bytes


def test_shuffle_buffer_holds_at_most_the_dataset():
    spec = make([{"op": "shuffle", "buffer_size": 5000}], num_examples=50)
    assert memory_estimate(spec).parts[0].elements == 50


def test_in_memory_numpy_arrays_count_fully():
    spec = load_spec(
        {"source": {"type": "numpy", "num_examples": 200, "shape": [4, 4], "dtype": "float64"}}
    )
    (part,) = memory_estimate(spec).parts
    assert part.bytes == 200 * (4 * 4 * 8 + 8)


def test_memory_guard_warns_and_blocks():
    spec = make([{"op": "cache"}], num_examples=10_000, shape=[32, 32, 3])
    need = 10_000 * (32 * 32 * 3 * 4 + 8)
    assert check_memory(spec, available=need * 4).level == "ok"
    assert check_memory(spec, available=int(need * 1.5)).level == "warn"
    blocked = check_memory(spec, available=need // 2)
    assert blocked.level == "block"
    assert "memory cache at steps[0]" in blocked.message and "confirm" in blocked.message
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
