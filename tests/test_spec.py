"""The spec: JSON round trip for every registered item, and a table of invalid specs."""

from __future__ import annotations

import json

import pytest

from pipeline_core.augment import AUGMENTATIONS
from pipeline_core.generators import GENERATOR_TEMPLATES
from pipeline_core.spec import (
    SOURCE_MODELS,
    PipelineSpec,
    SpecError,
    default_spec,
    load_spec,
    new_source,
    new_step,
)
from pipeline_core.steps import STEPS

# One non-default example per source type.
SOURCE_CASES = {
    "synthetic": {"type": "synthetic", "num_examples": 5, "shape": [2, 3], "dtype": "uint8"},
    "numpy": {"type": "numpy", "path": "{data_dir}/a.npz", "features_key": "images"},
    "npy": {"type": "npy", "features_path": "x.npy", "labels_path": "~/y.npy"},
    "npz": {"type": "npz", "path": "$HOME/d.npz", "labels_key": None},
    "generator": {"type": "generator", "template": "slow_reader", "dtype": "float64"},
    "image_folder": {"type": "image_folder", "path": "imgs", "image_size": [28, 28], "channels": 1},
    "tfrecord": {
        "type": "tfrecord",
        "files": "data/*.tfrecord.gz",
        "compression": "GZIP",
        "features": {
            "image": {"kind": "fixed", "dtype": "string", "shape": []},
            "tags": {"kind": "var", "dtype": "int64"},
        },
        "decode_image": True,
        "image_size": [32, 32],
    },
    "csv": {
        "type": "csv",
        "path": "t.csv",
        "label_column": "y",
        "column_types": {"a": "float32", "y": "int64"},
        "header": False,
        "field_delim": ";",
    },
}

FILE_SOURCE = {"type": "tfrecord", "files": "x.tfrecord"}

# One non-default example per step op (and the source it needs).
STEP_CASES = {
    "map": (
        None,
        {
            "op": "map",
            "augmentations": [{"name": "random_brightness", "max_delta": 0.5}],
            "num_parallel_calls": 4,
            "deterministic": False,
        },
    ),
    "shuffle": (
        None,
        {"op": "shuffle", "buffer_size": 7, "seed": 1, "reshuffle_each_iteration": False},
    ),
    "cache": (None, {"op": "cache", "filename": "{data_dir}/cache/x"}),
    "batch": (
        None,
        {"op": "batch", "batch_size": 3, "drop_remainder": True, "num_parallel_calls": "autotune"},
    ),
    "prefetch": (None, {"op": "prefetch", "buffer_size": 0}),
    "repeat": (None, {"op": "repeat", "count": 2}),
    "take": (None, {"op": "take", "count": 9}),
    "interleave": (
        FILE_SOURCE,
        {"op": "interleave", "cycle_length": None, "block_length": 2, "num_parallel_calls": None},
    ),
    "sleep": (None, {"op": "sleep", "ms": 2.5}),
    "distribute": (
        None,
        {
            "op": "distribute",
            "service": "grpc://10.0.0.7:5050",
            "processing_mode": "parallel_epochs",
            "compression": None,
        },
    ),
}


def _round_trip(spec: PipelineSpec) -> None:
    assert load_spec(spec.to_json()) == spec
    assert load_spec(spec.to_dict()) == spec
    assert json.loads(spec.to_json()) == spec.to_dict()


def test_every_source_and_op_has_a_case():
    assert set(SOURCE_CASES) == set(SOURCE_MODELS)
    assert set(STEP_CASES) == set(STEPS)


@pytest.mark.parametrize("source_type", list(SOURCE_CASES))
def test_source_round_trip(source_type):
    spec = load_spec({"name": source_type, "source": SOURCE_CASES[source_type]})
    _round_trip(spec)
    assert spec.source.type == source_type
    default = load_spec({"source": new_source(source_type, **SOURCE_CASES[source_type])})
    assert default == spec.replace(name="untitled pipeline")


@pytest.mark.parametrize("op", list(STEP_CASES))
def test_step_round_trip(op):
    source, step = STEP_CASES[op]
    spec = load_spec({"source": source or {"type": "synthetic"}, "steps": [step]})
    _round_trip(spec)
    assert spec.steps[0].op == op
    fresh = load_spec({"source": source or {"type": "synthetic"}, "steps": [new_step(op)]})
    _round_trip(fresh)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_round_trips_inside_a_map(name):
    entry = AUGMENTATIONS[name]
    steps = [{"op": "map", "augmentations": [{"name": name}]}]
    if not entry.element_ok:
        steps.insert(0, {"op": "batch", "batch_size": 4})
    _round_trip(load_spec({"steps": steps}))


def test_options_and_default_round_trip():
    options = {
        "deterministic": False,
        "private_threadpool_size": 0,
        "max_intra_op_parallelism": 1,
        "autotune": True,
        "autotune_ram_budget_mb": 512,
    }
    _round_trip(load_spec({"options": options}))
    _round_trip(default_spec())


AUGS = ", ".join(AUGMENTATIONS)
OPS = ", ".join(STEPS)
SOURCES = ", ".join(SOURCE_MODELS)

# (spec data, the exact problem line expected)
INVALID = [
    (
        {
            "steps": [
                {"op": "shuffle"},
                {"op": "map", "augmentations": [{"name": "random_flip_left_right"}]},
                {"op": "batch", "batch_size": 0},
            ]
        },
        "steps[2].batch_size: must be >= 1, received 0",
    ),
    (
        {"source": {"type": "synthetic", "colour": 1}},
        "source.colour: unknown field; allowed fields: type, num_examples, shape, dtype, "
        "num_classes, seed",
    ),
    (
        {"source": {"type": "parquet"}},
        f'source.type: unknown source type "parquet"; known: {SOURCES}',
    ),
    ({"steps": [{"op": "nope"}]}, f'steps[0].op: unknown op "nope"; known: {OPS}'),
    ({"steps": [{}]}, f"steps[0].op: missing; known ops: {OPS}"),
    (
        {"steps": [{"op": "map", "augmentations": [{"name": "zzz"}]}]},
        f'steps[0].augmentations[0].name: unknown augmentation "zzz"; known: {AUGS}',
    ),
    (
        {
            "steps": [
                {"op": "map", "augmentations": [{"name": "random_brightness", "max_delta": 2}]}
            ]
        },
        "steps[0].augmentations[0].max_delta: must be <= 1.0, received 2",
    ),
    (
        {"steps": [{"op": "map", "augmentations": []}]},
        "steps[0].augmentations: list should have at least 1 item, not 0, received []",
    ),
    (
        {"steps": [{"op": "prefetch", "buffer_size": -1}]},
        'steps[0].buffer_size: must be an integer from 0 to 10,000,000 or "autotune"',
    ),
    (
        {"steps": [{"op": "batch", "num_parallel_calls": 0}]},
        'steps[0].num_parallel_calls: must be null (sequential), an integer >= 1 or "autotune", '
        "received 0",
    ),
    ({"source": {"type": "image_folder"}}, "source.path: required field is missing"),
    (
        {"options": {"autotune_ram_budget_mb": 0}},
        "options.autotune_ram_budget_mb: must be >= 1, received 0",
    ),
    (
        {"source": {"type": "synthetic", "dtype": "complex64"}},
        "source.dtype: must be one of 'float32', 'float64', 'float16', 'uint8', 'int32' or "
        "'int64', received \"complex64\"",
    ),
    (
        {"source": {"type": "synthetic", "shape": []}},
        "source.shape: list should have at least 1 item",
    ),
    (
        {"schema_version": 2},
        "schema_version: this version of Pipeline Lab reads schema_version 1, received 2",
    ),
    (
        {"steps": [{"op": "map", "augmentations": [{"name": "mixup"}]}]},
        "steps[0].augmentations[0]: 'mixup' works on batches only; add a batch step before this map",
    ),
    (
        {"steps": [{"op": "interleave"}]},
        "steps[0].op: interleave reads files, so it needs a file source",
    ),
    (
        {"source": FILE_SOURCE, "steps": [{"op": "take"}, {"op": "interleave"}]},
        "steps[1].op: interleave controls how files are read, so it must be the first step",
    ),
    (
        {"source": {"type": "generator", "template": "nope"}},
        'source.template: unknown generator template "nope"; known: '
        + ", ".join([*GENERATOR_TEMPLATES, "custom"]),
    ),
    (
        {"steps": [{"op": "cache", "filename": "/tmp/c"}, {"op": "cache", "filename": "/tmp/c"}]},
        "steps[1].filename: steps[0] already caches to '/tmp/c'; two caches cannot share a file",
    ),
    ("[1, 2]", "a spec must be a JSON object, received list"),
    ("{", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
]


@pytest.mark.parametrize("data, message", INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_spec_messages(data, message):
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert any(str(p).startswith(message) for p in info.value.problems), info.value
    assert message in str(info.value)


def test_every_problem_is_reported_at_once():
    data = {
        "name": "x" * 300,
        "source": {"type": "synthetic", "num_examples": 0, "seed": "a"},
        "steps": [
            {"op": "batch", "batch_size": 0},
            {"op": "take", "count": -1, "extra": True},
            {"op": "map", "augmentations": [{"name": "nope"}]},
        ],
        "options": {"private_threadpool_size": -1},
    }
    with pytest.raises(SpecError) as info:
        load_spec(data)
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "name",
        "source.num_examples",
        "source.seed",
        "steps[0].batch_size",
        "steps[1].count",
        "steps[1].extra",
        "steps[2].augmentations[0].name",
        "options.private_threadpool_size",
    ]
    assert f"({len(paths)} problems)" in str(info.value)
    received = {p.path: p.received for p in info.value.problems}
    assert received["steps[0].batch_size"] == 0 and received["source.seed"] == "a"
