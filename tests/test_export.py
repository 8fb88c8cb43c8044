"""Exported code: a standalone script that builds the same pipeline as `build(spec)`.

The subprocess comparisons import TensorFlow each (seconds), so they run over a
small representative set: element-level and batch-level maps, file sources with
interleave and a file cache, inferred TFRecord features, options.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline_core.augment_code import augment_function, features_of
from pipeline_core.build import build
from pipeline_core.export import ExportError, export_code
from pipeline_core.spec import load_spec
from pipeline_core.steps import STEPS, ScriptNames
from tests import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.json"))

CASES = {
    "synthetic-map-options": {
        "source": {"type": "synthetic", "num_examples": 50, "shape": [8, 8, 3], "dtype": "uint8"},
        "steps": [
            {"op": "shuffle", "buffer_size": 16, "seed": 3},
            {
                "op": "map",
                "augmentations": [
                    {"name": "random_flip_left_right"},
                    {"name": "random_brightness", "max_delta": 0.3},
                    {"name": "convert_dtype", "dtype": "float32"},
                ],
                "num_parallel_calls": "autotune",
            },
            {"op": "batch", "batch_size": 8},
            {"op": "prefetch", "buffer_size": "autotune"},
        ],
        "options": {"private_threadpool_size": 2, "autotune_ram_budget_mb": 256},
    },
    "image-folder-interleave-cache": {
        "source": {
            "type": "image_folder",
            "path": "{data_dir}/demo/images",
            "image_size": [16, 16],
        },
        "steps": [
            {"op": "interleave", "cycle_length": 2, "num_parallel_calls": 2},
            {"op": "cache", "filename": "{data_dir}/export-cache/file"},
            {"op": "map", "augmentations": [{"name": "random_crop", "height": 12, "width": 12}]},
            {"op": "batch", "batch_size": 32, "drop_remainder": True},
        ],
    },
    "tfrecord-gzip-batch-mixup": {
        "source": {
            "type": "tfrecord",
            "files": "{data_dir}/demo/tfrecord/shapes.tfrecord.gz",
            "compression": "GZIP",
            "decode_image": True,
            "image_size": [12, 12],
        },
        "steps": [
            {"op": "batch", "batch_size": 16},
            {
                "op": "map",
                "augmentations": [
                    {"name": "normalize", "mode": "scale"},
                    {"name": "mixup", "num_classes": 5},
                ],
                "num_parallel_calls": 2,
            },
            {"op": "take", "count": 5},
        ],
    },
}

LINE = re.compile(r"features (\w+) \(([\d, ]*)\) sum (\S+) labels (\[.*\])")


def _expected(spec) -> tuple[str, list[tuple[str, tuple[int, ...], float, list]], int]:
    ds = build(spec)
    first = []
    for features, label in ds.take(3):
        total = float(np.sum(features.numpy().astype(np.float64)))
        labels = label.numpy().ravel()[:8].tolist()
        first.append((features.dtype.name, tuple(features.shape), total, labels))
    return str(ds.element_spec), first, sum(1 for _ in ds)


def _run(script: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-I", str(script), "--count"],
        capture_output=True,
        text=True,
        env=env,
        cwd=script.parent,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_exported_script_matches_build(name, tmp_path, lab_home):
    spec = load_spec(CASES[name])
    script = tmp_path / "pipeline.py"
    script.write_text(export_code(spec), encoding="utf-8")
    shutil.rmtree(lab_home / "export-cache", ignore_errors=True)  # both start from an empty cache
    out = _run(script)
    shutil.rmtree(lab_home / "export-cache", ignore_errors=True)
    element_spec, first, count = _expected(spec)
    assert f"element_spec: {element_spec}" in out
    assert f"elements: {count}" in out
    got = [LINE.search(line).groups() for line in out.splitlines() if line.startswith("features")]
    assert len(got) == len(first) == 3
    for (dtype, shape, total, labels), (g_dtype, g_shape, g_total, g_labels) in zip(
        first, got, strict=True
    ):
        assert g_dtype == dtype
        assert tuple(int(d) for d in g_shape.split(",") if d.strip()) == shape
        assert float(g_total) == pytest.approx(total, rel=1e-6)
        assert ast.literal_eval(g_labels) == pytest.approx(labels, rel=1e-6)


# op -> a step whose exported lines must yield what its build yields (same input)
OP_CASES = {
    "map": {
        "op": "map",
        "augmentations": [{"name": "random_brightness", "max_delta": 0.3}],
        "num_parallel_calls": 2,
        "deterministic": True,
    },
    "shuffle": {"op": "shuffle", "buffer_size": 4, "seed": 1},
    "cache": {"op": "cache", "filename": "cache/file"},
    "batch": {"op": "batch", "batch_size": 3, "num_parallel_calls": "autotune"},
    "prefetch": {"op": "prefetch", "buffer_size": "autotune"},
    "repeat": {"op": "repeat", "count": 2},
    "take": {"op": "take", "count": 3},
    "interleave": {"op": "interleave", "cycle_length": 2},
    "sleep": {"op": "sleep", "ms": 1},
    "distribute": {"op": "distribute", "service": "{data_service}"},  # a server of this test
}


def _elements(ds) -> list[tuple[list, list]]:
    return [(x.numpy().tolist(), y.numpy().tolist()) for x, y in ds]


def test_every_op_has_an_export_case():
    assert set(OP_CASES) == set(STEPS)


@pytest.mark.parametrize("op", sorted(OP_CASES))
def test_each_op_exports_what_it_builds(tf, op, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)  # the cache file is relative
    case = dict(OP_CASES[op])
    if case.get("service") == "{data_service}":
        case["service"] = request.getfixturevalue("data_service")
    step = STEPS[op].model(**case)
    source = tf.data.Dataset.range(7).map(lambda i: (tf.fill([2, 2, 3], tf.cast(i, tf.float32)), i))
    built = _elements(STEPS[op].build(source, step, 0))
    names = ScriptNames(augment={0: "augment_0"}, path=lambda path, wanted: repr(path))
    namespace = {"tf": tf, "os": os, "ds": source}
    if op == "map":
        features = features_of(source.element_spec[0])
        namespace["augment_0"] = augment_function(step.augmentations, features=features)
    exec("\n".join(STEPS[op].emit(step, 0, names)), namespace)
    assert _elements(namespace["ds"]) == built


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_exported_code_imports_only_tensorflow_and_numpy(path):
    tree = ast.parse(export_code(load_spec(path)))
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert {"numpy", "tensorflow"} <= imported <= {"numpy", "tensorflow", "os", "sys"}
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "make_dataset" in names
    assert "pipeline_core" not in ast.unparse(tree)


def test_exported_map_reads_like_the_tf_guide():
    spec = load_spec(EXAMPLES[2])  # 03: map flip + brightness + convert, batch, prefetch
    numpy_source = {"type": "numpy", "num_examples": 64, "shape": [64, 64, 3], "dtype": "uint8"}
    code = export_code(spec.replace(source=numpy_source))
    assert len(code.splitlines()) <= 60, "Example 3 fits on one screen"
    assert "def augment(image, label, seed):" in code
    assert "tf.image.stateless_random_flip_left_right(image, seed=seed)" in code
    assert "tf.image.stateless_random_brightness(image, max_delta=0.2, seed=seed + [0, 1])" in code
    assert "lambda example, seed: augment(*example, tf.stack([seed, 0]))" in code
    for interpreter in ("apply_chain", "OPS", "chain_"):
        assert interpreter not in code


def test_exported_paths_are_constants_at_the_top(lab_home):
    spec = load_spec(CASES["image-folder-interleave-cache"])
    code = export_code(spec)
    top, body = code.split("def make_dataset", 1)
    assert f"DATA_DIR = {str(lab_home)!r}" in top
    assert 'SOURCE_PATH = f"{DATA_DIR}/demo/images"' in top
    assert 'CACHE_FILE_1 = f"{DATA_DIR}/export-cache/file"' in top
    assert str(lab_home) not in body
    assert "path=SOURCE_PATH" in body and "ds.cache(CACHE_FILE_1)" in body


def counting_pairs():
    for i in range(3):
        yield np.full((2,), i, np.float32), i


def test_custom_generator_source_is_embedded():
    spec = load_spec({"source": {"type": "generator", "template": "custom", "shape": [2]}})
    code = export_code(spec, generator=counting_pairs)
    assert "def counting_pairs():" in code
    assert "generator_dataset(generator=counting_pairs, shape=(2,), dtype='float32')" in code
    compile(code, "exported.py", "exec")
    with pytest.raises(ExportError, match="a lambda generator cannot be exported"):
        export_code(spec, generator=lambda: iter(()))
    with pytest.raises(ExportError, match=r'source \(generator\): template "custom" needs'):
        export_code(spec)
