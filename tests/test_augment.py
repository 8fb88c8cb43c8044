"""The augmentation registry and its TensorFlow ops, driven by one table of cases.

Every registered augmentation must have a case here (`test_every_augmentation_has_a_case`),
so the registry and the tests cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline_core.augment import AUGMENTATIONS, param_fields
from pipeline_core.augment_code import (
    EMITTERS,
    Features,
    apply_augmentations,
    augment_source,
    helper_source,
)

N, SIZE, CLASSES = 4, 16, 4
RNG = np.random.default_rng(7)
# Values kept away from 0 and 1 so the property checks below never hit clipping.
IMAGES = RNG.uniform(0.4, 0.6, size=(N, SIZE, SIZE, 3)).astype(np.float32)
LABELS = np.arange(N, dtype=np.int64)


@dataclass(frozen=True)
class Case:
    """How one augmentation is exercised and what it must do.

    params: parameters used by every generic test.
    random: different seeds must give different outputs (else all equal).
    size: output (height, width) for a 16x16 input.
    dtype: output dtype, or None when the input dtype must be kept.
    check: property on (input batch, output batch, output labels) for `check_params`.
    """

    params: dict[str, Any] = field(default_factory=dict)
    random: bool = True
    size: tuple[int, int] = (SIZE, SIZE)
    dtype: str | None = None
    check: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
    check_params: dict[str, Any] | None = None


def _same(expected: np.ndarray, atol: float = 1e-5) -> Callable[..., None]:
    def check(x, out, y):
        np.testing.assert_allclose(out, expected(x) if callable(expected) else expected, atol=atol)

    return check


def _flipped(axis: int) -> Callable[..., None]:
    def check(x, out, y):
        np.testing.assert_array_equal(out, np.flip(x, axis=axis))

    return check


def _brightness(x, out, y):
    delta = (out - x).reshape(N, -1)
    np.testing.assert_allclose(delta, delta[:, :1].repeat(delta.shape[1], axis=1), atol=1e-5)
    assert np.all(np.abs(delta) <= 0.2 + 1e-6)
    assert len(np.unique(delta[:, 0].round(5))) == N  # one delta per image


def _contrast(x, out, y):
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-5)
    assert not np.allclose(out, x)


def _saturation(x, out, y):
    # HSV saturation, as tf.image.adjust_saturation: value (max channel) and hue kept.
    np.testing.assert_allclose(out.max(axis=-1), x.max(axis=-1), atol=1e-4)
    assert not np.allclose(out, x)


def _hue(x, out, y):
    np.testing.assert_allclose(out.max(axis=-1), x.max(axis=-1), atol=1e-4)
    np.testing.assert_allclose(out.min(axis=-1), x.min(axis=-1), atol=1e-4)
    assert not np.allclose(out, x)


def _is_window(x, out, y):
    h, w = out.shape[1:3]
    for image, window in zip(x, out, strict=True):
        offsets = [
            (i, j)
            for i in range(image.shape[0] - h + 1)
            for j in range(image.shape[1] - w + 1)
            if np.array_equal(image[i : i + h, j : j + w], window)
        ]
        assert offsets, "a random_crop output is not a window of its input"


def _area_pooled(x):
    return x.reshape(N, SIZE // 2, 2, SIZE // 2, 2, 3).mean(axis=(2, 4))


def _noise(x, out, y):
    assert abs(float((out - x).std()) - 0.1) < 0.01
    assert abs(float((out - x).mean())) < 0.01


def _erased(x, out, y):
    changed = np.any(out != x, axis=-1).reshape(N, -1).sum(axis=1)
    np.testing.assert_array_equal(changed, [16] * N)  # one 4x4 box per image
    assert np.all(out[out != x] == 0.0)


def _jpeg(x, out, y):
    assert float(np.abs(out - x).mean()) < 0.05


def _mixup(x, out, y):
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    for i in range(N):
        weights = y[i]
        lam = weights[i]
        others = [j for j in range(N) if j != i and weights[j] > 1e-6]
        partner = others[0] if others else i
        np.testing.assert_allclose(out[i], lam * x[i] + (1 - lam) * x[partner], atol=1e-5)


def _cutmix(x, out, y):
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    for i in range(N):
        pasted = np.any(out[i] != x[i], axis=-1)
        share = pasted.mean()
        np.testing.assert_allclose(1.0 - y[i, i], share, atol=1e-5)
        if share:
            partner = int(np.argmax(np.where(np.arange(N) == i, -1, y[i])))
            np.testing.assert_array_equal(out[i][pasted], x[partner][pasted])


CASES: dict[str, Case] = {
    "random_flip_left_right": Case(
        check=_flipped(2), check_params={"probability": 1.0}, params={"probability": 0.5}
    ),
    "random_flip_up_down": Case(
        check=_flipped(1), check_params={"probability": 1.0}, params={"probability": 0.5}
    ),
    "random_brightness": Case(params={"max_delta": 0.2}, check=_brightness),
    "random_contrast": Case(params={"factor": 0.2}, check=_contrast),
    "random_saturation": Case(params={"factor": 0.3}, check=_saturation),
    "random_hue": Case(params={"max_delta": 0.2}, check=_hue),
    "random_crop": Case(params={"height": 8, "width": 10}, size=(8, 10), check=_is_window),
    "central_crop": Case(
        params={"fraction": 0.5},
        random=False,
        size=(8, 8),
        check=_same(lambda x: x[:, 4:12, 4:12]),
    ),
    "resize": Case(
        params={"height": 8, "width": 12, "method": "bilinear"},
        random=False,
        size=(8, 12),
        check=_same(_area_pooled),
        check_params={"height": 8, "width": 8, "method": "area"},
    ),
    "random_rotation": Case(
        params={"max_degrees": 30.0},
        check=_same(lambda x: x, atol=1e-4),
        check_params={"max_degrees": 0.0},
    ),
    "random_zoom": Case(
        params={"max_zoom": 0.3, "fill_mode": "reflect"},
        check=_same(lambda x: x, atol=1e-4),
        check_params={"max_zoom": 0.0},
    ),
    "gaussian_noise": Case(
        params={"stddev": 0.05}, check=_noise, check_params={"stddev": 0.1, "clip": False}
    ),
    "random_erasing": Case(
        params={"size": 0.25, "count": 2}, check=_erased, check_params={"size": 0.25, "count": 1}
    ),
    "jpeg_quality": Case(params={"min_quality": 20, "max_quality": 95}, check=_jpeg),
    "normalize": Case(
        params={"mode": "mean_std", "mean": (0.5,), "std": (0.25,)},
        random=False,
        dtype="float32",
        check=_same(lambda x: (x - 0.5) / 0.25),
    ),
    "convert_dtype": Case(
        params={"dtype": "uint8"},
        random=False,
        dtype="uint8",
        check=_same(lambda x: x * 255.0, atol=1.0),
    ),
    "mixup": Case(params={"alpha": 1.0, "num_classes": CLASSES}, check=_mixup),
    "cutmix": Case(params={"alpha": 1.0, "num_classes": CLASSES}, check=_cutmix),
    "sleep": Case(params={"ms": 1.0}, random=False, check=_same(lambda x: x)),
    "cpu_work": Case(params={"iterations": 3, "size": 8}, random=False, check=_same(lambda x: x)),
}

NAMES = sorted(AUGMENTATIONS)
ELEMENT_NAMES = [n for n in NAMES if AUGMENTATIONS[n].element_ok]
BATCH_NAMES = [n for n in NAMES if AUGMENTATIONS[n].batch_ok]


def _aug(name: str, params: dict[str, Any] | None = None):
    return AUGMENTATIONS[name].params(**(CASES[name].params if params is None else params))


def _inputs(tf, dtype: str):
    images = tf.constant(IMAGES)
    if dtype == "uint8":
        images = tf.cast(tf.round(images * 255.0), tf.uint8)
    return images, tf.constant(LABELS)


def _expected_dtype(name: str, dtype: str) -> str:
    return CASES[name].dtype or dtype


def _map(tf, ds, name: str):
    """Map like the builder does: zip with a random seed stream, then apply."""
    augmentations = (_aug(name),)
    seeds = tf.data.Dataset.random(seed=3, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda element, seed: apply_augmentations(element[0], element[1], augmentations, seed),
        num_parallel_calls=2,
    )


# --- the table covers the registry ----------------------------------------------


def test_every_augmentation_has_a_case_and_a_code_writer():
    assert set(CASES) == set(AUGMENTATIONS), (
        f"add a Case for {sorted(set(AUGMENTATIONS) - set(CASES))}, "
        f"remove stale cases {sorted(set(CASES) - set(AUGMENTATIONS))}"
    )
    assert set(EMITTERS) == set(AUGMENTATIONS)


def test_registry_is_large_enough_and_flags_are_consistent():
    assert len(AUGMENTATIONS) >= 18
    for entry in AUGMENTATIONS.values():
        assert entry.element_ok or entry.batch_ok, entry.name


# --- inside tf.data ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("name", ELEMENT_NAMES)
def test_runs_on_elements_inside_dataset_map(tf, name, dtype):
    ds = _map(tf, tf.data.Dataset.from_tensor_slices(_inputs(tf, dtype)), name)
    h, w = CASES[name].size
    assert ds.element_spec[0].shape.as_list() == [h, w, 3]
    assert ds.element_spec[0].dtype.name == _expected_dtype(name, dtype)
    outputs = list(ds)
    assert len(outputs) == N
    for features, label in outputs:
        assert features.shape == (h, w, 3)
        assert features.dtype.name == _expected_dtype(name, dtype)
        assert label.dtype == tf.int64


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("name", BATCH_NAMES)
def test_runs_on_batches_inside_dataset_map(tf, name, dtype):
    ds = tf.data.Dataset.from_tensor_slices(_inputs(tf, dtype)).batch(N)
    ds = _map(tf, ds, name)
    h, w = CASES[name].size
    assert ds.element_spec[0].shape.as_list()[1:] == [h, w, 3]
    features, label = next(iter(ds))
    assert features.shape == (N, h, w, 3)
    assert features.dtype.name == _expected_dtype(name, dtype)
    if name in ("mixup", "cutmix"):  # soft one-hot labels
        assert label.shape == (N, CLASSES) and label.dtype == tf.float32
    else:
        np.testing.assert_array_equal(label, LABELS)


@pytest.mark.parametrize(
    ("name", "batched", "match"),
    [(n, False, "batch step before") for n in NAMES if not AUGMENTATIONS[n].element_ok]
    + [(n, True, "before the batch step") for n in NAMES if not AUGMENTATIONS[n].batch_ok],
)
def test_refuses_the_wrong_level_with_the_fix(tf, name, batched, match):
    images, labels = _inputs(tf, "float32")
    if not batched:
        images, labels = images[0], labels[0]
    with pytest.raises(ValueError, match=match):
        apply_augmentations(images, labels, [_aug(name)], tf.constant([1, 2], tf.int64))


def test_image_ops_refuse_non_image_features(tf):
    vector = tf.zeros([8])
    with pytest.raises(ValueError, match="image features"):
        apply_augmentations(vector, 0, [_aug("random_rotation")], [0, 1])


def test_rgb_ops_refuse_gray_images(tf):
    gray = tf.zeros([SIZE, SIZE, 1])
    with pytest.raises(ValueError, match="3 channels"):
        apply_augmentations(gray, 0, [_aug("random_hue")], [0, 1])


def test_crop_larger_than_image_is_refused(tf):
    big = AUGMENTATIONS["random_crop"].params(height=32, width=8)
    with pytest.raises(ValueError, match="larger than the image"):
        apply_augmentations(tf.zeros([SIZE, SIZE, 3]), 0, [big], [0, 1])


# --- seeds -----------------------------------------------------------------------------


def _run(tf, name: str, seed: tuple[int, int], params: dict[str, Any] | None = None):
    images, labels = _inputs(tf, "float32")
    if not AUGMENTATIONS[name].batch_ok:  # single images only: run one by one
        outs = [
            apply_augmentations(images[i], labels[i], [_aug(name, params)], [seed[0], seed[1] + i])
            for i in range(N)
        ]
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])
    out, y = apply_augmentations(images, labels, [_aug(name, params)], tf.constant(seed))
    return np.asarray(out), np.asarray(y)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_new_seed_rerolls(tf, name):
    first, _ = _run(tf, name, (5, 6))
    again, _ = _run(tf, name, (5, 6))
    np.testing.assert_array_equal(first, again)
    others = [_run(tf, name, (s, 6))[0] for s in range(6, 9)]
    differs = [not np.array_equal(first, other) for other in others]
    assert any(differs) if CASES[name].random else not any(differs)


def test_images_of_a_batch_get_their_own_random_values(tf):
    images = tf.constant(np.repeat(IMAGES[:1], 8, axis=0))
    out, _ = apply_augmentations(images, LABELS, [_aug("random_rotation")], [1, 1])
    assert len({np.asarray(o).tobytes() for o in out}) == 8


@pytest.mark.parametrize("name", NAMES)
def test_property(tf, name):
    case = CASES[name]
    assert case.check is not None, "every case states a property of its output"
    out, labels = _run(tf, name, (11, 12), case.check_params)
    case.check(IMAGES, out, labels)


def test_uint8_is_saturated_not_wrapped(tf):
    white = tf.fill([SIZE, SIZE, 3], tf.constant(250, tf.uint8))
    bright = AUGMENTATIONS["random_brightness"].params(max_delta=1.0)
    outs = [apply_augmentations(white, 0, [bright], [s, 0])[0] for s in range(4)]
    for out in outs:
        values = np.asarray(out)
        assert values.dtype == np.uint8
        assert len(np.unique(values)) == 1  # per image one delta, no wrap-around
    assert max(int(np.asarray(o)[0, 0, 0]) for o in outs) == 255


def test_mixup_rejects_labels_beyond_num_classes(tf):
    mix = AUGMENTATIONS["mixup"].params(num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        apply_augmentations(tf.constant(IMAGES), tf.constant(LABELS), [mix], [0, 1])


def test_sleep_waits_at_least_its_time(tf):
    nap = AUGMENTATIONS["sleep"].params(ms=20.0)
    ds = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS))
    ds = ds.map(lambda x, y: apply_augmentations(x, y, [nap], [0, 0]))
    start = time.perf_counter()
    assert len(list(ds)) == N
    assert time.perf_counter() - start >= N * 0.020  # a lower bound: noise only adds time


def test_cpu_work_really_computes_inside_dataset_map(tf):
    def cpu_seconds(iterations):
        work = AUGMENTATIONS["cpu_work"].params(iterations=iterations, size=32)
        ds = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).repeat(2)
        ds = ds.map(lambda x, y: apply_augmentations(x, y, [work], [0, 0]))
        list(ds.take(1))  # trace and warm up outside the measurement
        start = time.process_time()
        outputs = list(ds)
        np.testing.assert_array_equal(np.stack([x for x, _ in outputs[:N]]), IMAGES)
        return time.process_time() - start

    # CPU time of this process, not wall time: other processes add nothing to it.
    # 3000 products per element cost far more than 1; a pruned map would cost the same.
    assert cpu_seconds(3000) > 3 * cpu_seconds(1) + 0.02


# --- parameter models ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name):
    model = _aug(name)
    cls = AUGMENTATIONS[name].params
    assert cls.model_validate(model.model_dump()) == model
    assert cls.model_validate_json(model.model_dump_json()) == model
    assert cls() == cls.model_validate({"name": name})  # defaults validate


@pytest.mark.parametrize("name", NAMES)
def test_param_fields_give_a_widget_for_every_field(name):
    fields = param_fields(name)
    assert [f.name for f in fields] == [
        n for n in AUGMENTATIONS[name].params.model_fields if n != "name"
    ]
    for f in fields:
        assert f.kind in {"float", "int", "bool", "choice", "floats", "ints"}, (name, f)
        assert f.description, (name, f.name)
        if f.kind in ("float", "int"):
            assert f.minimum is not None and f.maximum is not None, (name, f.name)
            assert f.minimum <= f.default <= f.maximum
        if f.kind == "choice":
            assert f.default in f.choices


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("jpeg_quality", {"min_quality": 90, "max_quality": 10}, "must be <= max_quality"),
        ("normalize", {"std": (0.0,)}, "greater than 0"),
        ("random_crop", {"height": 0}, "greater than or equal to 1"),
        ("resize", {"method": "magic"}, "bilinear"),
        ("random_flip_left_right", {"chance": 0.3}, "Extra inputs"),
    ],
)
def test_bad_params_are_rejected(name, params, match):
    with pytest.raises(ValidationError, match=match):
        AUGMENTATIONS[name].params(**params)


def test_normalize_checks_channel_count(tf):
    norm = AUGMENTATIONS["normalize"].params(mode="mean_std", mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match="one per channel"):
        apply_augmentations(tf.constant(IMAGES), LABELS, [norm], [0, 0])


# --- chains, code and the TF ops they mirror ----------------------------------------


def test_positions_of_a_chain_get_their_own_seeds(tf):
    flip = AUGMENTATIONS["random_flip_left_right"].params(probability=0.5)
    images = tf.constant(np.repeat(IMAGES[:1], 16, axis=0))
    twice, _ = apply_augmentations(images, LABELS, [flip, flip], [3, 4])
    # With one shared seed the two flips would always cancel out.
    assert not np.allclose(twice, images)


def test_code_calls_tf_ops_by_name_and_converts_once():
    chain = [
        _aug("random_flip_left_right"),
        _aug("random_brightness"),
        _aug("random_contrast"),
        AUGMENTATIONS["convert_dtype"].params(dtype="float32"),
    ]
    code = augment_source(chain, features=Features("uint8", (64, 64, 3))).source
    assert code.count("convert_image_dtype") == 1  # uint8 -> float32 once, no round trip
    assert "tf.image.stateless_random_flip_left_right(image, seed=seed)" in code
    assert "tf.image.stateless_random_brightness(image, max_delta=0.2, seed=seed + [0, 1])" in code
    assert (
        "tf.image.stateless_random_contrast(image, lower=0.8, upper=1.2, seed=seed + [0, 2])"
        in code
    )
    assert code.count("clip_by_value") == 1  # saturate once, where the floats leave the chain
    batch = augment_source(chain, features=Features("uint8", (None, 64, 64, 3))).source
    assert "random_brightness_batch(image, seed + [0, 1], max_delta=0.2)" in batch


def test_unknown_entries_are_named(tf):
    with pytest.raises(ValueError, match="parameter models"):
        augment_source([{"name": "resize"}], features=Features("uint8", (8, 8, 3)))


def _native(tf, name: str, x, seed):
    """What TensorFlow's own op gives for CASES[name].params on one image."""
    p = CASES[name].params
    ops = {
        "random_flip_left_right": lambda: tf.image.stateless_random_flip_left_right(x, seed),
        "random_flip_up_down": lambda: tf.image.stateless_random_flip_up_down(x, seed),
        "random_brightness": lambda: tf.image.stateless_random_brightness(x, 0.2, seed),
        "random_contrast": lambda: tf.image.stateless_random_contrast(x, 0.8, 1.2, seed),
        "random_saturation": lambda: tf.image.stateless_random_saturation(x, 0.7, 1.3, seed),
        "random_hue": lambda: tf.image.stateless_random_hue(x, p["max_delta"], seed),
        "random_crop": lambda: tf.image.stateless_random_crop(x, [8, 10, 3], seed),
        "central_crop": lambda: tf.image.central_crop(x, 0.5),
        "resize": lambda: tf.image.resize(x, [8, 12]),
        "convert_dtype": lambda: tf.image.convert_image_dtype(x, tf.uint8, saturate=True),
    }
    return ops[name]()


NATIVE = [
    "random_flip_left_right",
    "random_flip_up_down",
    "random_brightness",
    "random_contrast",
    "random_saturation",
    "random_hue",
    "random_crop",
    "central_crop",
    "resize",
    "convert_dtype",
]


@pytest.mark.parametrize("name", NATIVE)
def test_one_example_gets_exactly_the_tf_op(tf, name):
    """Where TF has the op, one augmentation on one example is that op with that seed."""
    x = tf.constant(IMAGES[1])
    seed = tf.constant([31, 32], tf.int64)
    want = _native(tf, name, x, seed)
    got, _ = apply_augmentations(x, LABELS[1], [_aug(name)], seed)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_jpeg_quality_is_tf_stateless_random_jpeg_quality(tf):
    x = tf.cast(tf.constant(IMAGES[0]) * 255.0, tf.uint8)
    seed = tf.constant([5, 6], tf.int64)
    got, _ = apply_augmentations(x, 0, [_aug("jpeg_quality")], seed)
    want = tf.image.stateless_random_jpeg_quality(x, 20, 95, seed)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("name", "layer"),
    [("random_rotation", "RandomRotation"), ("random_zoom", "RandomZoom")],
)
def test_geometric_ops_match_the_keras_layer_in_shape_dtype_and_range(tf, name, layer):
    import keras

    images, labels = _inputs(tf, "uint8")
    ours, _ = apply_augmentations(images, labels, [_aug(name)], [1, 2])
    factor = 30.0 / 360.0 if name == "random_rotation" else 0.3
    theirs = getattr(keras.layers, layer)(factor, seed=1)(tf.cast(images, tf.float32))
    assert ours.shape == theirs.shape and ours.dtype == images.dtype
    for out in (np.asarray(ours, np.float32), np.asarray(theirs)):
        assert out.min() >= 0.0 and out.max() <= 255.0


@pytest.mark.parametrize("name", NAMES)
def test_exported_text_computes_what_the_pipeline_computes(tf, name):
    """The text export embeds, run in a fresh namespace, gives the pipeline's output."""
    images, labels = _inputs(tf, "uint8")
    if not AUGMENTATIONS[name].batch_ok:
        images, labels = images[0], labels[0]
    features = Features("uint8", tuple(images.shape))
    code = augment_source([_aug(name)], features=features)
    namespace = {"tf": tf, "np": np}
    exec(helper_source(code.helpers) + "\n\n" + code.source, namespace)  # noqa: S102
    seed = tf.constant([21, 22], tf.int64)
    expected = apply_augmentations(images, labels, [_aug(name)], seed)
    exported = namespace["augment"](images, labels, seed)
    for want, got in zip(expected, exported, strict=True):
        np.testing.assert_array_equal(got, want)


def test_exported_chain_matches_inside_dataset_map(tf):
    augmentations = [_aug("random_crop"), _aug("random_rotation"), _aug("random_brightness")]
    code = augment_source(augmentations, features=Features("uint8", (SIZE, SIZE, 3)))
    assert code.helpers == ("random_rotation",)
    namespace = {"tf": tf, "np": np}
    exec(helper_source(code.helpers) + "\n\n" + code.source, namespace)  # noqa: S102
    ds = tf.data.Dataset.from_tensor_slices(_inputs(tf, "uint8"))
    seeds = tf.data.Dataset.range(N).map(lambda i: tf.stack([i, i + 1]))
    both = tf.data.Dataset.zip((ds, seeds)).map(
        lambda e, s: (
            apply_augmentations(e[0], e[1], augmentations, s)[0],
            namespace["augment"](e[0], e[1], s)[0],
        )
    )
    for pipeline, exported in both:
        np.testing.assert_array_equal(pipeline, exported)
