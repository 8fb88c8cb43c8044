"""One map step's augmentations as one plain Python function, written as code.

`augment_source(augmentations, features=...)` writes the function a person
would write by hand::

    def augment(image, label, seed):
        image = tf.image.stateless_random_flip_left_right(image, seed=seed)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.stateless_random_brightness(image, max_delta=0.2, seed=seed + [0, 1])
        image = tf.clip_by_value(image, 0.0, 1.0)
        return image, label

TensorFlow's own kernels are called by name wherever they exist; the rest
call the helpers of `pipeline_core.augment_ops`. `augment_function` compiles
the very same text for the builder and the preview, and the exported script
embeds it, so the pipeline Pipeline Lab measures and the code it hands out
cannot differ.

Values and dtypes, as TensorFlow's image ops define them: integer images hold
0-255, float images 0-1. An integer image is converted to float32 once, before
the first op that needs floats, and back to its dtype once, at the end of the
function (saturating), so consecutive ops never round-trip through uint8.
Values of an integer image are clipped to 0-1 only where they leave the chain
as floats (`convert_dtype`, `normalize`) - what saturating at every op would
have given, without paying for it at every op. `resize` returns float32 (as
`tf.image.resize` does). One element `[H, W, C]` gets TF's `stateless_random_*`
ops; a batch `[N, H, W, C]` (a map after batch) gets one random value per
image, which TF's ops (one value per call) do not give, through the helpers.
"""

from __future__ import annotations

import dis
import functools
import inspect
import linecache
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_core import augment_ops
from pipeline_core._tf import tf as _tf
from pipeline_core.augment import AUGMENTATIONS, AugParams
from pipeline_core.errors import PipelineLabError

_INDENT = "    "


class AugmentError(PipelineLabError):
    """An augmentation cannot work on these features (the message names the fix)."""


@dataclass(frozen=True)
class Features:
    """What a map step receives: the features' dtype name and static shape (None = unknown)."""

    dtype: str
    shape: tuple[int | None, ...] | None

    @property
    def batched(self) -> bool:
        """A batch of images `[N, H, W, C]` (a map placed after the batch step)."""
        return self.shape is not None and len(self.shape) == 4

    def text(self) -> str:
        if self.shape is None:
            return "<unknown>"
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"({dims}{',' if len(self.shape) == 1 else ''})"


@dataclass
class _Writer:
    """The code of one function being written, and what is known about `image` at each line."""

    dtype: str
    origin: str
    shape: tuple[int | None, ...] | None
    seed: str = "seed"
    lines: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    unclipped: bool = False  # float values of an integer image may have left 0-1

    @property
    def batched(self) -> bool:
        return self.shape is not None and len(self.shape) == 4

    @property
    def integer_origin(self) -> bool:
        return _is_integer(self.origin)

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def call(self, helper: str, args: str, *, returns: str = "image") -> None:
        if helper not in self.helpers:
            self.helpers.append(helper)
        self.emit(f"{returns} = {helper}({args})")

    def shape_text(self) -> str:
        return Features(self.dtype, self.shape).text()

    def need_float(self) -> None:
        """Convert an integer image to float32 0-1, once."""
        if _is_integer(self.dtype):
            self.emit("image = tf.image.convert_image_dtype(image, tf.float32)")
            self.dtype = "float32"

    def clip_if_needed(self) -> None:
        """Saturate float values of an integer image where they must be 0-1 again."""
        if self.unclipped:
            self.emit("image = tf.clip_by_value(image, 0.0, 1.0)")
            self.unclipped = False

    def photometric(self) -> None:
        """After an op that can push an integer image's float values out of 0-1."""
        self.unclipped = self.unclipped or self.integer_origin

    # --- static checks with the messages users see ----------------------------

    def need_image(self, what: str) -> None:
        if self.shape is not None and len(self.shape) not in (3, 4):
            raise AugmentError(
                f"{what} needs image features [height, width, channels] or a batch "
                f"[batch, height, width, channels]; received features of shape "
                f"{self.shape_text()}. Use an image source or give the features a channel "
                "axis, e.g. [28, 28, 1]."
            )

    def need_channels(self, allowed: tuple[int, ...], what: str) -> None:
        self.need_image(what)
        channels = None if self.shape is None else self.shape[-1]
        if channels is not None and channels not in allowed:
            wanted = " or ".join(str(c) for c in allowed)
            raise AugmentError(
                f"{what} needs images with {wanted} channels; received shape "
                f"{self.shape_text()}. Remove this augmentation or use an RGB source."
            )

    def need_batch(self, what: str) -> None:
        if not self.batched:
            raise AugmentError(
                f"{what} mixes images of a batch, so it needs [batch, height, width, channels] "
                f"features; received shape {self.shape_text()}. Add a batch step before this map."
            )

    def set_size(self, height: int | None, width: int | None) -> None:
        if self.shape is not None:
            self.shape = (*self.shape[:-3], height, width, self.shape[-1])


def _is_integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _args(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# --- one writer per augmentation ------------------------------------------------
# Each takes (writer, params, seed expression) and appends its lines.

Emit = Callable[[_Writer, dict[str, Any], str], None]
EMITTERS: dict[str, Emit] = {}


def _emits(name: str) -> Callable[[Emit], Emit]:
    def register(fn: Emit) -> Emit:
        EMITTERS[name] = fn
        return fn

    return register


def _flip(w: _Writer, p: dict[str, Any], seed: str, *, side: str, axis: int) -> None:
    w.need_image(f"random_flip_{side}")
    probability = p["probability"]
    if probability <= 0.0:
        return
    if probability >= 1.0:
        w.emit(f"image = tf.image.flip_{side}(image)")
    elif probability == 0.5:
        w.emit(f"image = tf.image.stateless_random_flip_{side}(image, seed={seed})")
    else:
        w.call("random_flip", f"image, {seed}, probability={probability!r}, axis={axis}")


@_emits("random_flip_left_right")
def _flip_left_right(w: _Writer, p: dict[str, Any], seed: str) -> None:
    _flip(w, p, seed, side="left_right", axis=2)


@_emits("random_flip_up_down")
def _flip_up_down(w: _Writer, p: dict[str, Any], seed: str) -> None:
    _flip(w, p, seed, side="up_down", axis=1)


@_emits("random_brightness")
def _brightness(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("random_brightness")
    w.need_float()
    if w.batched:
        w.call("random_brightness_batch", f"image, {seed}, {_args(max_delta=p['max_delta'])}")
    else:
        w.emit(
            f"image = tf.image.stateless_random_brightness(image, "
            f"{_args(max_delta=p['max_delta'])}, seed={seed})"
        )
    w.photometric()


def _range(p: dict[str, Any]) -> str:
    return _args(lower=round(1.0 - p["factor"], 6), upper=round(1.0 + p["factor"], 6))


@_emits("random_contrast")
def _contrast(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("random_contrast")
    if p["factor"] == 0.0:
        return
    w.need_float()
    if w.batched:
        w.call("random_contrast_batch", f"image, {seed}, {_range(p)}")
    else:
        w.emit(f"image = tf.image.stateless_random_contrast(image, {_range(p)}, seed={seed})")
    w.photometric()


def _hsv(w: _Writer, seed: str, *, what: str, args: str, noop: bool) -> None:
    """Saturation and hue: TF's HSV kernels on one example, a per-image helper on a batch."""
    w.need_channels((3,), what)
    if noop:
        return
    w.need_float()
    w.clip_if_needed()
    if w.batched:
        w.call(f"{what}_batch", f"image, {seed}, {args}")
    else:
        w.emit(f"image = tf.image.stateless_{what}(image, {args}, seed={seed})")


@_emits("random_saturation")
def _saturation(w: _Writer, p: dict[str, Any], seed: str) -> None:
    _hsv(w, seed, what="random_saturation", args=_range(p), noop=p["factor"] == 0.0)


@_emits("random_hue")
def _hue(w: _Writer, p: dict[str, Any], seed: str) -> None:
    args = _args(max_delta=p["max_delta"])
    _hsv(w, seed, what="random_hue", args=args, noop=p["max_delta"] == 0.0)


@_emits("random_crop")
def _crop(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("random_crop")
    height, width = p["height"], p["width"]
    if w.shape is not None:
        in_h, in_w = w.shape[-3], w.shape[-2]
        if (in_h is not None and in_h < height) or (in_w is not None and in_w < width):
            raise AugmentError(
                f"random_crop size {height}x{width} is larger than the image {in_h}x{in_w}; "
                "lower height/width or resize the images first"
            )
    if w.batched:
        w.call("random_crop_batch", f"image, {seed}, {_args(height=height, width=width)}")
    else:
        channels = None if w.shape is None else w.shape[-1]
        depth = "tf.shape(image)[-1]" if channels is None else str(channels)
        w.emit(
            f"image = tf.image.stateless_random_crop(image, size=[{height}, {width}, {depth}], "
            f"seed={seed})"
        )
    w.set_size(height, width)


@_emits("central_crop")
def _central_crop(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("central_crop")
    fraction = p["fraction"]
    if fraction >= 1.0:
        return
    w.emit(f"image = tf.image.central_crop(image, central_fraction={fraction!r})")
    if w.shape is not None:
        kept = [None if d is None else d - int((d - d * fraction) / 2) * 2 for d in w.shape[-3:-1]]
        w.set_size(*kept)


@_emits("resize")
def _resize(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("resize")
    extra = "" if p["method"] == "bilinear" else f", method={p['method']!r}"
    extra += ", antialias=True" if p["antialias"] else ""
    call = f"tf.image.resize(image, [{p['height']}, {p['width']}]{extra})"
    if p["method"] == "nearest":
        w.emit(f"image = {call}")
    elif _is_integer(w.dtype):
        w.emit(f"image = {call} / 255.0  # float32 0-1")
        w.dtype = "float32"
        if p["method"] in ("bicubic", "lanczos3"):
            w.photometric()  # these overshoot
    else:
        w.emit(f"image = {call}")
        w.dtype = "float32"
    w.set_size(p["height"], p["width"])


def _geometric(w: _Writer, p: dict[str, Any], seed: str, *, helper: str, first: str) -> None:
    w.need_image(helper)
    args = {first: p[first]}
    for key, default in (("fill_mode", "constant"), ("interpolation", "bilinear")):
        if p[key] != default:
            args[key] = p[key]
    w.call(helper, f"image, {seed}, {_args(**args)}")


@_emits("random_rotation")
def _rotation(w: _Writer, p: dict[str, Any], seed: str) -> None:
    _geometric(w, p, seed, helper="random_rotation", first="max_degrees")


@_emits("random_zoom")
def _zoom(w: _Writer, p: dict[str, Any], seed: str) -> None:
    _geometric(w, p, seed, helper="random_zoom", first="max_zoom")


@_emits("random_erasing")
def _erasing(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_image("random_erasing")
    fill = p["fill_value"] * 255.0 if _is_integer(w.dtype) else p["fill_value"]
    w.call(
        "random_erasing",
        f"image, {seed}, {_args(size=p['size'], count=p['count'], fill_value=round(fill, 6))}",
    )


@_emits("gaussian_noise")
def _noise(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_float()
    w.emit(
        f"image = image + tf.random.stateless_normal(tf.shape(image), seed={seed}, "
        f"stddev={p['stddev']!r}, dtype=image.dtype)"
    )
    if p["clip"]:
        w.emit("image = tf.clip_by_value(image, 0.0, 1.0)")
        w.unclipped = False
    else:
        w.photometric()


@_emits("jpeg_quality")
def _jpeg(w: _Writer, p: dict[str, Any], seed: str) -> None:
    if w.shape is not None and len(w.shape) != 3:
        raise AugmentError(
            f"jpeg_quality re-encodes one image [height, width, channels] at a time; "
            f"received shape {w.shape_text()}. Move this map before the batch step."
        )
    w.need_channels((1, 3), "jpeg_quality")
    if w.dtype != "uint8":
        w.emit("image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)")
        w.dtype, w.unclipped = "uint8", False
    low, high = p["min_quality"], p["max_quality"]
    if low >= high:
        w.emit(f"image = tf.image.adjust_jpeg_quality(image, {low})")
    else:
        w.emit(
            f"image = tf.image.stateless_random_jpeg_quality(image, min_jpeg_quality={low}, "
            f"max_jpeg_quality={high}, seed={seed})"
        )
    if w.shape is not None and None not in w.shape:
        w.emit(f"image = tf.ensure_shape(image, {list(w.shape)})")


@_emits("normalize")
def _normalize(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_float()
    w.clip_if_needed()
    if w.dtype != "float32":
        w.emit("image = tf.cast(image, tf.float32)")
    if p["mode"] == "mean_std":
        channels = None if w.shape is None else w.shape[-1]
        for label in ("mean", "std"):
            values = p[label]
            if len(values) != 1 and channels is not None and len(values) != channels:
                raise AugmentError(
                    f"normalize {label} has {len(values)} values but the features have "
                    f"{channels} channels; give one value or one per channel"
                )
        mean = list(p["mean"]) if len(p["mean"]) > 1 else p["mean"][0]
        std = list(p["std"]) if len(p["std"]) > 1 else p["std"][0]
        w.emit(f"image = (image - {mean!r}) / {std!r}")
    w.dtype = w.origin = "float32"


@_emits("convert_dtype")
def _convert_dtype(w: _Writer, p: dict[str, Any], seed: str) -> None:
    target = p["dtype"]
    if not _is_integer(target):
        w.clip_if_needed()
    if w.dtype != target:
        saturate = ", saturate=True" if _is_integer(target) else ""
        w.emit(f"image = tf.image.convert_image_dtype(image, tf.{target}{saturate})")
    w.dtype = w.origin = target
    w.unclipped = False


@_emits("mixup")
def _mixup(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_batch("mixup")
    w.need_float()
    args = _args(alpha=p["alpha"], num_classes=p["num_classes"])
    w.call("mixup", f"image, label, {seed}, {args}", returns="image, label")


@_emits("cutmix")
def _cutmix(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.need_batch("cutmix")
    args = _args(alpha=p["alpha"], num_classes=p["num_classes"])
    w.call("cutmix", f"image, label, {seed}, {args}", returns="image, label")


@_emits("sleep")
def _sleep(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.call("sleep", f"image, {_args(ms=p['ms'])}")


@_emits("cpu_work")
def _cpu_work(w: _Writer, p: dict[str, Any], seed: str) -> None:
    w.call("cpu_work", f"image, {seed}, {_args(iterations=p['iterations'], size=p['size'])}")


# --- whole functions ------------------------------------------------------------


@dataclass(frozen=True)
class AugmentCode:
    """The source of one augment function and the `augment_ops` helpers it calls."""

    name: str
    source: str
    helpers: tuple[str, ...]


def augment_source(
    augmentations: Sequence[AugParams], *, features: Features, name: str = "augment"
) -> AugmentCode:
    """Write `def <name>(image, label, seed): ...` applying `augmentations` in order.

    Args:
        augmentations: parameter models, as in `MapStep.augmentations`.
        features: dtype and static shape of what the map receives (`batched`
            when 4-D: one random value per image of the batch).
        name: the function's name.

    Raises:
        AugmentError: an augmentation cannot work on these features; the message
            says why and what to change.
    """
    w = _Writer(dtype=features.dtype, origin=features.dtype, shape=features.shape)
    body: list[str] = []
    for position, aug in enumerate(augmentations):
        entry = AUGMENTATIONS.get(getattr(aug, "name", None))
        if entry is None or not isinstance(aug, entry.params):
            raise AugmentError(
                f"expected augmentation parameter models (e.g. from MapStep.augmentations), "
                f"received {aug!r}; build one with AUGMENTATIONS[name].params(...)"
            )
        # Position k's seed is the element's seed moved k along its second word: one add,
        # and Philox streams that do not overlap (cheaper than stateless_split + slices).
        seed = "seed" if position == 0 else f"seed + [0, {position}]"
        EMITTERS[aug.name](w, aug.model_dump(exclude={"name"}), seed)
    if w.dtype != w.origin:
        saturate = ", saturate=True" if _is_integer(w.origin) else ""
        w.emit(f"image = tf.image.convert_image_dtype(image, tf.{w.origin}{saturate})")
    body = w.lines
    what = "a batch" if w.batched else "one example"
    doc = f'"""Augment {what}: {", ".join(a.name for a in augmentations)}."""'
    lines = [f"def {name}(image, label, seed):", doc, *body, "return image, label"]
    source = lines[0] + "\n" + "".join(f"{_INDENT}{line}\n" for line in lines[1:])
    return AugmentCode(name=name, source=source, helpers=tuple(w.helpers))


def helper_source(helpers: Sequence[str]) -> str:
    """Source of the `augment_ops` helpers named (and those they call), in module order."""
    functions = _needed_functions(augment_ops, list(helpers))
    return "\n\n\n".join(inspect.getsource(fn).rstrip() for fn in functions)


def _needed_functions(module: types.ModuleType, roots: list[str]) -> list[Callable[..., Any]]:
    """The module functions `roots` call, transitively, in source order."""
    own = {
        name: fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and fn.__module__ == module.__name__
    }
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(n for n in _global_names(own[name].__code__) if n in own)
    return sorted((own[n] for n in seen), key=lambda fn: fn.__code__.co_firstlineno)


def _global_names(code: types.CodeType) -> set[str]:
    """Global names loaded by `code` and the functions/lambdas nested in it."""
    names = {
        ins.argval
        for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


@functools.lru_cache(maxsize=256)
def _compile(source: str, name: str) -> Callable[..., Any]:
    filename = f"<pipeline_core.augment_code {name} {abs(hash(source)):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(vars(augment_ops))
    exec(compile(source, filename, "exec"), namespace)  # code we wrote
    return _tf().autograph.experimental.do_not_convert(namespace[name])


def augment_function(
    augmentations: Sequence[AugParams], *, features: Features
) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The compiled `augment(image, label, seed)` of `augment_source` (cached by its text)."""
    code = augment_source(augmentations, features=features)
    return _compile(code.source, code.name)


def features_of(tensor: Any) -> Features:
    """`Features` of a tensor or a `tf.TensorSpec`."""
    shape = tensor.shape
    dims = None if shape.rank is None else tuple(shape.as_list())
    return Features(dtype=tensor.dtype.name, shape=dims)


def apply_augmentations(
    features: Any, label: Any, augmentations: Sequence[AugParams], seed: Any
) -> tuple[Any, Any]:
    """Apply `augmentations` in order to one element or one batch (eagerly or in `Dataset.map`).

    Args:
        features: `[H, W, C]` image or `[N, H, W, C]` batch (any shape for the
            shape-agnostic ones such as `sleep` or `normalize`).
        label: passed through, except by label-mixing augmentations (mixup, cutmix).
        augmentations: parameter-model instances, as in `MapStep.augmentations`.
        seed: shape-[2] integer tensor; the same seed gives the same output.

    Returns:
        `(features, label)`.
    """
    tf = _tf()
    features = tf.convert_to_tensor(features)
    label = tf.convert_to_tensor(label)
    seed = tf.reshape(tf.cast(seed, tf.int64), [2])
    fn = augment_function(augmentations, features=features_of(features))
    return fn(features, label, seed)
