"""The tuner's candidate space: knobs offered per spec, and every point realizes a valid spec."""

from __future__ import annotations

import pytest

from pipeline_core.analysis.machine import SOURCE_PARALLEL_FIELD, single_core_spec
from pipeline_core.analysis.space import (
    WHOLE_BATCHES,
    describe_value,
    movable_suffix,
    realize,
    search_space,
    whole_batches,
    whole_batches_passes,
)
from pipeline_core.spec import SOURCE_MODELS, load_spec
from pipeline_core.steps import BatchStep, CacheStep, MapStep, PrefetchStep


def always_fits(spec, position):
    return True


def make(steps, *, source=None, options=None):
    data = {
        "source": source or {"type": "synthetic", "num_examples": 64, "shape": [8, 8, 3]},
        "steps": steps,
    }
    if options:
        data["options"] = options
    return load_spec(data)


FLIP = {"name": "random_flip_left_right"}
RESIZE = {"name": "resize", "height": 4, "width": 4}
JPEG = {"name": "jpeg_quality"}  # works on single images only
TO_FLOAT = {"name": "convert_dtype", "dtype": "float32"}
EXAMPLE3 = make(
    [
        {"op": "map", "augmentations": [FLIP], "num_parallel_calls": "autotune"},
        {"op": "batch", "batch_size": 16},
        {"op": "prefetch", "buffer_size": "autotune"},
    ]
)
DECODE_AUGMENT = make(
    [
        {"op": "map", "augmentations": [RESIZE]},
        {"op": "shuffle", "buffer_size": 32},
        {"op": "map", "augmentations": [FLIP]},
        {"op": "batch", "batch_size": 8},
    ]
)
CACHED = make(
    [
        {"op": "map", "augmentations": [RESIZE]},
        {"op": "cache"},
        {"op": "map", "augmentations": [FLIP]},
        {"op": "batch", "batch_size": 8},
    ]
)
SPECS = {"example3": EXAMPLE3, "decode_augment": DECODE_AUGMENT, "cached": CACHED}


@pytest.mark.parametrize("name", list(SPECS))
def test_baseline_settings_realize_the_spec_as_written(name):
    spec = SPECS[name]
    space = search_space(spec, cores=2, cache_fits=always_fits)
    assert space.realize(space.baseline()) == spec


@pytest.mark.parametrize("name", list(SPECS))
def test_every_grid_point_is_a_valid_spec(name):
    space = search_space(
        SPECS[name], cores=2, tune_batch_size=True, allow_reorder=True, cache_fits=always_fits
    )
    points = list(space.grid())
    assert len(points) == space.size() > 1
    for settings in points:
        assert space.realize(settings).steps  # validated by load_spec inside


def test_knobs_of_a_decode_then_augment_pipeline():
    space = search_space(DECODE_AUGMENT, cores=2, cache_fits=always_fits)
    values = space.values()
    assert values["map[0].parallel"] == (None, 2, 4, "autotune")
    assert values["map[2].parallel"] == (None, 2, 4, "autotune")
    # only the map right before batch may move; only before the first random step may cache
    assert "map[2].vectorize" in values and "map[0].vectorize" not in values
    assert values["map[2].vectorize"] == (0, 1)
    assert values["cache"] == ("none", -1, 0)
    assert values["prefetch"] == ("none", 1, 4, "autotune")
    assert values["batch.parallel"] == (None, "autotune")
    assert values["options.max_intra_op_parallelism"] == (None, 1)
    assert values["options.private_threadpool_size"] == (None, 4)
    assert values["options.autotune"] == (None, False)
    assert "batch_size" not in values and "deterministic" not in values


def test_options_knobs_realize_tf_data_options():
    spec = realize(
        EXAMPLE3,
        {
            "options.max_intra_op_parallelism": 1,
            "options.private_threadpool_size": 4,
            "options.autotune": False,
            "batch.parallel": "autotune",
        },
    )
    assert spec.options.max_intra_op_parallelism == 1
    assert spec.options.private_threadpool_size == 4 and spec.options.autotune is False
    assert spec.steps[1].num_parallel_calls == "autotune"
    assert spec.steps[0] == EXAMPLE3.steps[0]


def test_batch_size_and_reordering_only_when_allowed():
    space = search_space(
        EXAMPLE3, cores=2, tune_batch_size=True, allow_reorder=True, cache_fits=always_fits
    )
    assert space.values()["batch_size"] == (16, 8, 32, 64)
    assert space.values()["deterministic"] == (None, False)


def test_cache_positions_that_do_not_fit_are_not_offered():
    space = search_space(DECODE_AUGMENT, cores=2, cache_fits=lambda spec, pos: pos == -1)
    assert space.values()["cache"] == ("none", -1)


def test_vectorize_moves_the_map_after_batch_and_keeps_its_parallelism():
    spec = realize(EXAMPLE3, {"map[0].vectorize": 1, "map[0].parallel": 4})
    ops = [s.op for s in spec.steps]
    assert ops == ["batch", "map", "prefetch"]
    assert isinstance(spec.steps[1], MapStep) and spec.steps[1].num_parallel_calls == 4


def test_only_a_trailing_run_of_batch_augmentations_moves_after_batch():
    spec = make(
        [
            {"op": "map", "augmentations": [JPEG, FLIP, TO_FLOAT], "num_parallel_calls": 2},
            {"op": "shuffle", "buffer_size": 8},
            {"op": "batch", "batch_size": 4},
        ]
    )
    assert movable_suffix(spec, 0) == 2  # jpeg_quality works on single images: it stays
    assert search_space(spec, cores=2, cache_fits=always_fits).values()["map[0].vectorize"] == (
        0,
        2,
    )
    out = realize(spec, {"map[0].vectorize": 2})
    assert [s.op for s in out.steps] == ["map", "shuffle", "batch", "map"]
    assert [a.name for a in out.steps[0].augmentations] == ["jpeg_quality"]
    assert [a.name for a in out.steps[3].augmentations] == [
        "random_flip_left_right",
        "convert_dtype",
    ]
    assert out.steps[3].num_parallel_calls == 2
    assert search_space(spec, cores=2, cache_fits=always_fits).describe(
        {"map[0].vectorize": 2}
    ) == {"map[0].vectorize": "last 2 after batch"}


def test_no_vectorize_knob_when_another_map_sits_before_the_batch():
    spec = make(
        [
            {"op": "map", "augmentations": [FLIP]},
            {"op": "map", "augmentations": [JPEG]},
            {"op": "batch", "batch_size": 4},
        ]
    )
    names = search_space(spec, cores=2, cache_fits=always_fits).values()
    assert movable_suffix(spec, 0) == 0 and movable_suffix(spec, 1) == 0
    assert not any(n.endswith(".vectorize") for n in names)


def test_cache_and_prefetch_settings_place_and_remove_steps():
    moved = realize(CACHED, {"cache": -1, "prefetch": 2})
    assert isinstance(moved.steps[0], CacheStep)
    assert [type(s) for s in moved.steps].count(CacheStep) == 1
    assert isinstance(moved.steps[-1], PrefetchStep) and moved.steps[-1].buffer_size == 2
    none = realize(CACHED, {"cache": "none", "prefetch": "none"})
    assert not any(isinstance(s, CacheStep | PrefetchStep) for s in none.steps)


def test_cache_after_a_moved_map_stays_where_the_map_was():
    spec = make(
        [{"op": "map", "augmentations": [RESIZE]}, {"op": "batch", "batch_size": 4}],
    )
    out = realize(spec, {"cache": 0, "map[0].vectorize": 1})
    assert [s.op for s in out.steps] == ["cache", "batch", "map"]
    assert isinstance(out.steps[1], BatchStep)


def test_interleave_parallelism_is_a_knob_for_file_sources(tmp_path):
    (tmp_path / "a.csv").write_text("x,label\n1.0,0\n")
    spec = make(
        [{"op": "interleave", "num_parallel_calls": None}, {"op": "batch", "batch_size": 2}],
        source={"type": "csv", "path": str(tmp_path / "*.csv")},
    )
    space = search_space(spec, cores=2, cache_fits=always_fits)
    assert space.values()["interleave.parallel"] == (None, 2, "autotune")
    assert realize(spec, {"interleave.parallel": "autotune"}).steps[0].num_parallel_calls == (
        "autotune"
    )


def test_no_cache_is_offered_before_a_leading_interleave(tmp_path):
    (tmp_path / "a.csv").write_text("x,label\n1.0,0\n")
    spec = make(
        [
            {"op": "interleave", "num_parallel_calls": None},
            {"op": "map", "augmentations": [FLIP]},
            {"op": "batch", "batch_size": 2},
        ],
        source={"type": "csv", "path": str(tmp_path / "*.csv")},
    )
    space = search_space(spec, cores=2, cache_fits=always_fits)
    assert space.values()["cache"] == ("none", 0)
    for settings in space.grid():
        assert space.realize(settings).steps[0].op == "interleave"


def test_an_interleave_is_offered_for_sharded_files_without_one(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text("x,label\n1.0,0\n")
    spec = make(
        [{"op": "batch", "batch_size": 2}],
        source={"type": "csv", "path": str(tmp_path / "*.csv")},
    )
    space = search_space(spec, cores=2, cache_fits=always_fits)
    assert space.values()["interleave.parallel"] == ("none", "autotune", 2)
    assert space.describe({"interleave.parallel": "none"}) == {
        "interleave.parallel": "no interleave"
    }
    out = realize(spec, {"interleave.parallel": "autotune", "cache": -1})
    assert [s.op for s in out.steps] == ["interleave", "cache", "batch"]
    assert out.steps[0].num_parallel_calls == "autotune"
    for settings in space.grid():
        assert space.realize(settings).steps[0].op in ("interleave", "cache", "batch")


def test_one_file_gets_no_interleave_knob(tmp_path):
    (tmp_path / "a.csv").write_text("x,label\n1.0,0\n")
    spec = make(
        [{"op": "batch", "batch_size": 2}],
        source={"type": "csv", "path": str(tmp_path / "a.csv")},
    )
    assert "interleave.parallel" not in search_space(spec, cores=2).values()


@pytest.mark.parametrize("source_type", ["image_folder", "tfrecord", "csv"])
def test_parallel_decode_is_a_knob_once_the_source_has_the_field(source_type, tmp_path):
    """The engine adds `num_parallel_calls` to the file sources; the knob follows the field."""
    model = SOURCE_MODELS[source_type]
    (tmp_path / "a.csv").write_text("x,label\n1.0,0\n")
    source = {
        "image_folder": {"type": "image_folder", "path": str(tmp_path)},
        "tfrecord": {"type": "tfrecord", "files": str(tmp_path / "*.tfrecord")},
        "csv": {"type": "csv", "path": str(tmp_path / "a.csv")},
    }[source_type]
    spec = make([{"op": "batch", "batch_size": 2}], source=source)
    values = search_space(spec, cores=2, cache_fits=always_fits).values()
    if SOURCE_PARALLEL_FIELD not in model.model_fields:
        assert "source.parallel" not in values
        return
    assert values["source.parallel"][0] == getattr(spec.source, SOURCE_PARALLEL_FIELD)
    assert set(values["source.parallel"]) >= {None, 2, 4, "autotune"}
    out = realize(spec, {"source.parallel": None})
    assert getattr(out.source, SOURCE_PARALLEL_FIELD) is None
    parallel = realize(spec, {"source.parallel": "autotune"})
    assert getattr(single_core_spec(parallel).source, SOURCE_PARALLEL_FIELD) is None


REPEAT_THEN_BATCH = make(
    [
        {"op": "map", "augmentations": [RESIZE]},
        {"op": "repeat"},
        {"op": "batch", "batch_size": 16},
        {"op": "prefetch", "buffer_size": "autotune"},
    ]
)


def test_a_cache_of_whole_batches_puts_the_repeat_after_it():
    space = search_space(REPEAT_THEN_BATCH, cores=2, cache_fits=always_fits)
    assert space.values()["cache"] == ("none", -1, 0, WHOLE_BATCHES)
    out = realize(REPEAT_THEN_BATCH, {"cache": WHOLE_BATCHES})
    assert [s.op for s in out.steps] == ["map", "batch", "cache", "repeat", "prefetch"]
    assert space.describe({"cache": WHOLE_BATCHES}) == {
        "cache": "whole batches after steps[2] batch, repeat after the cache"
    }
    vectorized = realize(REPEAT_THEN_BATCH, {"cache": WHOLE_BATCHES, "map[0].vectorize": 1})
    assert [s.op for s in vectorized.steps] == ["batch", "map", "cache", "repeat", "prefetch"]


def test_a_cache_of_whole_batches_yields_the_same_elements_pass_after_pass():
    import numpy as np

    from pipeline_core.build import build

    written = build(REPEAT_THEN_BATCH).take(4 * 3)  # 64 examples: 4 batches a pass
    cached = build(realize(REPEAT_THEN_BATCH, {"cache": WHOLE_BATCHES})).take(4 * 3)
    for (x, y), (cx, cy) in zip(written, cached, strict=True):
        assert np.array_equal(x.numpy(), cx.numpy()) and np.array_equal(y.numpy(), cy.numpy())


@pytest.mark.parametrize("count", [None, 3, 6])
def test_a_cache_of_whole_batches_holds_the_fewest_passes_that_make_whole_batches(count):
    """64 examples a pass, batches of 48: 3 passes make 4 whole batches."""
    import numpy as np

    from pipeline_core.build import build

    spec = make(
        [
            {"op": "map", "augmentations": [RESIZE]},
            {"op": "repeat", "count": count},
            {"op": "batch", "batch_size": 48},
        ]
    )
    space = search_space(spec, cores=2, cache_fits=always_fits)
    value = whole_batches(3)
    assert space.values()["cache"][-1] == value == "whole batches of 3 passes"
    assert whole_batches_passes(value) == 3 and whole_batches_passes(WHOLE_BATCHES) == 1
    assert whole_batches_passes("whole batches of 1 passes") is None
    out = realize(spec, {"cache": value})
    assert [(s.op, getattr(s, "count", "-")) for s in out.steps] == [
        ("map", "-"),
        ("repeat", 3),
        ("batch", "-"),
        ("cache", "-"),
        *([] if count == 3 else [("repeat", None if count is None else count // 3)]),
    ]
    assert space.describe({"cache": value}) == {
        "cache": "whole batches of 3 passes after steps[2] batch, repeat after the cache"
    }
    written = list(build(spec).take(4 * 4))
    cached = list(build(out).take(4 * 4))
    assert len(written) == len(cached) == {None: 16, 3: 4, 6: 8}[count]  # 4 batches in 3 passes
    for (x, y), (cx, cy) in zip(written, cached, strict=True):
        assert np.array_equal(x.numpy(), cx.numpy()) and np.array_equal(y.numpy(), cy.numpy())


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        (
            [{"op": "repeat"}, {"op": "batch", "batch_size": 51}],
            "51 whole batches need 51 passes of 64, more than MAX_CACHED_PASSES",
        ),
        (
            [{"op": "repeat", "count": 4}, {"op": "batch", "batch_size": 48}],
            "3 passes make whole batches of 48, and 3 does not divide the repeat's 4",
        ),
        (
            [{"op": "map", "augmentations": [FLIP]}, {"op": "repeat"}, {"op": "batch"}],
            "a random map before the repeat would be frozen",
        ),
        (
            [{"op": "repeat"}, {"op": "shuffle", "buffer_size": 8}, {"op": "batch"}],
            "a shuffle between the repeat and the batch mixes passes",
        ),
        ([{"op": "batch", "batch_size": 16}, {"op": "repeat"}], "no repeat before the batch"),
    ],
)
def test_no_cache_of_whole_batches_where_it_would_change_the_elements(steps, why):
    values = search_space(make(steps), cores=2, cache_fits=always_fits).values()
    assert WHOLE_BATCHES not in values.get("cache", ()), why


def test_a_cache_the_spec_already_has_after_repeat_and_batch_stays_as_written():
    spec = make([{"op": "repeat"}, {"op": "batch", "batch_size": 16}, {"op": "cache"}])
    space = search_space(spec, cores=2, cache_fits=always_fits)
    assert space.realize(space.baseline()).steps == spec.steps
    assert space.describe({"cache": 1}) == {"cache": "after steps[1] batch"}


def test_no_cache_of_whole_batches_when_the_batch_size_is_tuned():
    space = search_space(REPEAT_THEN_BATCH, cores=2, tune_batch_size=True, cache_fits=always_fits)
    assert WHOLE_BATCHES not in space.values()["cache"]


def test_describing_and_realizing_a_cache_of_whole_batches_reads_no_data(monkeypatch):
    """The server describes and applies a tuned spec: that must not count records."""
    from pipeline_core.analysis import space as space_module

    def no_counting(spec):
        raise AssertionError("counted elements (reads the data)")

    monkeypatch.setattr(space_module, "stage_counts", no_counting)
    out = realize(REPEAT_THEN_BATCH, {"cache": WHOLE_BATCHES})
    assert [s.op for s in out.steps][1:4] == ["batch", "cache", "repeat"]
    assert describe_value(REPEAT_THEN_BATCH, "cache", WHOLE_BATCHES).startswith("whole batches")


def test_a_long_cache_value_gets_a_short_label_beside_the_trials_chart_axis():
    from pipeline_core.analysis.figures import tick_label

    spec = make([{"op": "repeat"}, {"op": "batch", "batch_size": 48}])
    assert tick_label(describe_value(spec, "cache", whole_batches(3))) == "whole batches ×3"
    assert tick_label(describe_value(REPEAT_THEN_BATCH, "cache", WHOLE_BATCHES)) == (
        "whole batches"
    )
    assert tick_label("after source") == "after source"
    cut = tick_label("after steps[12] interleave")
    assert len(cut) == 18 and cut.endswith("…") and cut.startswith("after steps[12]")
