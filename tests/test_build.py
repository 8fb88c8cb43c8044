"""The builder: every op, the user's order, options, element specs and BuildError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_core.build import BuildError, build, dataset_cardinality, element_specs
from pipeline_core.spec import load_spec
from pipeline_core.steps import HUGE_BATCH, STEPS, batch_size_for
from tests import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.json"))
SOURCE = {"type": "synthetic", "num_examples": 10, "shape": [4, 4, 3], "dtype": "uint8"}
FLIP = {"name": "random_flip_left_right"}


def _spec(*steps, source=SOURCE, **extra):
    return load_spec({"source": source, "steps": list(steps), **extra})


def _count(ds) -> int:
    return sum(1 for _ in ds)


def _shapes(ds) -> list[tuple[int, ...]]:
    return [tuple(x.shape) for x, _ in ds]


# op -> (steps, expected element count, expected first features shape)
OP_CASES = {
    "map": ([{"op": "map", "augmentations": [FLIP], "num_parallel_calls": 2}], 10, (4, 4, 3)),
    "shuffle": ([{"op": "shuffle", "buffer_size": 4, "seed": 1}], 10, (4, 4, 3)),
    "cache": ([{"op": "cache"}], 10, (4, 4, 3)),
    "batch": ([{"op": "batch", "batch_size": 4, "drop_remainder": True}], 2, (4, 4, 4, 3)),
    "prefetch": ([{"op": "prefetch", "buffer_size": 2}], 10, (4, 4, 3)),
    "repeat": ([{"op": "repeat", "count": 3}], 30, (4, 4, 3)),
    "take": ([{"op": "take", "count": 3}], 3, (4, 4, 3)),
    "sleep": ([{"op": "sleep", "ms": 1}], 10, (4, 4, 3)),
}


def test_every_step_op_has_a_case():
    # interleave: test_interleave_over_files; distribute: tests/test_distribute.py
    assert set(OP_CASES) | {"interleave", "distribute"} == set(STEPS)


@pytest.mark.parametrize("op", sorted(OP_CASES))
def test_each_op(op):
    steps, count, shape = OP_CASES[op]
    ds = build(_spec(*steps))
    shapes = _shapes(ds)
    assert len(shapes) == count
    assert shapes[0] == shape


def test_interleave_over_files():
    source = {"type": "tfrecord", "files": "{data_dir}/demo/tfrecord/shapes-*.tfrecord"}
    step = {"op": "interleave", "cycle_length": 2, "block_length": 3, "deterministic": True}
    labels = [int(y) for _, y in build(_spec(step, source=source))]
    assert len(labels) == 200
    # block_length 3 over two shards: elements 0-2 from shard 0, 3-5 from shard 1.
    sequential = [int(y) for _, y in build(_spec(source=source))]
    assert labels[:3] == sequential[:3] and labels[3:6] == sequential[100:103]


def test_map_before_and_after_batch_give_the_same_shapes():
    brightness = {"name": "random_brightness", "max_delta": 0.3}
    map_step = {"op": "map", "augmentations": [FLIP, brightness]}
    batch = {"op": "batch", "batch_size": 5}
    before = build(_spec(map_step, batch))
    after = build(_spec(batch, map_step))
    assert _shapes(before) == _shapes(after) == [(5, 4, 4, 3)] * 2
    assert before.element_spec == after.element_spec


def test_map_is_reproducible_and_rerolls_each_epoch():
    spec = _spec({"op": "map", "augmentations": [{"name": "random_brightness", "max_delta": 0.5}]})
    first = [x.numpy() for x, _ in build(spec)]
    again = [x.numpy() for x, _ in build(spec)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    repeated = [
        x.numpy() for x, _ in build(_spec(*spec.to_dict()["steps"], {"op": "repeat", "count": 2}))
    ]
    assert not all(np.array_equal(a, b) for a, b in zip(repeated[:10], repeated[10:], strict=True))


def test_cache_to_file_before_augmentation(tmp_path):
    cache = {"op": "cache", "filename": str(tmp_path / "sub" / "c")}
    spec = _spec(cache, {"op": "map", "augmentations": [FLIP]})
    assert _count(build(spec)) == 10
    assert any((tmp_path / "sub").iterdir())


def test_cache_filename_that_is_a_folder_names_the_step(tmp_path):
    with pytest.raises(BuildError, match=r"steps\[1\] \(cache\): .* is a folder") as info:
        build(_spec({"op": "take", "count": 2}, {"op": "cache", "filename": str(tmp_path)}))
    assert info.value.step_index == 1


def test_options_are_applied():
    options = {
        "deterministic": False,
        "private_threadpool_size": 2,
        "max_intra_op_parallelism": 1,
        "autotune": False,
        "autotune_ram_budget_mb": 64,
    }
    got = build(_spec(options=options)).options()
    assert got.deterministic is False
    assert got.threading.private_threadpool_size == 2
    assert got.threading.max_intra_op_parallelism == 1
    assert got.autotune.enabled is False
    assert got.autotune.ram_budget == 64 * 1024 * 1024


def test_default_options_add_no_options_dataset(tf):
    # as the exported code and a hand-written pipeline: no `with_options` of defaults
    ds = build(_spec({"op": "batch", "batch_size": 4}))
    assert type(ds).__name__ == "_BatchDataset"
    assert ds.options() == tf.data.Options()
    set_one = build(_spec({"op": "batch", "batch_size": 4}, options={"deterministic": False}))
    assert type(set_one).__name__ == "_OptionsDataset"


def test_parallelism_values_are_accepted():
    for calls in (None, 3, "autotune"):
        step = {"op": "batch", "batch_size": 3, "num_parallel_calls": calls, "deterministic": True}
        assert _count(build(_spec(step))) == 4


def test_source_failure_is_a_build_error_naming_the_source(tmp_path):
    source = {"type": "image_folder", "path": str(tmp_path / "missing")}
    with pytest.raises(BuildError, match=r"^source \(image_folder\): .* does not exist") as info:
        build(_spec(source=source))
    assert info.value.step_index is None


def test_step_failure_names_the_step():
    # Undecoded TFRecord image bytes are string scalars: a flip cannot be built on them.
    source = {"type": "tfrecord", "files": "{data_dir}/demo/tfrecord/shapes-*.tfrecord"}
    steps = [{"op": "take", "count": 4}, {"op": "map", "augmentations": [FLIP]}]
    with pytest.raises(BuildError) as info:
        build(_spec(*steps, source=source))
    assert info.value.step_index == 1
    assert str(info.value).startswith(
        "steps[1] (map): random_flip_left_right needs image features [height, width, channels]"
    )
    assert "in user code" not in str(info.value)


def test_element_specs_after_each_stage():
    spec = _spec({"op": "map", "augmentations": [FLIP]}, {"op": "batch", "batch_size": 4})
    stages = element_specs(spec)
    assert [s.stage for s in stages] == ["source (synthetic)", "steps[0] map", "steps[1] batch"]
    assert stages[0].features == "uint8 (4, 4, 3)" and stages[0].label == "int64 ()"
    assert stages[2].features == "uint8 (None, 4, 4, 3)" and stages[2].label == "int64 (None,)"
    assert [s.cardinality for s in stages] == [10, 10, 3]


def test_cardinality_known_and_infinite():
    assert dataset_cardinality(_spec({"op": "batch", "batch_size": 3})) == 4
    assert dataset_cardinality(_spec({"op": "repeat"})) is None


def test_custom_generator_through_build():
    def pairs():
        for i in range(4):
            yield np.full((2,), i, np.float32), i

    spec = _spec(source={"type": "generator", "template": "custom", "shape": [2]})
    assert [int(y) for _, y in build(spec, generator=pairs)] == [0, 1, 2, 3]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_build_and_yield_a_batch(path):
    spec = load_spec(path)
    assert json.loads(spec.to_json())["name"]
    features, label = next(iter(build(spec)))
    assert features.shape.rank >= 2 and label.shape[0] == features.shape[0]


def test_a_batch_size_above_the_element_count_gives_one_batch_without_stalling():
    # TensorFlow reserves room for batch_size elements: 1e9 would stall the pipeline.
    ds = build(_spec({"op": "batch", "batch_size": 1_000_000_000}))
    assert [tuple(x.shape) for x, _ in ds] == [(10, 4, 4, 3)]
    assert batch_size_for(HUGE_BATCH + 1, 10, drop_remainder=False) == 10
    assert batch_size_for(HUGE_BATCH + 1, 0, drop_remainder=False) == 1
    assert batch_size_for(HUGE_BATCH + 1, None, drop_remainder=False) == HUGE_BATCH + 1
    assert batch_size_for(64, 10, drop_remainder=False) == 64  # one batch of 10 all the same
    assert batch_size_for(8, 10, drop_remainder=True) == 8


def test_a_drop_remainder_batch_larger_than_the_data_is_named():
    with pytest.raises(BuildError, match=r"steps\[0\] \(batch\): batch_size 64 is larger than"):
        build(_spec({"op": "batch", "batch_size": 64, "drop_remainder": True}))


def test_the_exported_script_asks_for_the_count_for_a_huge_batch(tf):
    from pipeline_core.export import export_code

    code = export_code(_spec({"op": "batch", "batch_size": 1_000_000_000}))
    namespace: dict = {}
    exec(compile(code, "pipeline.py", "exec"), namespace)  # our own export
    assert [tuple(x.shape) for x, _ in namespace["make_dataset"]()] == [(10, 4, 4, 3)]
