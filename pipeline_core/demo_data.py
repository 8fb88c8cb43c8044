"""A small, deterministic demo data set drawn with NumPy: no downloads needed.

`write_demo_data(directory)` writes the same labelled shapes in every format the
sources read:

* `images/<class>/*.{png,jpg,bmp,gif}` - an image folder, one sub-folder per class;
* `tfrecord/shapes-{0,1}.tfrecord` (plain) and `tfrecord/shapes.tfrecord.gz` (GZIP):
  `tf.train.Example`s with PNG bytes under "image" and an int64 "label";
* `csv/shapes.csv` - five numeric summary columns and a "label" column;
* `npz/shapes.npz` (uncompressed, so it can be memory-mapped) with "x" (images at half
  size, uint8) and "y" (int64 labels), and the same arrays as `npy/features.npy`
  and `npy/labels.npy`.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline_core import paths
from pipeline_core._tf import tf as _tf
from pipeline_core.errors import PipelineLabError

CLASSES: tuple[str, ...] = ("circle", "cross", "square", "stripes", "triangle")
FORMATS: tuple[str, ...] = ("png", "jpg", "bmp", "gif")
_DONE = ".complete"


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:size, 0:size].astype(np.float32)


def _circle(y, x, cy, cx, r, rng):
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def _square(y, x, cy, cx, r, rng):
    return (np.abs(y - cy) <= r * 0.8) & (np.abs(x - cx) <= r * 0.8)


def _triangle(y, x, cy, cx, r, rng):
    top = cy - r
    inside_height = (y >= top) & (y <= cy + r)
    half_width = (y - top) / 2.0
    return inside_height & (np.abs(x - cx) <= half_width)


def _cross(y, x, cy, cx, r, rng):
    bar = r * 0.3
    within = (np.abs(y - cy) <= r) & (np.abs(x - cx) <= r)
    return within & ((np.abs(y - cy) <= bar) | (np.abs(x - cx) <= bar))


def _stripes(y, x, cy, cx, r, rng):
    period = max(4.0, r / 2)
    angle = rng.uniform(0, np.pi)
    t = (y * np.sin(angle) + x * np.cos(angle)) / period
    return (t - np.floor(t)) < 0.5


_SHAPES: dict[str, Callable[..., np.ndarray]] = {
    "circle": _circle,
    "cross": _cross,
    "square": _square,
    "stripes": _stripes,
    "triangle": _triangle,
}


def draw_shape(name: str, *, size: int, rng: np.random.Generator) -> np.ndarray:
    """One `[size, size, 3]` uint8 image of shape `name` on a noisy background."""
    y, x = _grid(size)
    r = rng.uniform(0.22, 0.38) * size
    cy, cx = rng.uniform(r, size - r, size=2)
    mask = _SHAPES[name](y, x, cy, cx, r, rng)
    background = rng.integers(0, 90, size=3)
    colour = rng.integers(140, 256, size=3)
    image = np.where(mask[..., None], colour, background).astype(np.float32)
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_all(per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            images.append(draw_shape(name, size=size, rng=rng))
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64)


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    pil_format = {"jpg": "JPEG"}.get(fmt, fmt.upper())
    Image.fromarray(image).save(buffer, format=pil_format)
    return buffer.getvalue()


def _write_images(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        fmt = FORMATS[index % len(FORMATS)]
        (folder / f"{CLASSES[label]}_{index:04d}.{fmt}").write_bytes(_encode(image, fmt))


def _write_tfrecords(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    tf = _tf()
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for image, label in zip(images, labels, strict=True):
        feature = {
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_encode(image, "png")])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        records.append(example.SerializeToString())
    halves = (records[0::2], records[1::2])
    for shard, part in enumerate(halves):
        with tf.io.TFRecordWriter(str(root / f"shapes-{shard}.tfrecord")) as writer:
            for record in part:
                writer.write(record)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(root / "shapes.tfrecord.gz"), options) as writer:
        for record in records:
            writer.write(record)


def _write_csv(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pixels = images.astype(np.float32) / 255.0
    means = pixels.mean(axis=(1, 2))
    spread = pixels.std(axis=(1, 2, 3))
    fill = (pixels.mean(axis=3) > 0.45).mean(axis=(1, 2))
    with open(root / "shapes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mean_red", "mean_green", "mean_blue", "spread", "fill", "label"])
        for m, s, f, label in zip(means, spread, fill, labels, strict=True):
            values = [f"{m[0]:.5f}", f"{m[1]:.5f}", f"{m[2]:.5f}", f"{s:.5f}", f"{f:.5f}"]
            writer.writerow([*values, int(label)])


def _write_arrays(npz_root: Path, npy_root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    npz_root.mkdir(parents=True, exist_ok=True)
    npy_root.mkdir(parents=True, exist_ok=True)
    small = np.ascontiguousarray(images[:, ::2, ::2, :])
    np.savez(npz_root / "shapes.npz", x=small, y=labels)
    np.save(npy_root / "features.npy", small)
    np.save(npy_root / "labels.npy", labels)


def _target_dir(directory: str | os.PathLike[str]) -> Path:
    """`directory` created (with its parents); a file or a file among its parents is refused."""
    root = Path(directory).expanduser()
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise PipelineLabError(
            f"cannot write the demo data into {str(root)!r}: {str(blocker)!r} is a file, "
            "not a folder; give a folder path (it is created if missing)"
        )
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_demo_data(
    directory: str | os.PathLike[str], *, per_class: int = 40, size: int = 64, seed: int = 0
) -> Path:
    """Write the demo data set under `directory` and return it.

    Args:
        directory: target folder (created); existing files with the same names are replaced.
        per_class: images per class (5 classes).
        size: image height and width in pixels.
        seed: seed of the drawing; the same arguments always give the same files.

    Raises:
        PipelineLabError: `per_class` or `size` is too small, or `directory` is an existing file.
    """
    if per_class < 1:
        raise PipelineLabError(f"per_class must be >= 1, received {per_class}")
    if size < 16:
        raise PipelineLabError(f"size must be >= 16 pixels, received {size}")
    root = _target_dir(directory)
    images, labels = _draw_all(per_class, size, seed)
    _write_images(root / "images", images, labels)
    _write_tfrecords(root / "tfrecord", images, labels)
    _write_csv(root / "csv", images, labels)
    _write_arrays(root / "npz", root / "npy", images, labels)
    return root


def write_demo_images(
    directory: str | os.PathLike[str], *, per_class: int = 40, size: int = 64, seed: int = 0
) -> Path:
    """Write only the image folder (one sub-folder per class) under `directory` and return it.

    The images are the same as those of `write_demo_data(..., seed=seed)`.
    """
    if per_class < 1 or size < 16:
        raise PipelineLabError(
            f"per_class must be >= 1 and size >= 16, received {per_class}, {size}"
        )
    root = _target_dir(directory)
    images, labels = _draw_all(per_class, size, seed)
    _write_images(root, images, labels)
    return root


def write_once(target: Path, write: Callable[[Path], Any]) -> Path:
    """Fill folder `target` once with `write(folder)` and return it.

    Written into a temporary folder and renamed into place, so two processes
    asking at once never see a half-written set.
    """
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / _DONE).write_text("ok\n", encoding="utf-8")
        if target.exists() and not (target / _DONE).exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not (target / _DONE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_demo_data() -> Path:
    """Write the demo data once under `paths.demo_dir()` and return that folder."""
    return write_once(paths.demo_dir(), write_demo_data)
