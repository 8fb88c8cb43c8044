"""Pure TensorFlow augmentation functions: the same code runs in the pipeline,
the preview and the exported script.

Conventions (see `pipeline_core.augment` for the registry that names them):

- An op is `op(x, seed, **params) -> x`; a label-mixing op (in `LABEL_OPS`) is
  `op(x, y, seed, **params) -> (x, y)`. `seed` is a shape-[2] int32/int64
  tensor fed to `tf.random.stateless_*` ops, so the same seed gives the same
  output and a new seed re-rolls it.
- `x` is one image `[H, W, C]` or a batch `[N, H, W, C]`; random values are
  drawn per image, so each image of a batch gets its own flip, angle, ...
- Integer images hold pixel values 0-255; they are computed in float32 and
  converted back to their dtype with rounding and saturation. Float images are
  on a 0-1 scale; photometric ops clip their result to it. `normalize`,
  `convert_dtype` and the soft labels of `mixup`/`cutmix` change dtype on
  purpose.
- Every function uses only `tf`, `np`, stdlib imported in its body and other
  functions of this module: `pipeline_core.augment.export_source` copies their
  source text into a standalone script. Keep module-level state to `OPS` and
  `LABEL_OPS`, and keep annotations out of signatures.

This module imports TensorFlow when imported; nothing imports it at package
import time.
"""

import numpy as np  # noqa: F401  (exported scripts import numpy as np too)

from pipeline_core._tf import tf as _load_tf

tf = _load_tf()

# --- helpers ------------------------------------------------------------------


def _as_batch(x, what):
    """`x` as a batch `[N, H, W, C]` and whether it was a single image."""
    rank = x.shape.rank
    if rank == 3:
        return tf.expand_dims(x, 0), True
    if rank == 4:
        return x, False
    raise ValueError(
        f"{what} needs image features [height, width, channels] or a batch "
        f"[batch, height, width, channels]; received features of shape {x.shape}. "
        "Use an image source or give the features a channel axis, e.g. [28, 28, 1]."
    )


def _restore_rank(xb, single):
    """Undo `_as_batch`."""
    return xb[0] if single else xb


def _check_channels(x, allowed, what):
    """Raise a clear error when the (static) channel count is not in `allowed`."""
    channels = x.shape[-1]
    if channels is not None and channels not in allowed:
        wanted = " or ".join(str(c) for c in allowed)
        raise ValueError(
            f"{what} needs images with {wanted} channels; received shape {x.shape}. "
            "Remove this augmentation or use an RGB source."
        )


def _to_unit(x):
    """float32 on a 0-1 scale: integers are divided by 255, floats are cast."""
    if x.dtype.is_integer:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def _from_unit(xf, dtype, clip=True):
    """Back from `_to_unit`: integers rounded and saturated, floats clipped to 0-1."""
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(xf * 255.0), dtype)
    if clip:
        xf = tf.clip_by_value(xf, 0.0, 1.0)
    return tf.cast(xf, dtype)


def _to_float(x):
    """float32 on the image's own scale (for geometric resampling and mixing)."""
    return tf.cast(x, tf.float32)


def _from_float(xf, dtype):
    """Back from `_to_float`: integers rounded and saturated, floats cast."""
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(xf), dtype)
    return tf.cast(xf, dtype)


def _sub_seed(seed, k):
    """An independent seed for the k-th random draw of one op."""
    return tf.random.experimental.stateless_fold_in(seed, k)


def _per_image_uniform(xb, seed, minval, maxval):
    """One uniform value per image, shaped `[N, 1, 1, 1]` to broadcast over pixels."""
    n = tf.shape(xb)[0]
    return tf.random.stateless_uniform([n, 1, 1, 1], seed, minval=minval, maxval=maxval)


def _box_mask(xb, seed, box_h, box_w):
    """A `[N, H, W, 1]` bool mask, one box per image at a random position.

    `box_h`/`box_w` are int32 tensors of shape `[N]` (or scalars); boxes lie
    fully inside the image.
    """
    shape = tf.shape(xb)
    n, height, width = shape[0], shape[1], shape[2]
    box_h = tf.broadcast_to(tf.clip_by_value(box_h, 0, height), [n])
    box_w = tf.broadcast_to(tf.clip_by_value(box_w, 0, width), [n])
    u = tf.random.stateless_uniform([2, n], seed)
    top = tf.cast(tf.floor(u[0] * tf.cast(height - box_h + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(width - box_w + 1, tf.float32)), tf.int32)
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]
    top, left = top[:, None, None, None], left[:, None, None, None]
    box_h, box_w = box_h[:, None, None, None], box_w[:, None, None, None]
    inside_rows = (rows >= top) & (rows < top + box_h)
    inside_cols = (cols >= left) & (cols < left + box_w)
    return inside_rows & inside_cols


def _projective(xb, transforms, fill_mode, interpolation):
    """Resample a batch with one 8-number projective transform per image."""
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=_to_float(xb),
        transforms=transforms,
        output_shape=tf.shape(xb)[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation.upper(),
        fill_mode=fill_mode.upper(),
    )
    out = tf.ensure_shape(out, xb.shape)
    return _from_float(out, xb.dtype)


def _image_size(xb):
    """(height, width) of a batch as float32 scalars."""
    shape = tf.shape(xb)
    return tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)


def _soft_labels(y, num_classes, what):
    """Labels as float32 `[N, num_classes]`: integer labels one-hot, soft ones kept."""
    if y.dtype.is_floating and y.shape.rank == 2:
        return tf.cast(y, tf.float32)
    labels = tf.reshape(tf.cast(y, tf.int32), [-1])
    check = tf.debugging.assert_less(
        labels,
        num_classes,
        message=f"{what}: a label is >= num_classes={num_classes}; "
        "set num_classes to the number of classes of the source",
    )
    with tf.control_dependencies([check]):
        return tf.one_hot(labels, num_classes, dtype=tf.float32)


def _beta(seed, n, alpha):
    """`n` draws of Beta(alpha, alpha) from two gamma draws."""
    g1 = tf.random.stateless_gamma([n], _sub_seed(seed, 0), alpha)
    g2 = tf.random.stateless_gamma([n], _sub_seed(seed, 1), alpha)
    total = g1 + g2
    return tf.where(total > 0, g1 / tf.maximum(total, 1e-12), tf.ones_like(total))


def _partner(seed, n):
    """A random permutation of `range(n)`: the image each one is mixed with."""
    return tf.argsort(tf.random.stateless_uniform([n], _sub_seed(seed, 2)))


def _need_batch(x, what):
    if x.shape.rank != 4:
        raise ValueError(
            f"{what} mixes images of a batch, so it needs [batch, height, width, channels] "
            f"features; received shape {x.shape}. Add a batch step before this map."
        )


# --- geometric ------------------------------------------------------------------


def flip_left_right(x, seed, probability=0.5):
    """Mirror each image horizontally with chance `probability`."""
    xb, single = _as_batch(x, "random_flip_left_right")
    flip = _per_image_uniform(xb, seed, 0.0, 1.0) < probability
    return _restore_rank(tf.where(flip, tf.reverse(xb, axis=[2]), xb), single)


def flip_up_down(x, seed, probability=0.5):
    """Mirror each image vertically with chance `probability`."""
    xb, single = _as_batch(x, "random_flip_up_down")
    flip = _per_image_uniform(xb, seed, 0.0, 1.0) < probability
    return _restore_rank(tf.where(flip, tf.reverse(xb, axis=[1]), xb), single)


def crop(x, seed, height=24, width=24):
    """Cut a `height` x `width` window at a random position of each image."""
    xb, single = _as_batch(x, "random_crop")
    in_h, in_w = xb.shape[1], xb.shape[2]
    if (in_h is not None and in_h < height) or (in_w is not None and in_w < width):
        raise ValueError(
            f"random_crop size {height}x{width} is larger than the image {in_h}x{in_w}; "
            "lower height/width or resize the images first"
        )
    shape = tf.shape(xb)
    n = shape[0]
    fits = tf.debugging.assert_greater_equal(
        shape[1:3],
        tf.constant([height, width]),
        message=f"random_crop size {height}x{width} is larger than an image; "
        "lower height/width or resize the images first",
    )
    with tf.control_dependencies([fits]):
        u = tf.random.stateless_uniform([2, n], seed)
    top = tf.cast(tf.floor(u[0] * tf.cast(shape[1] - height + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(shape[2] - width + 1, tf.float32)), tf.int32)
    rows = top[:, None] + tf.range(height)[None, :]
    cols = left[:, None] + tf.range(width)[None, :]
    out = tf.gather(xb, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    return _restore_rank(out, single)


def central_crop(x, seed, fraction=0.875):
    """Keep the central `fraction` of each side (deterministic; `seed` unused)."""
    xb, single = _as_batch(x, "central_crop")
    return _restore_rank(tf.image.central_crop(xb, fraction), single)


def resize(x, seed, height=32, width=32, method="bilinear", antialias=False):
    """Resize to `height` x `width` with `method` (deterministic; `seed` unused)."""
    xb, single = _as_batch(x, "resize")
    out = tf.image.resize(xb, [height, width], method=method, antialias=antialias)
    return _restore_rank(_from_float(out, x.dtype), single)


def rotation(x, seed, max_degrees=15.0, fill_mode="constant", interpolation="bilinear"):
    """Rotate each image by a random angle in [-max_degrees, max_degrees] about its center."""
    xb, single = _as_batch(x, "random_rotation")
    n = tf.shape(xb)[0]
    limit = max_degrees * np.pi / 180.0
    angle = tf.random.stateless_uniform([n], seed, minval=-limit, maxval=limit)
    h, w = _image_size(xb)
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_off = ((w - 1.0) - (cos * (w - 1.0) - sin * (h - 1.0))) / 2.0
    y_off = ((h - 1.0) - (sin * (w - 1.0) + cos * (h - 1.0))) / 2.0
    zero = tf.zeros_like(angle)
    transforms = tf.stack([cos, -sin, x_off, sin, cos, y_off, zero, zero], axis=1)
    return _restore_rank(_projective(xb, transforms, fill_mode, interpolation), single)


def zoom(x, seed, max_zoom=0.2, fill_mode="constant", interpolation="bilinear"):
    """Zoom each image in or out by a random factor in [1 - max_zoom, 1 + max_zoom]."""
    xb, single = _as_batch(x, "random_zoom")
    n = tf.shape(xb)[0]
    scale = tf.random.stateless_uniform([n], seed, minval=1.0 - max_zoom, maxval=1.0 + max_zoom)
    h, w = _image_size(xb)
    zero = tf.zeros_like(scale)
    x_off = (w - 1.0) / 2.0 * (1.0 - scale)
    y_off = (h - 1.0) / 2.0 * (1.0 - scale)
    transforms = tf.stack([scale, zero, x_off, zero, scale, y_off, zero, zero], axis=1)
    return _restore_rank(_projective(xb, transforms, fill_mode, interpolation), single)


def erasing(x, seed, size=0.25, count=1, fill_value=0.0):
    """Blank `count` random boxes of `size` x the image side with `fill_value` (0-1 scale)."""
    xb, single = _as_batch(x, "random_erasing")
    h, w = _image_size(xb)
    box_h = tf.maximum(1, tf.cast(tf.round(size * h), tf.int32))
    box_w = tf.maximum(1, tf.cast(tf.round(size * w), tf.int32))
    mask = tf.zeros_like(xb[..., :1], dtype=tf.bool)
    for i in range(count):
        mask = mask | _box_mask(xb, _sub_seed(seed, i), box_h, box_w)
    fill = fill_value * 255.0 if x.dtype.is_integer else fill_value
    fill = _from_float(tf.constant(fill, tf.float32), x.dtype)
    return _restore_rank(tf.where(mask, fill, xb), single)


# --- photometric ----------------------------------------------------------------


def brightness(x, seed, max_delta=0.2):
    """Add a random delta in [-max_delta, max_delta] (0-1 scale) to each image."""
    xb, single = _as_batch(x, "random_brightness")
    delta = _per_image_uniform(xb, seed, -max_delta, max_delta)
    return _restore_rank(_from_unit(_to_unit(xb) + delta, x.dtype), single)


def contrast(x, seed, factor=0.2):
    """Scale each image's distance from its per-channel mean by a factor in [1-f, 1+f]."""
    xb, single = _as_batch(x, "random_contrast")
    scale = _per_image_uniform(xb, seed, 1.0 - factor, 1.0 + factor)
    xf = _to_unit(xb)
    mean = tf.reduce_mean(xf, axis=[1, 2], keepdims=True)
    return _restore_rank(_from_unit((xf - mean) * scale + mean, x.dtype), single)


def saturation(x, seed, factor=0.3):
    """Blend each RGB image with its grayscale by a factor in [1-f, 1+f] (0 = gray)."""
    xb, single = _as_batch(x, "random_saturation")
    _check_channels(xb, (3,), "random_saturation")
    scale = _per_image_uniform(xb, seed, 1.0 - factor, 1.0 + factor)
    xf = _to_unit(xb)
    gray = tf.image.rgb_to_grayscale(xf)
    return _restore_rank(_from_unit(gray + (xf - gray) * scale, x.dtype), single)


def hue(x, seed, max_delta=0.05):
    """Rotate each RGB image's hue by a random delta in [-max_delta, max_delta] turns."""
    xb, single = _as_batch(x, "random_hue")
    _check_channels(xb, (3,), "random_hue")
    delta = _per_image_uniform(xb, seed, -max_delta, max_delta)
    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(_to_unit(xb), 0.0, 1.0))
    shifted = tf.math.floormod(hsv[..., :1] + delta, 1.0)
    rgb = tf.image.hsv_to_rgb(tf.concat([shifted, hsv[..., 1:]], axis=-1))
    return _restore_rank(_from_unit(rgb, x.dtype), single)


def gaussian_noise(x, seed, stddev=0.05, clip=True):
    """Add N(0, stddev) noise (0-1 scale) to every value; any feature shape works."""
    xf = _to_unit(x)
    noise = tf.random.stateless_normal(tf.shape(xf), seed, stddev=stddev)
    return _from_unit(xf + noise, x.dtype, clip=clip)


def jpeg_quality(x, seed, min_quality=50, max_quality=95):
    """Re-encode one image as JPEG at a random quality in [min_quality, max_quality]."""
    if x.shape.rank != 3:
        raise ValueError(
            f"jpeg_quality re-encodes one image [height, width, channels] at a time; "
            f"received shape {x.shape}. Move this map before the batch step."
        )
    _check_channels(x, (1, 3), "jpeg_quality")
    image = x if x.dtype == tf.uint8 else _from_unit(_to_unit(x), tf.uint8)
    if min_quality >= max_quality:
        out = tf.image.adjust_jpeg_quality(image, min_quality)
    else:
        out = tf.image.stateless_random_jpeg_quality(image, min_quality, max_quality, seed)
    out = tf.ensure_shape(out, x.shape)
    return out if x.dtype == tf.uint8 else _from_unit(_to_unit(out), x.dtype)


# --- dtype and scale ------------------------------------------------------------


def normalize(x, seed, mode="scale", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """float32 features: "scale" maps integers to 0-1; "mean_std" then does (x - mean) / std."""
    xf = _to_unit(x)
    if mode == "scale":
        return xf
    channels = x.shape[-1]
    for label, values in (("mean", mean), ("std", std)):
        if len(values) != 1 and channels is not None and len(values) != channels:
            raise ValueError(
                f"normalize {label} has {len(values)} values but the features have "
                f"{channels} channels; give one value or one per channel"
            )
    return (xf - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def convert_dtype(x, seed, dtype="float32"):
    """Convert like `tf.image.convert_image_dtype` (rescaled to the dtype's range, saturating)."""
    return tf.image.convert_image_dtype(x, tf.as_dtype(dtype), saturate=True)


# --- label mixing (batches only) ------------------------------------------------


def mixup(x, y, seed, alpha=0.2, num_classes=10):
    """Blend each image and its one-hot label with another of the batch (Beta(alpha) weight)."""
    _need_batch(x, "mixup")
    n = tf.shape(x)[0]
    lam = _beta(seed, n, alpha)
    partner = _partner(seed, n)
    labels = _soft_labels(y, num_classes, "mixup")
    xf = _to_float(x)
    lam_x = lam[:, None, None, None]
    mixed = lam_x * xf + (1.0 - lam_x) * tf.gather(xf, partner)
    lam_y = lam[:, None]
    mixed_y = lam_y * labels + (1.0 - lam_y) * tf.gather(labels, partner)
    return _from_float(mixed, x.dtype), mixed_y


def cutmix(x, y, seed, alpha=1.0, num_classes=10):
    """Paste a random box of another image of the batch; labels mixed by the box's area."""
    _need_batch(x, "cutmix")
    n = tf.shape(x)[0]
    lam = _beta(seed, n, alpha)
    partner = _partner(seed, n)
    h, w = _image_size(x)
    side = tf.sqrt(1.0 - lam)
    box_h = tf.cast(tf.round(side * h), tf.int32)
    box_w = tf.cast(tf.round(side * w), tf.int32)
    mask = _box_mask(x, _sub_seed(seed, 3), box_h, box_w)
    mixed = tf.where(mask, tf.gather(x, partner), x)
    area = tf.cast(box_h * box_w, tf.float32) / (h * w)
    labels = _soft_labels(y, num_classes, "cutmix")
    keep = (1.0 - area)[:, None]
    mixed_y = keep * labels + (1.0 - keep) * tf.gather(labels, partner)
    return mixed, mixed_y


# --- cost simulators ------------------------------------------------------------


def sleep(x, seed, ms=10.0):
    """Wait `ms` milliseconds per call (once per batch after a batch step); x unchanged.

    `time.sleep` in a `tf.py_function` releases the GIL, so the calls of a
    parallel map really overlap, as I/O-bound work would (as many at once as
    tf.data has threads: the number of cores unless `private_threadpool_size`).
    """
    import time

    def nap():
        time.sleep(ms / 1000.0)
        return 0

    done = tf.py_function(nap, [], tf.int32)
    with tf.control_dependencies([done]):
        return tf.identity(x)


def cpu_work(x, seed, iterations=50, size=64):
    """Burn CPU: `iterations` products of `size` x `size` matrices per call; x unchanged."""
    m = tf.random.stateless_uniform([size, size], seed, minval=-1.0, maxval=1.0)
    m = m / float(size) ** 0.5

    def step(i, a):
        return i + 1, tf.tanh(tf.matmul(a, m))

    _, result = tf.while_loop(lambda i, a: i < iterations, step, [tf.constant(0), m])
    # Add an exact zero that depends on the result: a mere control dependency lets
    # tf.data see an identity map and skip the work.
    zero = tf.minimum(tf.abs(tf.reduce_sum(result)), 0.0)
    return x + tf.cast(zero, x.dtype)


# --- chains ---------------------------------------------------------------------


def apply_chain(x, y, chain, seed):
    """Apply `chain` = [(op_name, params), ...] in order; one seed per position.

    Only label-mixing ops receive and return `y`. Returns `(x, y)`.
    """
    seed = tf.reshape(tf.cast(seed, tf.int64), [2])
    for position, (op_name, params) in enumerate(chain):
        if op_name not in OPS:
            raise ValueError(
                f"unknown augmentation op {op_name!r}; known ops: {', '.join(sorted(OPS))}"
            )
        op_seed = tf.random.experimental.stateless_fold_in(seed, position)
        if op_name in LABEL_OPS:
            x, y = OPS[op_name](x, y, op_seed, **params)
        else:
            x = OPS[op_name](x, op_seed, **params)
    return x, y


OPS = {
    fn.__name__: fn
    for fn in (
        flip_left_right,
        flip_up_down,
        crop,
        central_crop,
        resize,
        rotation,
        zoom,
        erasing,
        brightness,
        contrast,
        saturation,
        hue,
        gaussian_noise,
        jpeg_quality,
        normalize,
        convert_dtype,
        mixup,
        cutmix,
        sleep,
        cpu_work,
    )
}
LABEL_OPS = frozenset({"mixup", "cutmix"})
