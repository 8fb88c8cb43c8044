"""Engine parity: `build(spec)` against the same pipeline hand-written in plain `tf.data`.

A tool that tunes input pipelines must not build slow ones. For each reference
pipeline this benchmark holds a spec (as a user would write it in Pipeline Lab)
and the same pipeline written by hand the way the TensorFlow guide and the
seed article write it, on the same data, and times both: each is built in a
child process of its own, then alternating windows of a bare `for` loop count
examples, the first one swapped every repetition; the repetitions are split
among three such pairs of processes, started one pair after another, because a
process can run a few percent faster or slower than its twin for its whole life
(`benchmarks._timing.paired_in_processes`). Reported per pipeline: the median
examples/s of each, the ratio of the medians (build ÷ hand-written), its 90%
paired bootstrap interval (processes resampled, then repetitions within them:
how far this run's noise can move the ratio), and the ratio of CPU time per
example (hand-written ÷ build, above 1: build does less work per example).

Target (issue 8): ratio >= 1.0 on every pipeline; a ratio of 0.97 or more counts
as noise when its interval reaches 1.0. One more row times the exported code of
seed Example 3 (`export_code(spec)`, exec'd, `make_dataset()`) against
`build(spec)`: target >= 0.97. The first row, calibration, times the
hand-written Example 3 against itself: what the machine's noise alone does to a
ratio in this run.

Every pair gets the same `.repeat()` at the same place (a spec `repeat` step),
so no dataset runs out inside a window. Choices worth knowing when reading a row:

- Example 3 "as is" keeps the synthetic source against the same hand-written
  NumPy code (same shapes and count, other random values).
- The synthetic source alone (repeat + batch 256, no map) against
  `from_tensor_slices` over arrays of the same shapes: the issue's "a source costs
  no more per element than from_tensor_slices", with nothing else to dilute it.
- The image-folder spec starts its map with `convert_dtype float32`: by hand the
  JPEG is converted to 0-1 floats before resizing (the TF image-loading
  tutorial), so both sides yield float32 images and augment floats.
- CSV: by hand, one `(features, label)` element per line (`CsvDataset` + a parallel
  pack map), as the spec reads; batching lines before packing would be faster
  but is another pipeline. CSV and npy use larger batches (tiny rows), so the
  consumer's per-batch Python loop does not time both sides alike.
- npy: by hand, a generator yields batch-sized slices of the memmap (how one
  streams a file larger than RAM; `from_tensor_slices` over a memmap copies it
  into memory first), so that side's `.repeat()` comes after its batching.

File data is written once under `<data dir>/bench` and reused.

    python -m benchmarks parity
    PIPELINE_LAB_BENCH_PARITY=ex3,csv PIPELINE_LAB_BENCH_PAIRED_REPEATS=5 python -m benchmarks parity
"""

from __future__ import annotations

import glob
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._timing import (
    PAIRED_REPEATS,
    PAIRED_WINDOW_S,
    WARMUP_S,
    Paired,
    paired_in_processes,
)
from pipeline_core import paths
from pipeline_core._tf import tf as _import_tf
from pipeline_core.build import build
from pipeline_core.demo_data import write_once
from pipeline_core.export import export_code

tf: Any = _import_tf()
AUTOTUNE = tf.data.AUTOTUNE

TARGET = 1.0
EXPORT_TARGET = 0.97
NOISE_FLOOR = 0.97  # counted as met when the paired spread also reaches 1.0
ONLY_ENV = "PIPELINE_LAB_BENCH_PARITY"  # comma-separated case keys to run (default: all)

# Data written for the file sources (the folder names carry the sizes, so a change
# of size writes new files instead of reusing stale ones).
JPEG_CLASSES, JPEG_PER_CLASS, JPEG_SIZE = 5, 40, 256
TFRECORD_SHARDS, TFRECORD_PER_SHARD, TFRECORD_SIZE = 4, 256, 128
CSV_FILES, CSV_ROWS_PER_FILE, CSV_COLUMNS, CSV_CLASSES = 4, 5000, 10, 4
NPY_ROWS, NPY_SHAPE = 16384, (32, 32, 3)
AUGMENT_IMAGES = 256

# Batch sizes: the seed's where it has one; larger for tiny rows (CSV, npy) so the
# consumer's per-batch Python loop is not what both sides are timed by.
CSV_BATCH, NPY_BATCH = 256, 128

_DONE = ".complete"


# --- data ----------------------------------------------------------------------


def bench_dir() -> Path:
    """Where the benchmark's own files live: `<data dir>/bench`."""
    root = paths.data_dir() / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _ensure(name: str, write: Callable[[Path], None]) -> Path:
    """`bench_dir()/name`, written once by `write` (staged, then renamed into place)."""
    return write_once(bench_dir() / name, write)


def smooth_picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A `[size, size, 3]` uint8 picture: bicubic-upsampled 8x8 colours plus mild noise."""
    from PIL import Image

    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), np.int16)
    noisy = smooth + rng.integers(-12, 13, size=smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label in range(JPEG_CLASSES):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(JPEG_PER_CLASS):
            picture = smooth_picture(rng, JPEG_SIZE)
            (folder / f"{index:03d}.jpg").write_bytes(jpeg_bytes(picture))


def _write_tfrecords(root: Path) -> None:
    rng = np.random.default_rng(1)
    for shard in range(TFRECORD_SHARDS):
        with tf.io.TFRecordWriter(str(root / f"part-{shard}.tfrecord")) as writer:
            for _ in range(TFRECORD_PER_SHARD):
                image = jpeg_bytes(smooth_picture(rng, TFRECORD_SIZE))
                label = int(rng.integers(0, JPEG_CLASSES))
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())


def _write_csv(root: Path) -> None:
    rng = np.random.default_rng(2)
    header = ",".join([*(f"f{i}" for i in range(CSV_COLUMNS)), "label"])
    fmt = ["%.6f"] * CSV_COLUMNS + ["%d"]
    for part in range(CSV_FILES):
        values = rng.random((CSV_ROWS_PER_FILE, CSV_COLUMNS))
        labels = rng.integers(0, CSV_CLASSES, size=(CSV_ROWS_PER_FILE, 1))
        rows = np.hstack([values, labels])
        np.savetxt(
            root / f"part-{part}.csv", rows, fmt=fmt, delimiter=",", header=header, comments=""
        )


def _write_npy(root: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(
        root / "features.npy", rng.integers(0, 256, size=(NPY_ROWS, *NPY_SHAPE), dtype=np.uint8)
    )
    np.save(root / "labels.npy", rng.integers(0, 10, size=NPY_ROWS).astype(np.int64))


def image_folder_dir() -> Path:
    name = f"images-{JPEG_CLASSES}x{JPEG_PER_CLASS}-{JPEG_SIZE}px"
    return _ensure(name, _write_image_folder)


def tfrecord_dir() -> Path:
    name = f"tfrecord-{TFRECORD_SHARDS}x{TFRECORD_PER_SHARD}-{TFRECORD_SIZE}px"
    return _ensure(name, _write_tfrecords)


def csv_dir() -> Path:
    return _ensure(f"csv-{CSV_FILES}x{CSV_ROWS_PER_FILE}x{CSV_COLUMNS}", _write_csv)


def npy_dir() -> Path:
    shape = "x".join(map(str, NPY_SHAPE))
    return _ensure(f"npy-{NPY_ROWS}x{shape}", _write_npy)


def numpy_arrays(
    num_examples: int, shape: tuple[int, ...], dtype: Any, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The arrays a `numpy` source generates (the same draws, so the same data)."""
    rng = np.random.default_rng(seed)
    size = (num_examples, *shape)
    if np.issubdtype(np.dtype(dtype), np.floating):
        features = rng.random(size, dtype=np.float32).astype(dtype)
    else:
        features = rng.integers(0, 256, size=size).astype(dtype)
    labels = rng.integers(0, num_classes, size=num_examples).astype(np.int64)
    return features, labels


# --- the reference pipelines: spec and hand-written, side by side --------------

SOURCE_BATCH = 256  # the source-alone row: elements per batch, so per-element cost shows
REPEAT = {"op": "repeat"}  # the benchmark's addition, mirrored by `.repeat()` by hand
PREFETCH = {"op": "prefetch", "buffer_size": "autotune"}
FLIP = {"name": "random_flip_left_right"}
BRIGHTNESS = {"name": "random_brightness", "max_delta": 0.2}
CONTRAST = {"name": "random_contrast", "factor": 0.2}
TO_FLOAT = {"name": "convert_dtype", "dtype": "float32"}


def _map(*augmentations: dict[str, Any]) -> dict[str, Any]:
    return {"op": "map", "augmentations": list(augmentations), "num_parallel_calls": "autotune"}


def _batch(size: int) -> dict[str, Any]:
    return {"op": "batch", "batch_size": size}


# 1. seed Example 1 (examples/01_from_tensor_slices.json)


def spec_example1() -> dict[str, Any]:
    source = {"type": "numpy", "num_examples": 1024, "shape": [28, 28, 1], "dtype": "float32"}
    return {
        "name": "seed Example 1",
        "source": {**source, "num_classes": 10, "seed": 0},
        "steps": [{"op": "shuffle", "buffer_size": 1024, "seed": 0}, REPEAT, _batch(64)],
    }


def hand_example1() -> Any:
    images, labels = numpy_arrays(1024, (28, 28, 1), np.float32, 10, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(1024, seed=0)
    ds = ds.repeat()
    return ds.batch(64)


# 2. seed Example 2 (examples/02_from_generator.json)


def spec_example2() -> dict[str, Any]:
    source = {"type": "generator", "template": "random_arrays", "num_examples": 512}
    return {
        "name": "seed Example 2",
        "source": {**source, "shape": [16], "dtype": "float64", "num_classes": 4, "seed": 0},
        "steps": [REPEAT, _batch(32), {"op": "prefetch", "buffer_size": 2}],
    }


def hand_example2() -> Any:
    def generate():
        rng = np.random.default_rng(0)
        for _ in range(512):
            yield rng.random(16).astype(np.float64), int(rng.integers(0, 4))

    signature = (
        tf.TensorSpec(shape=(16,), dtype=tf.float64),
        tf.TensorSpec(shape=(), dtype=tf.int64),
    )
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    ds = ds.repeat()
    return ds.batch(32).prefetch(2)


# 3. seed Example 3 (examples/03_map_batch_prefetch.json), numpy source and as is


def spec_example3(source_type: str = "numpy") -> dict[str, Any]:
    source = {"type": source_type, "num_examples": 2048, "shape": [64, 64, 3], "dtype": "uint8"}
    return {
        "name": f"seed Example 3 ({source_type} source)",
        "source": {**source, "num_classes": 10, "seed": 0},
        "steps": [REPEAT, _map(FLIP, BRIGHTNESS, TO_FLOAT), _batch(32), PREFETCH],
        "options": {"deterministic": False},
    }


def augment(image: Any, label: Any) -> tuple[Any, Any]:
    """The seed article's Example 3 augmentation."""
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, 0.2)
    image = tf.image.convert_image_dtype(image, tf.float32)
    return image, label


def example3_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The arrays of Example 3's numpy source (`spec_example3`)."""
    return numpy_arrays(2048, (64, 64, 3), np.uint8, 10, seed=0)


def hand_example3() -> Any:
    ds = tf.data.Dataset.from_tensor_slices(example3_arrays())
    ds = ds.repeat()
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(32).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = False
    return ds.with_options(options)


# 3b. the synthetic source alone (batched, so the consumer's loop is not its cost)


def spec_synthetic_source() -> dict[str, Any]:
    """Example 3's synthetic source with no map: repeat and batch only."""
    spec = spec_example3("synthetic")
    return {"name": "synthetic source alone", "source": spec["source"],
            "steps": [REPEAT, _batch(SOURCE_BATCH)]}  # fmt: skip


def hand_source() -> Any:
    """`from_tensor_slices` over Example 3's arrays: what the issue holds a source to."""
    ds = tf.data.Dataset.from_tensor_slices(example3_arrays())
    return ds.repeat().batch(SOURCE_BATCH)


# 4. augmentations alone, on cached 224x224 float images


def color_augment(image: Any, label: Any) -> tuple[Any, Any]:
    """Flip + brightness + contrast, as the TF data-augmentation guide writes them."""
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, max_delta=0.2)
    image = tf.image.random_contrast(image, lower=0.8, upper=1.2)
    return image, label


def spec_augment() -> dict[str, Any]:
    source = {"type": "numpy", "num_examples": AUGMENT_IMAGES, "shape": [224, 224, 3]}
    return {
        "name": "augmentations alone (cached 224x224 float)",
        "source": {**source, "dtype": "float32", "num_classes": 10, "seed": 0},
        "steps": [
            {"op": "cache"},
            REPEAT,
            _map(FLIP, BRIGHTNESS, CONTRAST),
            _batch(32),
            PREFETCH,
        ],
    }


def hand_augment() -> Any:
    images, labels = numpy_arrays(AUGMENT_IMAGES, (224, 224, 3), np.float32, 10, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
    ds = ds.repeat()
    ds = ds.map(color_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(32).prefetch(tf.data.AUTOTUNE)


# 5. image folder of JPEGs: decode + resize 224 + flip + brightness + contrast


def spec_image_folder() -> dict[str, Any]:
    source = {"type": "image_folder", "path": str(image_folder_dir()), "image_size": [224, 224]}
    return {
        "name": "image folder (JPEG, 224)",
        "source": {**source, "channels": 3, "shuffle_files": True, "seed": 0},
        # convert_dtype first: the color ops work on 0-1 floats, as by hand below
        "steps": [REPEAT, _map(TO_FLOAT, FLIP, BRIGHTNESS, CONTRAST), _batch(32), PREFETCH],
    }


def hand_image_folder() -> Any:
    root = image_folder_dir()
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((root / name).glob("*.jpg")):
            files.append(str(path))
            labels.append(label)

    def load(path, label):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.resize(image, [224, 224])
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, np.int64)))
    ds = ds.shuffle(len(files), seed=0)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.repeat()
    ds = ds.map(color_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(32).prefetch(tf.data.AUTOTUNE)


# 6. TFRecord shards: interleave, parse + decode


def spec_tfrecord() -> dict[str, Any]:
    files = str(tfrecord_dir() / "part-*.tfrecord")
    return {
        "name": "TFRecord shards (parse + decode JPEG)",
        "source": {
            "type": "tfrecord",
            "files": files,
            "features_key": "image",
            "label_key": "label",
            "decode_image": True,
            "channels": 3,
        },
        "steps": [
            {
                "op": "interleave",
                "cycle_length": 4,
                "block_length": 1,
                "num_parallel_calls": "autotune",
            },
            REPEAT,
            _batch(32),
            PREFETCH,
        ],
    }


def hand_tfrecord() -> Any:
    files = sorted(glob.glob(str(tfrecord_dir() / "part-*.tfrecord")))
    description = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        image = tf.io.decode_jpeg(example["image"], channels=3)
        return image, example["label"]

    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(
        tf.data.TFRecordDataset, cycle_length=4, block_length=1, num_parallel_calls=tf.data.AUTOTUNE
    )
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.repeat()
    return ds.batch(32).prefetch(tf.data.AUTOTUNE)


# 7. CSV: numeric columns as a feature vector


def spec_csv() -> dict[str, Any]:
    return {
        "name": "CSV (10 float columns + label)",
        "source": {"type": "csv", "path": str(csv_dir() / "part-*.csv"), "label_column": "label"},
        "steps": [REPEAT, _batch(CSV_BATCH), PREFETCH],
    }


def hand_csv() -> Any:
    files = sorted(glob.glob(str(csv_dir() / "part-*.csv")))
    defaults = [tf.float32] * CSV_COLUMNS + [tf.int64]

    def pack(*row):
        return tf.stack(row[:-1]), row[-1]

    # Per row, as the spec reads: one (features, label) element per CSV line. The
    # tutorial's faster form (batch the rows first, then pack) is not this pipeline.
    ds = tf.data.experimental.CsvDataset(files, defaults, header=True)
    ds = ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.repeat()
    return ds.batch(CSV_BATCH).prefetch(tf.data.AUTOTUNE)


# 8. memory-mapped .npy


def spec_npy() -> dict[str, Any]:
    root = npy_dir()
    return {
        "name": "memory-mapped npy",
        "source": {
            "type": "npy",
            "features_path": str(root / "features.npy"),
            "labels_path": str(root / "labels.npy"),
        },
        "steps": [REPEAT, _batch(NPY_BATCH), PREFETCH],
    }


def hand_npy() -> Any:
    root = npy_dir()
    features = np.load(root / "features.npy", mmap_mode="r")
    labels = np.load(root / "labels.npy", mmap_mode="r")

    # Streamed, as a person streams a file larger than RAM: a generator yielding one
    # batch-sized slice of the memmap at a time (from_tensor_slices over the memmap
    # would copy the whole file into memory first, so it does not stream).
    def batches():
        for start in range(0, len(features), NPY_BATCH):
            stop = start + NPY_BATCH
            yield np.asarray(features[start:stop]), np.asarray(labels[start:stop])

    signature = (
        tf.TensorSpec(shape=(None, *features.shape[1:]), dtype=tf.as_dtype(features.dtype)),
        tf.TensorSpec(shape=(None,), dtype=tf.int64),
    )
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.repeat()  # after the batching generator: NPY_ROWS is a multiple of NPY_BATCH
    return ds.prefetch(tf.data.AUTOTUNE)


# 9. exported code of seed Example 3 (numpy source)


def exported_dataset(spec: dict[str, Any]) -> Any:
    """`make_dataset()` of `export_code(spec)`, exec'd as a module of its own."""
    namespace: dict[str, Any] = {"__name__": "pipeline_lab_exported"}
    exec(compile(export_code(spec), "<exported pipeline>", "exec"), namespace)
    return namespace["make_dataset"]()


# --- cases -----------------------------------------------------------------------


def built(spec: Callable[[], dict[str, Any]]) -> Any:
    """`build(spec())`: a module-level function, so a child process can be handed it."""
    return build(spec())


def exported(spec: Callable[[], dict[str, Any]]) -> Any:
    """`exported_dataset(spec())`, picklable like `built`."""
    return exported_dataset(spec())


@dataclass(frozen=True)
class Case:
    """One row: the dataset `measured()` makes ÷ the one `against()` makes.

    Both are picklable (module-level functions or partials of them): each is built
    and timed in a process of its own.
    """

    key: str
    name: str
    measured_label: str
    against_label: str
    measured: Callable[[], Any]
    against: Callable[[], Any]
    target: float = TARGET

    def make(self) -> tuple[Any, Any]:
        """Both datasets, built here (the tests compare their structure)."""
        return self.measured(), self.against()


def _versus_hand(key: str, name: str, spec: Callable[[], dict], hand: Callable[[], Any]) -> Case:
    return Case(key, name, "build(spec)", "hand-written", partial(built, spec), hand)


def _export_versus_build(key: str, name: str, spec: Callable[[], dict]) -> Case:
    measured, against = partial(exported, spec), partial(built, spec)
    return Case(key, name, "export_code", "build(spec)", measured, against, EXPORT_TARGET)


def cases() -> list[Case]:
    """Every reference pipeline, in table order."""
    return [
        Case(
            "calibration",
            "calibration: Ex. 3 hand-written ÷ itself",
            "hand-written",
            "hand-written",
            hand_example3,
            hand_example3,
        ),
        _versus_hand("ex1", "seed Ex. 1: numpy, shuffle, batch 64", spec_example1, hand_example1),
        _versus_hand("ex2", "seed Ex. 2: from_generator, batch 32", spec_example2, hand_example2),
        _versus_hand("ex3", "seed Ex. 3: numpy uint8 64x64, map", spec_example3, hand_example3),
        _versus_hand(
            "ex3-synthetic",
            "seed Ex. 3 as is (synthetic source)",
            partial(spec_example3, "synthetic"),
            hand_example3,
        ),
        _versus_hand(
            "synthetic-source",
            "synthetic source alone, batch 256",
            spec_synthetic_source,
            hand_source,
        ),
        _versus_hand("augment", "augment only: cached 224 float", spec_augment, hand_augment),
        _versus_hand(
            "image-folder", "image folder: JPEG, resize 224", spec_image_folder, hand_image_folder
        ),
        _versus_hand("tfrecord", "TFRecord: 4 shards, parse+decode", spec_tfrecord, hand_tfrecord),
        _versus_hand("csv", "CSV: 4 files, 10 float columns", spec_csv, hand_csv),
        _versus_hand("npy", "npy memory-mapped, 32x32x3", spec_npy, hand_npy),
        _export_versus_build("export", "seed Ex. 3 exported code", spec_example3),
    ]


def selected(all_cases: list[Case], only: str | None = None) -> list[Case]:
    """The cases whose key is listed in `only` (or `$PIPELINE_LAB_BENCH_PARITY`); all if empty."""
    text = os.environ.get(ONLY_ENV, "") if only is None else only
    keys = {k.strip() for k in text.split(",") if k.strip()}
    return [c for c in all_cases if not keys or c.key in keys]


def _attr_bytes(name: str, value: Any) -> bytes:
    if name == "value" and value.tensor.resource_handle_val:
        return b"resource"  # a seed generator's handle: its name is per instance
    return value.SerializeToString(deterministic=True)


def _nodes(nodes: Any) -> tuple[Any, ...]:
    """Each node's op, attributes and inputs (as positions), without node names."""
    position = {node.name: i for i, node in enumerate(nodes)}
    return tuple(
        (
            node.op,
            tuple(
                sorted(
                    (name, _attr_bytes(name, value))
                    for name, value in node.attr.items()
                    # names: of the dataset, of a called function, of a py_func
                    if name not in ("metadata", "_class", "token") and not value.HasField("func")
                )
            ),
            tuple(position.get(i.lstrip("^").split(":")[0], -1) for i in node.input),
        )
        for node in nodes
    )


def graph_signature(dataset: Any) -> tuple[Any, ...]:
    """What TensorFlow runs for `dataset`: its serialized graph, names left out.

    Two datasets with equal signatures are the same ops with the same constants,
    attributes and edges, and their functions have the same bodies; only the names
    TensorFlow makes up per instance (of nodes, functions, seed generators,
    py_funcs) differ. Such a pair runs the same code: their ratio is noise alone.
    """
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    serialized = tf.raw_ops.DatasetToGraphV2(
        input_dataset=dataset._variant_tensor, external_state_policy=0
    )
    graph.ParseFromString(serialized.numpy())
    functions = sorted(repr(_nodes(f.node_def)) for f in graph.library.function)
    return _nodes(graph.node), tuple(functions)


def same_graph(case: Case) -> bool:
    """Whether both sides of `case` build the same graph (`graph_signature`)."""
    measured, against = case.make()
    return graph_signature(measured) == graph_signature(against)


def verdict(paired: Paired, target: float, same: bool = False) -> str:
    """ "yes", "yes (noise)", "yes (same graph)" or "no".

    "yes (noise)": below a 1.0 target but at least 0.97, and the run's own noise
    (the 90% bootstrap interval of the ratio) reaches 1.0. "yes (same graph)":
    below the target, but both sides are the same graph (`same_graph`), so the
    ratio is what noise alone did, like the calibration row's.
    """
    if paired.ratio >= target:
        return "yes"
    if target >= 1.0 and paired.ratio >= NOISE_FLOOR and paired.ratio_interval()[1] >= 1.0:
        return "yes (noise)"
    if same:
        return "yes (same graph)"
    return "no"


def measure(
    case: Case,
    *,
    repeats: int = PAIRED_REPEATS,
    window_s: float = PAIRED_WINDOW_S,
    warmup_s: float = WARMUP_S,
) -> dict[str, Any]:
    """The table row of one case: each dataset built once in a process of its own, timed alternately."""
    same = same_graph(case)
    paired = paired_in_processes(
        case.measured, case.against, repeats=repeats, window_s=window_s, warmup_s=warmup_s
    )
    return {
        "pipeline": case.name,
        "measured": case.measured_label,
        "ex/s": paired.a_median,
        "against": case.against_label,
        "against ex/s": paired.b_median,
        "ratio": paired.ratio,
        "90% interval": "{:.2f}-{:.2f}".format(*paired.ratio_interval()),
        "cpu/ex ratio": paired.cpu_ratio,
        "target": f">= {case.target:.2f}",
        "graph": "same" if same else "differs",
        "met": verdict(paired, case.target, same),
        "reps": repeats,
        "process pairs": len(set(paired.groups)) or 1,
        "load avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _failed(case: Case, exc: Exception) -> dict[str, Any]:
    """The row of a case that could not be built or timed (the others still run)."""
    message = " ".join(f"{type(exc).__name__}: {exc}".split())
    return {
        "pipeline": case.name,
        "measured": case.measured_label,
        "against": case.against_label,
        "target": f">= {case.target:.2f}",
        "met": "ERROR",
        "error": message[:160],
    }


def run() -> list[dict[str, Any]]:
    """One row per reference pipeline (filtered by `$PIPELINE_LAB_BENCH_PARITY`)."""
    rows = []
    for case in selected(cases()):
        start = time.monotonic()
        try:
            rows.append(measure(case))
        except Exception as exc:  # report it in its row, go on with the rest
            rows.append(_failed(case, exc))
        said = f"{rows[-1]['ratio']:.3f}" if "ratio" in rows[-1] else rows[-1]["met"]
        print(f"  {case.key}: {said} ({time.monotonic() - start:.0f} s)", flush=True)
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
