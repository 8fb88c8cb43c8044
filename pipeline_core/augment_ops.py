"""TensorFlow helpers for the augmentations that have no single native op.

`pipeline_core.augment_code` writes each map step as one plain function,
`augment(image, label, seed)`, that calls TensorFlow's own kernels by name
(`tf.image.stateless_random_flip_left_right`, `tf.image.resize`, ...). Where
TensorFlow has no such op - a random rotation, per-image random values on a
batch (TF's stateless ops draw one value for a whole batch), mixup - the
generated code calls one of the helpers below instead. The same text runs in
the pipeline, the preview and the exported script: `augment_code` copies the
helpers a function uses into the script.

Conventions:

- `seed` is a shape-[2] int32/int64 tensor fed to `tf.random.stateless_*`
  ops: the same seed gives the same output and a new seed re-rolls it.
- `image` is one image `[H, W, C]`; `images` is a batch `[N, H, W, C]` and
  every image of it gets its own random values.
- Helpers keep their input's dtype unless their docstring says otherwise;
  photometric helpers expect float images on a 0-1 scale (the generated code
  converts integers once, before the first op that needs floats).
- Every function uses only `tf`, `np`, the standard library imported in its
  body and other functions of this module, and has no annotations.

`tf` is `pipeline_core._tf.lazy_tf`, read as an exported script reads
`import tensorflow as tf`: importing this module imports no TensorFlow.
"""

import numpy as np

from pipeline_core._tf import lazy_tf as tf

# --- random values, one per image of a batch ------------------------------------


def per_image_uniform(images, seed, minval, maxval):
    """One uniform value per image, shaped `[N, 1, 1, 1]` to broadcast over pixels."""
    n = tf.shape(images)[0]
    return tf.random.stateless_uniform([n, 1, 1, 1], seed, minval=minval, maxval=maxval)


# --- geometric ------------------------------------------------------------------


def random_flip(image, seed, probability, axis):
    """Mirror along `axis` (1 = up-down, 2 = left-right of a batch) with chance `probability`.

    One image is flipped or not through `tf.cond` (only one branch runs); a
    batch draws one decision per image.
    """
    if image.shape.rank == 3:
        flip = tf.random.stateless_uniform([], seed) < probability
        return tf.cond(flip, lambda: tf.reverse(image, [axis - 1]), lambda: image)
    flip = per_image_uniform(image, seed, 0.0, 1.0) < probability
    return tf.where(flip, tf.reverse(image, [axis]), image)


def random_crop_batch(images, seed, height, width):
    """Cut a `height` x `width` window at a random position of each image of a batch."""
    shape = tf.shape(images)
    fits = tf.debugging.assert_greater_equal(
        shape[1:3],
        tf.constant([height, width]),
        message=f"random_crop size {height}x{width} is larger than an image; "
        "lower height/width or resize the images first",
    )
    with tf.control_dependencies([fits]):
        u = tf.random.stateless_uniform([2, shape[0]], seed)
    top = tf.cast(tf.floor(u[0] * tf.cast(shape[1] - height + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(shape[2] - width + 1, tf.float32)), tf.int32)
    rows = top[:, None] + tf.range(height)[None, :]
    cols = left[:, None] + tf.range(width)[None, :]
    out = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def projective_transform(image, transforms, fill_mode, interpolation):
    """Resample one image or a batch with one 8-number projective transform per image.

    Runs TF's `ImageProjectiveTransformV3` kernel on the image's own dtype
    (uint8 stays uint8: no float round trip).
    """
    single = image.shape.rank == 3
    images = image[None] if single else image
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation.upper(),
        fill_mode=fill_mode.upper(),
    )
    out = tf.ensure_shape(out, images.shape)
    return out[0] if single else out


def _count_and_size(image):
    """(images, height, width) of one image or a batch; height/width as float32."""
    shape = tf.shape(image)
    n = 1 if image.shape.rank == 3 else shape[0]
    return n, tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)


def random_rotation(image, seed, max_degrees, fill_mode="constant", interpolation="bilinear"):
    """Rotate by a random angle in [-max_degrees, max_degrees] about the center (per image)."""
    n, h, w = _count_and_size(image)
    limit = max_degrees * np.pi / 180.0
    angle = tf.random.stateless_uniform([n], seed, minval=-limit, maxval=limit)
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_off = ((w - 1.0) - (cos * (w - 1.0) - sin * (h - 1.0))) / 2.0
    y_off = ((h - 1.0) - (sin * (w - 1.0) + cos * (h - 1.0))) / 2.0
    zero = tf.zeros_like(angle)
    transforms = tf.stack([cos, -sin, x_off, sin, cos, y_off, zero, zero], axis=1)
    return projective_transform(image, transforms, fill_mode, interpolation)


def random_zoom(image, seed, max_zoom, fill_mode="constant", interpolation="bilinear"):
    """Zoom in or out by a random factor in [1 - max_zoom, 1 + max_zoom] (per image)."""
    n, h, w = _count_and_size(image)
    scale = tf.random.stateless_uniform([n], seed, minval=1.0 - max_zoom, maxval=1.0 + max_zoom)
    zero = tf.zeros_like(scale)
    x_off = (w - 1.0) / 2.0 * (1.0 - scale)
    y_off = (h - 1.0) / 2.0 * (1.0 - scale)
    transforms = tf.stack([scale, zero, x_off, zero, scale, y_off, zero, zero], axis=1)
    return projective_transform(image, transforms, fill_mode, interpolation)


def box_mask(images, seed, box_h, box_w):
    """A `[N, H, W, 1]` bool mask, one box per image of a batch at a random position.

    `box_h`/`box_w` are int32 tensors of shape `[N]` (or scalars); boxes lie
    fully inside the image.
    """
    shape = tf.shape(images)
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


def random_erasing(image, seed, size, count, fill_value):
    """Blank `count` random boxes of `size` x the image side with `fill_value`.

    `fill_value` is on the image's own scale (the generated code passes 0-255
    values for integer images).
    """
    single = image.shape.rank == 3
    images = image[None] if single else image
    _, h, w = _count_and_size(images)
    box_h = tf.maximum(1, tf.cast(tf.round(size * h), tf.int32))
    box_w = tf.maximum(1, tf.cast(tf.round(size * w), tf.int32))
    mask = tf.zeros_like(images[..., :1], dtype=tf.bool)
    for i in range(count):
        box_seed = tf.random.experimental.stateless_fold_in(seed, i)
        mask = mask | box_mask(images, box_seed, box_h, box_w)
    out = tf.where(mask, tf.cast(fill_value, images.dtype), images)
    return out[0] if single else out


# --- photometric, one random value per image of a batch -------------------------


def random_brightness_batch(images, seed, max_delta):
    """Add a random delta in [-max_delta, max_delta] to each image (float images)."""
    return images + per_image_uniform(images, seed, -max_delta, max_delta)


def random_contrast_batch(images, seed, lower, upper):
    """Scale each image's distance from its per-channel mean by a factor in [lower, upper]."""
    factor = per_image_uniform(images, seed, lower, upper)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return (images - mean) * factor + mean


def random_saturation_batch(images, seed, lower, upper):
    """Scale each RGB image's HSV saturation by a factor in [lower, upper] (as TF's op)."""
    factor = per_image_uniform(images, seed, lower, upper)
    hsv = tf.image.rgb_to_hsv(images)
    saturation = tf.clip_by_value(hsv[..., 1:2] * factor, 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hsv[..., :1], saturation, hsv[..., 2:]], axis=-1))


def random_hue_batch(images, seed, max_delta):
    """Rotate each RGB image's hue by a random delta in [-max_delta, max_delta] turns."""
    delta = per_image_uniform(images, seed, -max_delta, max_delta)
    hsv = tf.image.rgb_to_hsv(images)
    hue = tf.math.floormod(hsv[..., :1] + delta, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))


# --- label mixing (batches only) ------------------------------------------------


def soft_labels(labels, num_classes, what):
    """Labels as float32 `[N, num_classes]`: integer labels one-hot, soft ones kept."""
    if labels.dtype.is_floating and labels.shape.rank == 2:
        return tf.cast(labels, tf.float32)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    check = tf.debugging.assert_less(
        labels,
        num_classes,
        message=f"{what}: a label is >= num_classes={num_classes}; "
        "set num_classes to the number of classes of the source",
    )
    with tf.control_dependencies([check]):
        return tf.one_hot(labels, num_classes, dtype=tf.float32)


def beta_and_partner(seed, n, alpha):
    """`n` draws of Beta(alpha, alpha) and a random permutation: whom each image mixes with."""
    g1 = tf.random.stateless_gamma([n], tf.random.experimental.stateless_fold_in(seed, 0), alpha)
    g2 = tf.random.stateless_gamma([n], tf.random.experimental.stateless_fold_in(seed, 1), alpha)
    total = g1 + g2
    lam = tf.where(total > 0, g1 / tf.maximum(total, 1e-12), tf.ones_like(total))
    order = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(seed, 2))
    return lam, tf.argsort(order)


def mixup(images, labels, seed, alpha, num_classes):
    """Blend each image and its one-hot label with another of the batch (Beta(alpha) weight)."""
    lam, partner = beta_and_partner(seed, tf.shape(images)[0], alpha)
    labels = soft_labels(labels, num_classes, "mixup")
    lam_x = tf.cast(lam[:, None, None, None], images.dtype)
    mixed = lam_x * images + (1.0 - lam_x) * tf.gather(images, partner)
    lam_y = lam[:, None]
    return mixed, lam_y * labels + (1.0 - lam_y) * tf.gather(labels, partner)


def cutmix(images, labels, seed, alpha, num_classes):
    """Paste a random box of another image of the batch; labels mixed by the box's area."""
    lam, partner = beta_and_partner(seed, tf.shape(images)[0], alpha)
    _, h, w = _count_and_size(images)
    side = tf.sqrt(1.0 - lam)
    box_h = tf.cast(tf.round(side * h), tf.int32)
    box_w = tf.cast(tf.round(side * w), tf.int32)
    box_seed = tf.random.experimental.stateless_fold_in(seed, 3)
    mask = box_mask(images, box_seed, box_h, box_w)
    mixed = tf.where(mask, tf.gather(images, partner), images)
    area = tf.cast(box_h * box_w, tf.float32) / (h * w)
    labels = soft_labels(labels, num_classes, "cutmix")
    keep = (1.0 - area)[:, None]
    return mixed, keep * labels + (1.0 - keep) * tf.gather(labels, partner)


# --- cost simulators ------------------------------------------------------------


def sleep(x, ms):
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


def cpu_work(x, seed, iterations, size):
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
