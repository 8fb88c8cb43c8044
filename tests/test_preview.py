"""The preview core: samples before/after augmentation, and the first-batch summary."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_core.augment import AUGMENTATIONS
from pipeline_core.isolate import run_job
from pipeline_core.preview import (
    BatchSummary,
    PreviewError,
    batch_summary,
    label_text,
    preview_job,
    preview_samples,
    to_display,
)
from pipeline_core.spec import load_spec

SOURCE = {
    "type": "synthetic",
    "num_examples": 20,
    "shape": [16, 16, 3],
    "dtype": "uint8",
    "num_classes": 5,
    "seed": 3,
}


def _spec(*steps, source=None):
    return load_spec({"source": source or SOURCE, "steps": list(steps)})


def _map(*augmentations):
    return {"op": "map", "augmentations": list(augmentations)}


AUGMENTED = _spec(
    _map({"name": "random_rotation", "max_degrees": 40}, {"name": "random_brightness"}),
    {"op": "batch", "batch_size": 4},
    _map({"name": "mixup", "alpha": 1.0, "num_classes": 5}),
)


def _source_elements(n):
    from pipeline_core.sources import build_source

    return [(np.asarray(x), int(y)) for x, y in build_source(_spec().source).take(n)]


# --- preview_samples --------------------------------------------------------------


def test_returns_n_displayable_samples_of_the_source():
    samples = preview_samples(AUGMENTED, n=5, seed=0)
    assert [s.index for s in samples] == list(range(5))
    for sample, (features, label) in zip(samples, _source_elements(5), strict=True):
        assert sample.original.dtype == np.uint8 and sample.augmented.dtype == np.uint8
        assert sample.original.shape == sample.augmented.shape == (16, 16, 3)
        np.testing.assert_array_equal(sample.original, features)
        assert sample.original_label == label
        assert sample.original_shape == (16, 16, 3) and sample.original_dtype == "uint8"
        assert sample.augmented_shape == (16, 16, 3) and sample.augmented_dtype == "uint8"
        assert isinstance(sample.label, tuple) and len(sample.label) == 5  # soft after mixup
        assert sum(sample.label) == pytest.approx(1.0, abs=1e-5)
        assert str(label) in sample.label_text or "+" in sample.label_text


def test_same_seed_repeats_a_new_seed_rerolls():
    first = preview_samples(AUGMENTED, n=4, seed=0)
    again = preview_samples(AUGMENTED, n=4, seed=0)
    rerolled = preview_samples(AUGMENTED, n=4, seed=1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.augmented, b.augmented)
    assert any(
        not np.array_equal(a.augmented, b.augmented) for a, b in zip(first, rerolled, strict=True)
    )
    for a, b in zip(first, rerolled, strict=True):
        np.testing.assert_array_equal(a.original, b.original)


def test_only_applies_one_augmentation_alone():
    crop = AUGMENTATIONS["central_crop"].params(fraction=0.5)
    for only in (crop, ("central_crop", {"fraction": 0.5})):
        samples = preview_samples(AUGMENTED, n=3, only=only)
        for sample, (features, label) in zip(samples, _source_elements(3), strict=True):
            assert sample.augmented_shape == (8, 8, 3)
            np.testing.assert_array_equal(sample.augmented, features[4:12, 4:12])
            assert sample.label == label  # the spec's mixup was not applied


def test_only_a_batch_augmentation_runs_on_the_stack():
    samples = preview_samples(_spec(), n=4, only=("cutmix", {"num_classes": 5}))
    assert all(isinstance(s.label, tuple) for s in samples)
    assert any(not np.array_equal(s.original, s.augmented) for s in samples)


def test_spec_without_maps_shows_the_source_unchanged():
    samples = preview_samples(_spec({"op": "batch", "batch_size": 2}), n=2)
    for sample in samples:
        np.testing.assert_array_equal(sample.original, sample.augmented)
        assert sample.label == sample.original_label


def test_float_and_normalized_features_are_rescaled_for_display():
    source = {**SOURCE, "dtype": "float32"}
    norm = {"name": "normalize", "mode": "mean_std", "mean": [0.5], "std": [0.1]}
    samples = preview_samples(_spec(_map(norm), source=source), n=2)
    for sample in samples:
        assert sample.augmented_dtype == "float32"
        assert sample.augmented.min() == 0 and sample.augmented.max() == 255  # min-max
        assert sample.original.dtype == np.uint8


def test_non_image_features_are_refused_with_the_fix():
    vectors = {"type": "synthetic", "num_examples": 4, "shape": [8]}
    with pytest.raises(PreviewError, match="image-shaped features.*shape \\(8,\\)"):
        preview_samples(_spec(source=vectors))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"only": ("warp", {})}, "unknown augmentation 'warp'"),
        ({"only": ("resize", {"height": -1})}, "invalid parameters for 'resize'"),
        ({"only": ("random_crop", {"height": 64})}, "larger than the image"),
    ],
)
def test_bad_requests_raise_preview_errors(kwargs, match):
    with pytest.raises(PreviewError, match=match):
        preview_samples(_spec(), **kwargs)


def test_augmentation_errors_name_the_step():
    gray = {**SOURCE, "shape": [16, 16, 1]}
    with pytest.raises(PreviewError, match=r"steps\[0\] map: random_hue needs .*3 channels"):
        preview_samples(_spec(_map({"name": "random_hue"}), source=gray), n=2)


def test_a_corrupt_file_names_the_sample_and_the_fix(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "broken.png").write_bytes(b"not an image at all")
    spec = _spec(source={"type": "image_folder", "path": str(tmp_path)})
    with pytest.raises(PreviewError, match="reading sample 0 of the source failed: ") as err:
        preview_samples(spec, n=2)
    assert "InvalidArgumentError" in str(err.value) and "replace or remove it" in str(err.value)


def test_the_preview_job_in_a_child_gives_the_same_samples_and_batch():
    """Same seed, same samples, whichever process computes them (the page's Reroll)."""
    child = run_job(preview_job, args=(AUGMENTED.to_json(), 3, 5, None), timeout_s=120)
    assert child.samples_error is None and child.summary_error is None
    here = preview_samples(AUGMENTED, n=3, seed=5)
    for a, b in zip(child.samples, here, strict=True):
        np.testing.assert_array_equal(a.original, b.original)
        np.testing.assert_array_equal(a.augmented, b.augmented)
        assert a.label == b.label
    assert child.summary == batch_summary(AUGMENTED)


def test_the_preview_job_reports_each_part_that_fails_with_its_reason():
    vectors = _spec({"op": "batch", "batch_size": 2}, source={"type": "synthetic", "shape": [8]})
    preview = preview_job(vectors.to_json(), 2, 0)
    assert preview.samples == () and "image-shaped features" in preview.samples_error
    assert preview.summary.features_shape == (2, 8) and preview.summary_error is None
    empty = _spec({"op": "batch", "batch_size": 32, "drop_remainder": True})  # 20 examples
    preview = preview_job(empty.to_json(), 2, 0)
    assert len(preview.samples) == 2 and preview.samples_error is None
    assert preview.summary is None
    assert preview.summary_error.startswith("reading the first batch failed: steps[0] (batch)")
    assert preview.summary_error.endswith("lower batch_size or set drop_remainder to false")


# --- display helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((2, 2, 3), 7, np.uint8), np.full((2, 2, 3), 7, np.uint8)),
        (np.full((2, 2, 3), 0.5, np.float32), np.full((2, 2, 3), 128, np.uint8)),
        (np.full((2, 2, 1), 200, np.int32), np.full((2, 2), 200, np.uint8)),
        (np.array([[[-2.0], [2.0]]]), np.array([[0, 255]], np.uint8)),
        (np.array([[[300], [600]]], np.int64), np.array([[0, 255]], np.uint8)),
        (np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 3), np.uint8)),
        (np.full((2, 2, 3), 3.0, np.float32), np.zeros((2, 2, 3), np.uint8)),
    ],
)
def test_to_display(array, expected):
    out = to_display(array)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_to_display_refuses_non_images():
    with pytest.raises(PreviewError, match="height, width, channels"):
        to_display(np.zeros(5))


def test_label_text():
    assert label_text(3) == "3"
    assert label_text((0.0, 0.62, 0.0, 0.38)) == "1 (62%) + 3 (38%)"
    assert label_text((0.0, 1.0)) == "1 (100%)"


# --- batch_summary ----------------------------------------------------------------------


def test_batch_summary_of_the_first_batch():
    spec = _spec({"op": "batch", "batch_size": 8})
    summary = batch_summary(spec)
    assert isinstance(summary, BatchSummary)
    elements = _source_elements(8)
    values = np.stack([x for x, _ in elements]).astype(np.float64)
    assert summary.batched and summary.element_count == 8
    assert summary.features_shape == (8, 16, 16, 3) and summary.features_dtype == "uint8"
    assert summary.minimum == values.min() and summary.maximum == values.max()
    assert summary.mean == pytest.approx(values.mean())
    expected = {}
    for _, label in elements:
        expected[label] = expected.get(label, 0) + 1
    assert summary.label_counts == expected
    assert summary.label_shape == (8,) and not summary.soft_labels
    assert summary.num_classes_seen == len(expected)
    assert dict(summary.rows())["elements"] == "8"


def test_batch_summary_last_short_batch_and_unbatched_limit():
    take = batch_summary(_spec({"op": "take", "count": 3}, {"op": "batch", "batch_size": 8}))
    assert take.element_count == 3 and take.features_shape == (3, 16, 16, 3)
    unbatched = batch_summary(_spec())
    assert not unbatched.batched
    assert unbatched.element_count == 20  # fewer than 32 in the source
    assert unbatched.features_shape == (16, 16, 3)
    assert sum(unbatched.label_counts.values()) == 20
    many = batch_summary(_spec(source={**SOURCE, "num_examples": 50}))
    assert many.element_count == 32


def test_batch_summary_counts_soft_labels_by_their_main_class():
    summary = batch_summary(AUGMENTED)
    assert summary.soft_labels and summary.label_shape == (4, 5)
    assert summary.label_dtype == "float32"
    assert sum(summary.label_counts.values()) == 4


def test_small_images_are_enlarged_sharp_and_shown_as_one_pair():
    from pipeline_core.preview import PreviewSample, enlarged, pair_image

    tiny = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    big = enlarged(tiny)
    assert big.shape == (192, 192, 3)  # 6x: nearest neighbour, no new values
    assert set(np.unique(big)) == set(np.unique(tiny)) and (big[:6, :6] == tiny[0, 0]).all()
    assert enlarged(np.zeros((400, 300, 3), np.uint8)).shape == (400, 300, 3)
    gray = np.zeros((28, 28), np.uint8)
    sample = PreviewSample(0, tiny, gray, 1, 1, (32, 32, 3), "uint8", (28, 28, 1), "uint8")
    pair = pair_image(sample)
    assert pair.shape == (196, 192 + 8 + 196, 3) and pair.dtype == np.uint8  # 28 * 7 = 196


def test_labels_by_class_name_and_demo_images_for_a_synthetic_source():
    from pipeline_core.preview import Preview, demo_samples_source
    from pipeline_core.spec import default_spec

    named = Preview(class_names=("cat", "dog", "eel"))
    assert named.label_name(2) == "eel"
    assert named.label_name((0.25, 0.75, 0.0)) == "dog (75%) + cat (25%)"
    assert Preview().label_name(2) == "2"
    spec = default_spec()
    assert demo_samples_source(spec) == {
        "type": "image_folder", "path": "{data_dir}/demo/images", "image_size": [32, 32]
    }  # fmt: skip
    flat = load_spec({**spec.to_dict(), "source": {"type": "synthetic", "shape": [8]}})
    assert demo_samples_source(flat) is None


def test_the_demo_images_stand_in_for_noise_and_the_batch_stays_the_designs():
    from pipeline_core.preview import demo_samples_source
    from pipeline_core.spec import default_spec

    spec = default_spec()
    preview = preview_job(spec.to_json(), 4, 0, samples_from=demo_samples_source(spec))
    assert preview.samples_error is None and len(preview.samples) == 4
    assert preview.class_names == ("circle", "cross", "square", "stripes", "triangle")
    assert preview.samples_source == "{data_dir}/demo/images"
    assert preview.summary.rows()  # the design's own synthetic batch
