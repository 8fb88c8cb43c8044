"""Every registered source: element counts, dtypes, labels, and its user-facing errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_core import paths, sources
from pipeline_core.demo_data import CLASSES, ensure_demo_data
from pipeline_core.generators import GENERATOR_TEMPLATES
from pipeline_core.sources import SOURCES, SourceError, build_source
from pipeline_core.spec import (
    CsvSource,
    GeneratorSource,
    ImageFolderSource,
    NpySource,
    NpzSource,
    NumpySource,
    SyntheticSource,
    TFRecordSource,
)
from pipeline_core.steps import InterleaveStep

DEMO = "{data_dir}/demo"
N_DEMO = 40 * len(CLASSES)


@pytest.fixture(scope="module", autouse=True)
def demo() -> Path:
    return ensure_demo_data()


def _elements(ds) -> list[tuple[np.ndarray, int]]:
    return [(x.numpy(), int(y.numpy())) for x, y in ds]


# (source, expected count, features dtype, features shape, label values)
CASES = {
    SyntheticSource: (
        SyntheticSource(num_examples=7, shape=(4, 4, 3), dtype="uint8", num_classes=3),
        7,
        "uint8",
        (4, 4, 3),
        set(range(3)),
    ),
    NumpySource: (
        NumpySource(num_examples=9, shape=(5,), dtype="float32", num_classes=2),
        9,
        "float32",
        (5,),
        set(range(2)),
    ),
    NpySource: (
        NpySource(features_path=f"{DEMO}/npy/features.npy", labels_path=f"{DEMO}/npy/labels.npy"),
        N_DEMO,
        "uint8",
        (32, 32, 3),
        set(range(len(CLASSES))),
    ),
    NpzSource: (
        NpzSource(path=f"{DEMO}/npz/shapes.npz"),
        N_DEMO,
        "uint8",
        (32, 32, 3),
        set(range(len(CLASSES))),
    ),
    GeneratorSource: (
        GeneratorSource(num_examples=6, shape=(3,), dtype="float64", num_classes=4),
        6,
        "float64",
        (3,),
        set(range(4)),
    ),
    ImageFolderSource: (
        ImageFolderSource(path=f"{DEMO}/images", image_size=(24, 24)),
        N_DEMO,
        "float32",  # resized: float32 0-1, as tf.image.resize returns (no uint8 round trip)
        (24, 24, 3),
        set(range(len(CLASSES))),
    ),
    TFRecordSource: (
        TFRecordSource(
            files=f"{DEMO}/tfrecord/shapes.tfrecord.gz",
            compression="GZIP",
            decode_image=True,
            image_size=(16, 16),
            channels=1,
        ),
        N_DEMO,
        "float32",
        (16, 16, 1),
        set(range(len(CLASSES))),
    ),
    CsvSource: (
        CsvSource(path=f"{DEMO}/csv/shapes.csv"),
        N_DEMO,
        "float32",
        (5,),
        set(range(len(CLASSES))),
    ),
}


def test_every_registered_source_has_a_case():
    assert set(CASES) == set(SOURCES)


@pytest.mark.parametrize("source_type", list(CASES), ids=lambda t: t.__name__)
def test_source_counts_dtypes_labels(source_type):
    source, count, dtype, shape, labels = CASES[source_type]
    ds = build_source(source)
    features_spec, label_spec = ds.element_spec
    assert features_spec.dtype.name == dtype
    assert tuple(features_spec.shape) == shape
    assert label_spec.dtype.name == "int64" and label_spec.shape.rank == 0
    elements = _elements(ds)
    assert len(elements) == count
    assert {y for _, y in elements} == labels
    assert all(x.shape == shape for x, _ in elements)


def test_synthetic_is_seeded_lazy_and_in_range():
    source = SyntheticSource(num_examples=50, shape=(8,), dtype="float32", seed=3)
    ds = build_source(source)
    # Made lazily in chunks: 600 GB of examples build and yield a first one at once.
    huge = build_source(SyntheticSource(num_examples=1_000_000, shape=(224, 224, 3)))
    assert int(huge.cardinality()) == 1_000_000
    assert next(iter(huge))[0].shape == (224, 224, 3)
    first, again = _elements(ds), _elements(build_source(source))
    assert all(
        np.array_equal(a, b) and la == lb for (a, la), (b, lb) in zip(first, again, strict=True)
    )
    values = np.stack([x for x, _ in first])
    assert values.min() >= 0.0 and values.max() < 1.0
    other = _elements(build_source(source.model_copy(update={"seed": 4})))
    assert not np.array_equal(values, np.stack([x for x, _ in other]))


def test_numpy_source_from_npz_file(demo):
    source = NumpySource(path=f"{DEMO}/npz/shapes.npz")
    elements = _elements(build_source(source))
    with np.load(demo / "npz" / "shapes.npz") as archive:
        assert np.array_equal(elements[3][0], archive["x"][3])
        assert [y for _, y in elements] == archive["y"].tolist()


def test_npy_is_memory_mapped_and_streams_in_chunks(tmp_path, monkeypatch):
    features = np.arange(3000 * 16, dtype=np.float32).reshape(3000, 16)
    np.save(tmp_path / "x.npy", features)
    monkeypatch.setattr(sources, "CHUNK_BYTES", 64 * 16 * 4)  # 64 rows per chunk
    call = sources.plan_source(NpySource(features_path=str(tmp_path / "x.npy")))
    assert call.kwargs["chunk_rows"] == 64
    opened = []
    real_load = np.load

    def spy_load(path, *args, **kwargs):
        array = real_load(path, *args, **kwargs)
        opened.append(array)
        return array

    monkeypatch.setattr(np, "load", spy_load)
    elements = _elements(call.run())
    assert opened and all(isinstance(a, np.memmap) for a in opened)
    assert len(elements) == 3000
    assert np.array_equal(elements[2999][0], features[2999])
    assert {y for _, y in elements} == {0}  # no labels file: zeros


def test_npz_members_are_memory_mapped(tmp_path):
    x = np.arange(24, dtype=np.int32).reshape(6, 2, 2)
    y = np.arange(6, dtype=np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    member = sources.open_npz_member(str(tmp_path / "d.npz"), "x")
    assert isinstance(member, np.memmap)
    assert np.array_equal(member, x)
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez(tmp_path / "f.npz", x=fortran)
    assert np.array_equal(sources.open_npz_member(str(tmp_path / "f.npz"), "x"), fortran)


@pytest.mark.parametrize("name", sorted(GENERATOR_TEMPLATES))
def test_generator_templates(name):
    source = GeneratorSource(template=name, num_examples=5, shape=(2, 2), dtype="uint8")
    elements = _elements(build_source(source))
    assert len(elements) == 5
    assert all(x.dtype == np.uint8 and x.shape == (2, 2) for x, _ in elements)
    assert GENERATOR_TEMPLATES[name].description


def test_counting_template_values():
    source = GeneratorSource(template="counting", num_examples=4, shape=(2,), num_classes=3)
    assert [(x.tolist(), y) for x, y in _elements(build_source(source))] == [
        ([0.0, 0.0], 0),
        ([1.0, 1.0], 1),
        ([2.0, 2.0], 2),
        ([3.0, 3.0], 0),
    ]


def test_custom_generator_callable():
    def pairs():
        for i in range(3):
            yield np.full((2,), i, np.float32), i

    source = GeneratorSource(template="custom", shape=(2,))
    assert [y for _, y in _elements(build_source(source, generator=pairs))] == [0, 1, 2]
    with pytest.raises(SourceError, match='template "custom" needs a callable'):
        build_source(source)


def test_image_folder_interleave_and_labels_from_folders(demo):
    step = InterleaveStep(cycle_length=3, block_length=2, num_parallel_calls=2, deterministic=True)
    source = ImageFolderSource(path=f"{DEMO}/images", image_size=(8, 8), shuffle_files=False)
    elements = _elements(build_source(source, interleave=step))
    assert len(elements) == N_DEMO
    assert [y for _, y in elements] == sorted(y for _, y in elements)  # sorted class folders


def test_image_folder_decodes_every_format(tmp_path):
    from PIL import Image

    for index, fmt in enumerate(("png", "jpeg", "bmp", "gif")):
        folder = tmp_path / f"class_{index}"
        folder.mkdir()
        Image.new("RGB", (10, 6), (200, 10, 10)).save(folder / f"a.{fmt}")
    (tmp_path / "class_0" / "notes.txt").write_text("ignored")
    source = ImageFolderSource(path=str(tmp_path), image_size=(6, 10), shuffle_files=False)
    elements = _elements(build_source(source))
    assert [y for _, y in elements] == [0, 1, 2, 3]
    for x, _ in elements:
        assert x.shape == (6, 10, 3) and abs(float(x[3, 5, 0]) * 255 - 200) < 12


def test_tfrecord_given_features_and_plain_shards():
    source = TFRecordSource(
        files=f"{DEMO}/tfrecord/shapes-*.tfrecord",
        features={"image": {"dtype": "string"}, "label": {"dtype": "int64"}},
    )
    ds = build_source(source)
    assert ds.element_spec[0].dtype.name == "string"
    assert len(_elements(ds)) == N_DEMO


def test_tfrecord_feature_inference(demo):
    found = sources.infer_tfrecord_features(str(demo / "tfrecord" / "shapes-0.tfrecord"))
    assert found == {"image": ("fixed", "string", ()), "label": ("fixed", "int64", ())}


def test_csv_given_types_and_no_header(tmp_path):
    (tmp_path / "a.csv").write_text("1;2.5;0\n3;4.5;1\n")
    source = CsvSource(
        path=str(tmp_path / "a.csv"),
        header=False,
        field_delim=";",
        label_column="column2",
        column_types={"column0": "float32"},
    )
    elements = _elements(build_source(source))
    assert [(x.tolist(), y) for x, y in elements] == [([1.0, 2.5], 0), ([3.0, 4.5], 1)]


def test_missing_demo_folder_is_generated(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ENV_HOME, str(tmp_path / "fresh"))
    ds = build_source(ImageFolderSource(path="{data_dir}/demo/images", image_size=(8, 8)))
    assert (tmp_path / "fresh" / "demo" / "images" / "circle").is_dir()
    assert ds.element_spec[0].shape == (8, 8, 3)


def _compressed_npz(tmp_path: Path) -> str:
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros((2, 2)))
    return str(tmp_path / "c.npz")


def _empty_class_folders(tmp_path: Path) -> str:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("no images")
    return str(tmp_path)


ERRORS = [
    (lambda t: NpySource(features_path=str(t / "missing.npy")), "does not exist or is not a file"),
    (lambda t: NpzSource(path=_compressed_npz(t), labels_key=None), "save the file with np.savez"),
    (
        lambda t: NpzSource(path=_compressed_npz(t), features_key="z"),
        "set features_key to one of: x",
    ),
    (
        lambda t: NumpySource(path=_compressed_npz(t), features_key="q"),
        "set features_key to one of",
    ),
    (lambda t: ImageFolderSource(path=str(t / "nope")), "does not exist; point path at a folder"),
    (lambda t: ImageFolderSource(path=str(t)), "has no class sub-folders"),
    (lambda t: ImageFolderSource(path=_empty_class_folders(t)), "but no images; add .jpg"),
    (lambda t: TFRecordSource(files=str(t / "*.tfrecord")), "matches no files"),
    (
        lambda t: TFRecordSource(files=f"{DEMO}/tfrecord/shapes-*.tfrecord", features_key="img"),
        "set features_key to one of: image, label",
    ),
    (
        lambda t: TFRecordSource(files=f"{DEMO}/tfrecord/shapes.tfrecord.gz"),
        "check the file and the compression setting",
    ),
    (
        lambda t: CsvSource(path=f"{DEMO}/csv/shapes.csv", label_column="kind"),
        "set label_column to one of: mean_red",
    ),
    (lambda t: GeneratorSource(template="nope"), "known: random_arrays"),
]


@pytest.mark.parametrize("make, message", ERRORS)
def test_source_errors_name_problem_and_fix(make, message, tmp_path):
    with pytest.raises(SourceError, match=message):
        build_source(make(tmp_path))
