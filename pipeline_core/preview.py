"""What the augmentations of a spec do to real samples, and what a batch looks like.

The Preview page runs these two functions in one child process (`preview_job`
through `pipeline_core.isolate`) and draws what comes back; it never builds a
pipeline or runs an augmentation itself.

- `preview_samples` takes the first `n` elements of the spec's source and
  applies the augmentations of every map step in order (maps placed after the
  batch step run on the stack of the `n` samples, like mixup/cutmix must), with
  seeds derived from `seed`: a new seed re-rolls every random choice.
- `batch_summary` reads the first batch of the built pipeline: shape, dtype,
  value range and label distribution.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import examples_in, is_batched
from pipeline_core.augment import AUGMENTATIONS, AugParams
from pipeline_core.augment_code import apply_augmentations
from pipeline_core.build import build
from pipeline_core.errors import PipelineLabError, describe_error
from pipeline_core.paths import resolve_path
from pipeline_core.sources import build_source, list_image_folder, locate_bad_input
from pipeline_core.spec import PipelineSpec, load_spec
from pipeline_core.steps import BatchStep, InterleaveStep, MapStep

UNBATCHED_SUMMARY_ELEMENTS = 32


class PreviewError(PipelineLabError):
    """A preview cannot be made; the message names the problem and the fix."""


@dataclass(frozen=True, eq=False)
class PreviewSample:
    """One sample before and after the augmentations, ready to display.

    `original` and `augmented` are uint8 arrays `(H, W, 3)` (RGB) or `(H, W)`
    (grayscale) made by `to_display`; the `*_shape`/`*_dtype` fields describe
    the raw tensors. `label` is the class (int) or, after mixup/cutmix, the
    soft label vector.
    """

    index: int
    original: np.ndarray
    augmented: np.ndarray
    original_label: int
    label: int | float | tuple[float, ...]
    original_shape: tuple[int, ...]
    original_dtype: str
    augmented_shape: tuple[int, ...]
    augmented_dtype: str

    @property
    def label_text(self) -> str:
        """`"3"`, or for a soft label its main classes: `"3 (62%) + 7 (38%)"`."""
        return label_text(self.label)


@dataclass(frozen=True)
class BatchSummary:
    """Figures of the first batch of a built pipeline (or its first elements if unbatched).

    `features_shape` is the batch's shape, or one element's shape when the
    spec has no batch step. `label_counts` maps class -> count; soft labels
    (mixup/cutmix) count towards their largest class. `minimum`/`maximum`/
    `mean` are None for non-numeric features.
    """

    batched: bool
    element_count: int
    features_shape: tuple[int, ...]
    features_dtype: str
    minimum: float | None
    maximum: float | None
    mean: float | None
    label_counts: dict[int, int]
    label_shape: tuple[int, ...]
    label_dtype: str
    soft_labels: bool

    @property
    def num_classes_seen(self) -> int:
        """How many distinct classes the summarized elements hold."""
        return len(self.label_counts)

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) pairs for a table."""
        fmt = "n/a" if self.minimum is None else None
        return [
            ("elements", str(self.element_count)),
            ("batch shape" if self.batched else "element shape", str(list(self.features_shape))),
            ("dtype", self.features_dtype),
            ("min", fmt or f"{self.minimum:.4g}"),
            ("max", fmt or f"{self.maximum:.4g}"),
            ("mean", fmt or f"{self.mean:.4g}"),
            ("label shape", f"{list(self.label_shape)} {self.label_dtype}"),
            ("classes seen", str(self.num_classes_seen)),
        ]


# --- preview samples -----------------------------------------------------------


def preview_samples(
    spec: PipelineSpec,
    *,
    n: int = 8,
    seed: int = 0,
    only: AugParams | tuple[str, dict[str, Any]] | None = None,
    generator: Any = None,
) -> list[PreviewSample]:
    """The first `n` source samples before and after the spec's augmentations.

    Args:
        spec: the pipeline; its map steps are applied in order.
        n: number of samples.
        seed: derives every augmentation seed; another value re-rolls them.
        only: one augmentation (a parameter model, or `(name, params)`) to apply
            alone instead of the spec's map steps.
        generator: the callable of a "custom" generator source.

    Raises:
        PreviewError: n < 1, an empty source, features that are not images, or
            an augmentation that cannot apply to these samples.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise PreviewError(f"n must be an integer >= 1, received n={n!r}")
    stages = _stages(spec, only)
    elements = _first_elements(spec, n, generator)
    xs = [x for x, _ in elements]
    ys = [y for _, y in elements]
    for number, (where, augmentations, batched) in enumerate(stages):
        try:
            if batched:
                xs, ys = _apply_to_stack(xs, ys, augmentations, _stage_seed(seed, number, 0))
            else:
                for k in range(len(xs)):
                    stage_seed = _stage_seed(seed, number, k)
                    xs[k], ys[k] = apply_augmentations(xs[k], ys[k], augmentations, stage_seed)
        except PreviewError:
            raise
        except (ValueError, _tf().errors.OpError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            raise PreviewError(f"{where}: {reason}") from None
    return [
        _sample(k, original=x0, original_label=y0, augmented=x, label=y)
        for k, ((x0, y0), x, y) in enumerate(zip(elements, xs, ys, strict=True))
    ]


def _stages(spec: PipelineSpec, only: Any) -> list[tuple[str, tuple[AugParams, ...], bool]]:
    """(where, augmentations, on the stack?) for each map step, or for `only`."""
    if only is not None:
        aug = _as_params(only)
        return [(f"augmentation {aug.name!r}", (aug,), not AUGMENTATIONS[aug.name].element_ok)]
    stages = []
    batched = False
    for i, step in enumerate(spec.steps):
        if isinstance(step, BatchStep):
            batched = True
        elif isinstance(step, MapStep):
            stages.append((f"steps[{i}] map", step.augmentations, batched))
    return stages


def _as_params(only: Any) -> AugParams:
    if isinstance(only, AugParams):
        return only
    if isinstance(only, tuple | list) and len(only) == 2 and isinstance(only[0], str):
        name, params = only
        if name not in AUGMENTATIONS:
            raise PreviewError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
        try:
            return AUGMENTATIONS[name].params.model_validate({**dict(params), "name": name})
        except ValueError as exc:
            raise PreviewError(f"invalid parameters for {name!r}: {exc}") from None
    raise PreviewError(
        f"only must be an augmentation parameter model or a (name, params) pair, received {only!r}"
    )


def _first_elements(spec: PipelineSpec, n: int, generator: Any) -> list[tuple[Any, Any]]:
    lead = spec.steps[0] if spec.steps and isinstance(spec.steps[0], InterleaveStep) else None
    dataset = build_source(spec.source, generator=generator, interleave=lead)
    features_spec = dataset.element_spec[0]
    shape = getattr(features_spec, "shape", None)
    if shape is None or shape.rank != 3:
        got = "a structure" if shape is None else f"shape {shape}"
        raise PreviewError(
            "previews need image-shaped features [height, width, channels]; the source "
            f"yields features of {got}. Use an image source (an image folder, or a "
            "synthetic source with a 3-D shape such as [32, 32, 3]); gray images need a "
            "channel axis, e.g. [28, 28, 1]."
        )
    elements = []
    try:
        for element in dataset.take(n):
            elements.append(element)
    except _tf().errors.OpError as exc:
        where = locate_bad_input(spec.source)
        raise PreviewError(
            f"reading sample {len(elements)} of the source failed: {describe_error(exc)}"
            f"{f' ({where})' if where else ''}. "
            "A file of the source may be corrupt or not what the source expects (an image "
            "folder holds only JPEG, PNG, BMP or GIF images): replace or remove it, or point "
            "the source at other files"
        ) from None
    if not elements:
        raise PreviewError("the source yielded no elements; check its files or num_examples")
    return elements


def _stage_seed(seed: int, stage: int, k: int) -> Any:
    """The seed of sample `k` at stage `stage`, derived from the user's `seed`."""
    tf = _tf()
    base = tf.constant([seed, stage], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, k)


def _apply_to_stack(
    xs: list[Any], ys: list[Any], augmentations: tuple[AugParams, ...], seed: Any
) -> tuple[list[Any], list[Any]]:
    tf = _tf()
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise PreviewError(
            f"samples of different shapes {sorted(shapes)} cannot be stacked into a batch; "
            "add a resize or random_crop augmentation before the batch step"
        )
    features, labels = apply_augmentations(tf.stack(xs), tf.stack(ys), augmentations, seed)
    return list(tf.unstack(features)), list(tf.unstack(labels))


def _sample(
    k: int, *, original: Any, original_label: Any, augmented: Any, label: Any
) -> PreviewSample:
    before = np.asarray(original)
    after = np.asarray(augmented)
    return PreviewSample(
        index=k,
        original=to_display(before),
        augmented=to_display(after),
        original_label=int(np.asarray(original_label).reshape(-1)[0]),
        label=_label_value(np.asarray(label)),
        original_shape=tuple(before.shape),
        original_dtype=str(before.dtype),
        augmented_shape=tuple(after.shape),
        augmented_dtype=str(after.dtype),
    )


def _label_value(label: np.ndarray) -> int | float | tuple[float, ...]:
    if label.ndim == 0 or label.size == 1:
        value = label.reshape(-1)[0]
        return int(value) if np.issubdtype(label.dtype, np.integer) else float(value)
    return tuple(float(v) for v in label.reshape(-1))


def label_text(label: int | float | tuple[float, ...]) -> str:
    """A label for display: the class, or the main classes of a soft label with weights."""
    if not isinstance(label, tuple):
        return f"{label:g}" if isinstance(label, float) else str(label)
    weights = np.asarray(label, dtype=np.float64)
    order = np.argsort(-weights, kind="stable")
    shown = [i for i in order[:3] if weights[i] >= 0.005] or [int(order[0])]
    return " + ".join(f"{i} ({weights[i]:.0%})" for i in shown)


def to_display(features: Any) -> np.ndarray:
    """An `[H, W, C]` array as uint8 `(H, W, 3)` or `(H, W)`.

    uint8 is kept; other integers in 0-255 are taken as pixel values; floats
    in 0-1 (give or take 0.5, clipped) are scaled by 255; anything else (e.g. mean/std-normalized values)
    is rescaled min-max. 1 channel shows as gray, 3 as RGB, 4 as RGB without
    alpha, any other count shows its first channel as gray.

    Raises:
        PreviewError: the array is not `[H, W, C]`.
    """
    array = np.asarray(features)
    if array.ndim != 3:
        raise PreviewError(
            f"only images [height, width, channels] can be displayed, received shape {array.shape}"
        )
    channels = array.shape[-1]
    array = array[..., :3] if channels in (3, 4) else array[..., 0]
    if array.dtype == np.uint8:
        return array.copy()
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if np.issubdtype(array.dtype, np.integer) and low >= 0 and high <= 255:
        scaled = values
    elif np.issubdtype(array.dtype, np.floating) and low >= -0.5 and high <= 1.5:
        # 0-1 images; TF's photometric ops do not clip floats, so show 1.1 as white
        scaled = np.clip(values, 0.0, 1.0) * 255.0
    elif high > low:
        scaled = (values - low) / (high - low) * 255.0
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


# --- batch summary ---------------------------------------------------------------


def batch_summary(spec: PipelineSpec, *, generator: Any = None) -> BatchSummary:
    """Figures of the first batch of `build(spec)`; without a batch step, of the first
    `UNBATCHED_SUMMARY_ELEMENTS` elements.

    Raises:
        PreviewError: the pipeline yields no elements.
    """
    dataset = build(spec, generator=generator)
    batched = is_batched(spec)
    if batched:
        first = list(dataset.take(1))
        if not first:
            raise PreviewError("the pipeline yielded no batch; check the source and take/batch")
        features, labels = (np.asarray(t) for t in first[0])
        shape, count = features.shape, examples_in(first[0], batched=True)
        values = features
    else:
        elements = list(dataset.take(UNBATCHED_SUMMARY_ELEMENTS))
        if not elements:
            raise PreviewError("the pipeline yielded no elements; check the source and take")
        shape, count = np.asarray(elements[0][0]).shape, len(elements)
        values = np.concatenate([np.asarray(x).reshape(-1) for x, _ in elements])
        labels = np.stack([np.asarray(y) for _, y in elements])
        features = np.asarray(elements[0][0])
    numeric = np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_
    stats = values.astype(np.float64) if numeric and values.size else None
    soft = np.issubdtype(labels.dtype, np.floating) and labels.ndim >= 2
    classes = labels.reshape(len(labels), -1).argmax(axis=1) if soft else labels.reshape(-1)
    return BatchSummary(
        batched=batched,
        element_count=int(count),
        features_shape=tuple(int(d) for d in shape),
        features_dtype=str(features.dtype),
        minimum=None if stats is None else float(stats.min()),
        maximum=None if stats is None else float(stats.max()),
        mean=None if stats is None else float(stats.mean()),
        label_counts={int(c): n for c, n in sorted(Counter(classes.tolist()).items())},
        label_shape=tuple(int(d) for d in labels.shape),
        label_dtype=str(labels.dtype),
        soft_labels=bool(soft),
    )


# --- the page's job ------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What the Preview page shows: the samples and the first batch's figures, each with
    the reason it could not be made instead (a message that names the fix).

    `class_names` names the classes of an image-folder source (label i is
    `class_names[i]`); `samples_source` says where the samples came from when it is
    not the design's source (the demo images, for a synthetic source).
    """

    samples: tuple[PreviewSample, ...] = ()
    samples_error: str | None = None
    summary: BatchSummary | None = None
    summary_error: str | None = None
    class_names: tuple[str, ...] = ()
    samples_source: str | None = None

    def label_name(self, label: int | float | tuple[float, ...]) -> str:
        """`label_text(label)` with class names where the source has them ("cat (62%) +
        dog (38%)" for a soft label)."""
        text = label_text(label)
        if not self.class_names:
            return text
        return re.sub(
            r"\b(\d+)\b(?![.%])",
            lambda m: (
                self.class_names[int(m.group(1))]
                if int(m.group(1)) < len(self.class_names)
                else m.group(1)
            ),
            text,
        )


DEMO_IMAGES = "{data_dir}/demo/images"
DISPLAY_MIN_PX = 192  # a preview image's shorter side is enlarged to at least this


def enlarged(image: np.ndarray, min_px: int = DISPLAY_MIN_PX) -> np.ndarray:
    """`image` (a `to_display` array) repeated by a whole factor so that its shorter side is
    at least `min_px`: nearest-neighbour, so a small image stays sharp, not blurred."""
    factor = max(1, -(-min_px // max(1, min(image.shape[:2]))))
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def pair_image(sample: PreviewSample, min_px: int = DISPLAY_MIN_PX, gap: int = 8) -> np.ndarray:
    """Original and augmented side by side in one RGB image (so a full-screen view shows
    the pair), each enlarged to at least `min_px`, a white gap between."""
    left, right = (_rgb(enlarged(a, min_px)) for a in (sample.original, sample.augmented))
    height = max(left.shape[0], right.shape[0])
    left, right = (np.pad(a, ((0, height - a.shape[0]), (0, 0), (0, 0)), constant_values=255)
                   for a in (left, right))  # fmt: skip
    space = np.full((height, gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, space, right], axis=1)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def demo_samples_source(spec: PipelineSpec) -> dict[str, Any] | None:
    """For a synthetic source of 3-channel images (random noise to look at), the demo
    image folder at the same size, to show the design's augmentations on real pictures;
    None for any other source."""
    source = spec.source
    shape = tuple(getattr(source, "shape", ()) or ())
    if source.type != "synthetic" or len(shape) != 3 or shape[-1] != 3:
        return None
    return {"type": "image_folder", "path": DEMO_IMAGES, "image_size": [shape[0], shape[1]]}


def preview_job(
    spec_json: str,
    n: int,
    seed: int,
    only: tuple[str, dict[str, Any]] | None = None,
    *,
    samples_from: dict[str, Any] | None = None,
    progress: Any = None,
) -> Preview:
    """`preview_samples` and `batch_summary` as one isolated job (`pipeline_core.isolate`).

    Both run the user's source and augmentations (the batch, the whole pipeline), so a
    page runs them in a child process, where a corrupt file, a crash, a hang or too much
    memory cannot take the server down; one child imports TensorFlow once for both.
    `samples_from` (a source's JSON data) takes the samples from another source (e.g.
    `demo_samples_source(spec)`); the batch is always the design's own.
    """
    spec = load_spec(spec_json)
    samples_spec, samples_source = spec, None
    if samples_from is not None:
        samples_spec = load_spec({**spec.to_dict(), "source": samples_from})
        samples_source = samples_from.get("path") or samples_from["type"]
    if progress is not None:
        progress("augmenting samples")
    try:
        samples = tuple(preview_samples(samples_spec, n=n, seed=seed, only=only))
        samples_error = None
    except Exception as exc:  # shown on the page; the batch may still work
        _log_unexpected("the samples", exc)
        samples, samples_error = (), describe_error(exc)
    if progress is not None:
        progress("reading the first batch")
    try:
        summary, summary_error = batch_summary(spec), None
    except Exception as exc:  # shown on the page; the samples may still work
        _log_unexpected("the first batch", exc)
        summary_error = f"reading the first batch failed: {describe_error(exc)}"
        if isinstance(exc, _tf().errors.OpError):  # a file the pipeline could not read?
            where = locate_bad_input(spec.source)
            summary_error += f" ({where})" if where else ""
        summary = None
    return Preview(
        samples,
        samples_error,
        summary,
        summary_error,
        class_names=_class_names(samples_spec),
        samples_source=samples_source,
    )


def _class_names(spec: PipelineSpec) -> tuple[str, ...]:
    """The class folders of an image-folder source (label order), else none."""
    if spec.source.type != "image_folder":
        return ()
    try:
        return tuple(list_image_folder(str(resolve_path(spec.source.path)))[0])
    except (OSError, PipelineLabError):
        return ()


def _log_unexpected(what: str, exc: BaseException) -> None:
    """Leave the traceback of an error that is not a `PipelineLabError` in the log (the
    child's stderr is the server's): it is a data error TensorFlow raised or a bug."""
    if not isinstance(exc, PipelineLabError):
        logging.getLogger(__name__).warning("preview: %s failed", what, exc_info=exc)
