"""One dataset builder per source type, in a closed registry.

Every builder returns an UNBATCHED `tf.data.Dataset` of `(features, label)`
tuples with an int64 scalar label. A builder is split in two:

* a *plan* (`_plan_<type>`) that checks the user's input (files exist, keys
  are there, templates are known), resolves paths and returns a `Call`:
  one plain function plus literal keyword arguments;
* the plain function itself (`synthetic_dataset`, `npy_dataset`, ...), which
  uses only `tf`, `np` and the standard library.

`build_source` runs the call; `pipeline_core.export` embeds the very same
functions (via `inspect.getsource`) and the same arguments in exported code,
so the two cannot drift apart. A generator source's built-in generators are
`pipeline_core.generators`.

The plain functions read `tf` as an exported script does (`import tensorflow
as tf`); here it is `pipeline_core._tf.lazy_tf`, which imports TensorFlow on
first use.
"""

from __future__ import annotations

import csv
import glob
import io
import lzma
import math
import os
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_core import paths
from pipeline_core._tf import lazy_tf as tf
from pipeline_core.demo_data import ensure_demo_data
from pipeline_core.errors import PipelineLabError
from pipeline_core.generators import CUSTOM_TEMPLATE, GENERATOR_TEMPLATES
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


class SourceError(PipelineLabError):
    """A source cannot be read as configured; the message names the problem and the fix."""


# --- the plain functions (embedded verbatim in exported code) -------------------


def synthetic_dataset(*, num_examples, shape, dtype, num_classes, seed, sharded=False):
    """Seeded random tensors made by stateless random ops, in chunks.

    Up to 1 GiB in all, they are made on first use and cached: examples of 4 KiB or
    more one by one, from chunks of 1 MiB at most (a later epoch then copies nothing,
    faster than `from_tensor_slices`; small chunks leave no holes in the heap); smaller
    ones as chunks of 64 MiB at most, which elements are sliced from as
    `from_tensor_slices` slices arrays. Above 1 GiB, chunks of 8 MiB at most are made
    again each epoch. sharded: tf.data service workers each read a share of the
    chunks (a `distribute` step follows), so there are at least 64 and the element
    count is not declared: each share is smaller.
    """
    dtype, shape = tf.as_dtype(dtype), tuple(shape)
    values = max(1, int(np.prod(shape, dtype=np.int64)))  # per example
    example_bytes = values * dtype.size
    cached = num_examples * example_bytes <= 1 << 30
    one_by_one = cached and not sharded and example_bytes >= 4096
    most = -(-num_examples // 64) if sharded else num_examples
    mib = 1 if one_by_one else 64 if cached and not sharded else 8  # chunks of at most
    chunk = max(1, min(most, (mib << 20) // example_bytes))

    def make_chunk(start):
        size = tf.minimum(tf.constant(chunk, tf.int64), num_examples - start)
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), start])
        )
        if dtype == tf.uint8:  # four random bytes from each int32: no int32 copy of the data
            words = -(-values // 4)
            bits = tf.random.stateless_uniform(
                [size, words], seeds[0], minval=None, maxval=None, dtype=tf.int32
            )
            features = tf.reshape(tf.bitcast(bits, tf.uint8), [size, 4 * words])[:, :values]
        else:
            kind = (None, tf.float32) if dtype.is_floating else (256, tf.int32)
            features = tf.random.stateless_uniform(
                [size, values], seeds[0], maxval=kind[0], dtype=kind[1]
            )
        labels = tf.random.stateless_uniform([size], seeds[1], maxval=num_classes, dtype=tf.int64)
        return tf.reshape(tf.cast(features, dtype), [size, *shape]), labels

    chunks = tf.data.Dataset.range(0, num_examples, chunk).map(make_chunk)
    if one_by_one:  # the cache is all a later epoch reads
        dataset = chunks.unbatch().apply(tf.data.experimental.assert_cardinality(num_examples))
        return dataset.cache()
    chunks = chunks.cache() if cached else chunks
    dataset = chunks.flat_map(lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)))
    if sharded:
        return dataset
    return dataset.apply(tf.data.experimental.assert_cardinality(num_examples))


def numpy_dataset(*, num_examples, shape, dtype, num_classes, seed):
    """Seeded random NumPy arrays held in memory, sliced by `from_tensor_slices`."""
    rng = np.random.default_rng(seed)
    size = (num_examples, *shape)
    if np.issubdtype(np.dtype(dtype), np.floating):
        features = rng.random(size, dtype=np.float32).astype(dtype)
    else:
        features = rng.integers(0, 256, size=size).astype(dtype)
    labels = rng.integers(0, num_classes, size=num_examples).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((features, labels))


def numpy_file_dataset(*, path, features_key, labels_key):
    """Arrays loaded into memory from a .npy or .npz file, sliced by `from_tensor_slices`."""
    if path.endswith(".npz"):
        with np.load(path) as archive:
            features = archive[features_key]
            labels = archive[labels_key].astype(np.int64) if labels_key in archive else None
    else:
        features, labels = np.load(path), None
    if labels is None:
        labels = np.zeros(len(features), np.int64)
    return tf.data.Dataset.from_tensor_slices((features, labels))


def open_npz_member(path, key):
    """Memory-map array `key` of an uncompressed .npz file (no data is read)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(
                f"{path}: array {key!r} is compressed, so it cannot be memory-mapped; "
                "save the file with np.savez (not np.savez_compressed)"
            )
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local_header = handle.read(30)
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
    if dtype.hasobject or dtype.names is not None:
        # Mapped bytes would be used as object pointers: refuse before mapping.
        raise ValueError(f"{path}: array {key!r} has dtype {dtype}; save it with a numeric dtype")
    order = "F" if fortran_order else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def memmap_dataset(features, labels, *, chunk_rows):
    """Stream rows of (memory-mapped) arrays `chunk_rows` at a time, then unbatch."""
    if labels is None:
        labels = np.zeros(len(features), np.int64)

    def chunks():
        for start in range(0, len(features), chunk_rows):
            stop = start + chunk_rows
            yield np.asarray(features[start:stop]), np.asarray(labels[start:stop], np.int64)

    signature = (
        tf.TensorSpec((None, *features.shape[1:]), tf.as_dtype(features.dtype)),
        tf.TensorSpec((None,), tf.int64),
    )
    return tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()


def npy_dataset(*, features_path, labels_path, chunk_rows):
    """`.npy` files, memory-mapped so a file larger than RAM streams from disk."""
    features = np.load(features_path, mmap_mode="r")
    labels = None if labels_path is None else np.load(labels_path, mmap_mode="r")
    return memmap_dataset(features, labels, chunk_rows=chunk_rows)


def npz_dataset(*, path, features_key, labels_key, chunk_rows):
    """An uncompressed `.npz` archive whose arrays are memory-mapped and streamed."""
    features = open_npz_member(path, features_key)
    labels = None if labels_key is None else open_npz_member(path, labels_key)
    return memmap_dataset(features, labels, chunk_rows=chunk_rows)


def generator_dataset(*, generator, shape, dtype):
    """`from_generator` with an output_signature: features of `shape`/`dtype`, int64 label."""
    signature = (
        tf.TensorSpec(tuple(shape), tf.as_dtype(dtype)),
        tf.TensorSpec((), tf.int64),
    )
    return tf.data.Dataset.from_generator(generator, output_signature=signature)


def parallelism(calls):
    """A spec's parallelism (null, an int or "autotune") as `num_parallel_calls`."""
    return tf.data.AUTOTUNE if calls == "autotune" else calls


def read_files(file_names, read, interleave):
    """Read the files in turn (one reader given them all, as TFRecordDataset and
    CsvDataset take a list), or interleaved (`interleave` dict: a reader per file)."""
    if interleave is None:
        return read(file_names)
    return tf.data.Dataset.from_tensor_slices(file_names).interleave(
        read,
        cycle_length=interleave["cycle_length"],
        block_length=interleave["block_length"],
        num_parallel_calls=parallelism(interleave["num_parallel_calls"]),
        deterministic=interleave["deterministic"],
    )


def decode_and_resize(data, *, image_size, channels):
    """Decode JPEG/PNG/BMP/GIF bytes: uint8 `[H, W, channels]`, or resized float32 0-1."""
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    if image_size is None:
        return image
    # to 0-1 floats before resizing: resizing the uint8 image and dividing after
    # is ~15% slower per image (benchmarks/bench_parity.py, image folder row)
    return tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), image_size)


def list_image_folder(path):
    """Sorted class names and (file, label) lists of an image folder."""
    import os

    extensions = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for root, _, names in sorted(os.walk(os.path.join(path, name))):
            for file_name in sorted(names):
                if file_name.lower().endswith(extensions):
                    files.append(os.path.join(root, file_name))
                    labels.append(label)
    return classes, files, labels


def image_folder_dataset(
    *, path, image_size, channels, shuffle_files, seed, num_parallel_calls, deterministic
):
    """Images in one sub-folder per class; labels are the sorted sub-folder indices.

    Files are read and decoded in a parallel map over the file names.
    """
    _, file_names, labels = list_image_folder(path)
    files = tf.data.Dataset.from_tensor_slices((file_names, tf.constant(labels, tf.int64)))
    if shuffle_files:
        files = files.shuffle(len(file_names), seed=seed, reshuffle_each_iteration=True)

    def load(file_name, label):
        data = tf.io.read_file(file_name)
        return decode_and_resize(data, image_size=image_size, channels=channels), label

    calls = parallelism(num_parallel_calls)
    return files.map(load, num_parallel_calls=calls, deterministic=deterministic)


def tfrecord_dataset(
    *,
    files,
    compression,
    features,
    features_key,
    label_key,
    decode_image,
    image_size,
    channels,
    num_parallel_calls,
    interleave,
):
    """TFRecord files of tf.train.Example; `features` maps name -> (kind, dtype, shape)."""
    description = {}
    for name, (kind, dtype, shape) in features.items():
        dtype = tf.string if dtype == "string" else tf.as_dtype(dtype)
        if kind == "var":
            description[name] = tf.io.VarLenFeature(dtype)
        else:
            description[name] = tf.io.FixedLenFeature(shape, dtype)

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        example = {
            k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
            for k, v in example.items()
        }
        values = example[features_key]
        if decode_image:
            values = decode_and_resize(values, image_size=image_size, channels=channels)
        if label_key is None:
            label = tf.constant(0, tf.int64)
        else:
            label = tf.reshape(tf.cast(example[label_key], tf.int64), [])
        return values, label

    def read(file_names):
        return tf.data.TFRecordDataset(file_names, compression_type=compression)

    records = read_files(sorted(tf.io.gfile.glob(files)), read, interleave)
    return records.map(parse, num_parallel_calls=parallelism(num_parallel_calls))


def csv_dataset(
    *, files, columns, label_column, header, field_delim, num_parallel_calls, interleave
):
    """CSV rows: `columns` is [(name, dtype)]; the label column apart, the rest a float32 vector."""
    names = [name for name, _ in columns]
    defaults = [tf.as_dtype(dtype) for _, dtype in columns]
    label_index = names.index(label_column)

    def to_example(*values):
        features = [tf.cast(v, tf.float32) for i, v in enumerate(values) if i != label_index]
        return tf.stack(features), tf.cast(values[label_index], tf.int64)

    def read(file_names):
        return tf.data.experimental.CsvDataset(
            file_names, defaults, header=header, field_delim=field_delim
        )

    rows = read_files(sorted(tf.io.gfile.glob(files)), read, interleave)
    return rows.map(to_example, num_parallel_calls=parallelism(num_parallel_calls))


# --- plans: check input, resolve paths, pick the function and its arguments ----


@dataclass(frozen=True)
class Call:
    """`function(**kwargs)`: kwargs are literals or nested `Call`s (rendered as code on export)."""

    function: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    helpers: tuple[Callable[..., Any], ...] = ()

    def run(self) -> Any:
        kwargs = {k: v.run() if isinstance(v, Call) else v for k, v in self.kwargs.items()}
        return self.function(**kwargs)

    def functions(self) -> tuple[Callable[..., Any], ...]:
        """Every function to embed in exported code, helpers first, without repeats."""
        out: list[Callable[..., Any]] = []
        for value in self.kwargs.values():
            if isinstance(value, Call):
                out.extend(value.functions())
        out.extend(self.helpers)
        out.append(self.function)
        return tuple(dict.fromkeys(out))


CHUNK_BYTES = 4 * 1024 * 1024


def _chunk_rows(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def _existing_file(text: str, *, what: str, kind: str) -> str:
    path = _resolve(text, what=what)
    if not path.is_file():
        raise SourceError(
            f"{what} {str(path)!r} does not exist or is not a file; check the path "
            f"(it may use {_path_forms()}) and point it at a {kind} file"
        )
    return str(path)


def _resolve(text: str, *, what: str) -> Path:
    """Resolve a user path (`paths.resolve_path`: confined in a browser session);
    paths inside the demo folder are generated on first use."""
    path = paths.resolve_path(text, what=what)
    _ensure_demo(path)
    return path


def _ensure_demo(path: Path) -> None:
    demo = paths.demo_dir()
    if (path == demo or demo in path.parents) and not glob.glob(str(path)):
        ensure_demo_data()


def _path_forms() -> str:
    """What a path may use, for messages: a browser session expands only {data_dir}."""
    return "{data_dir}" if paths.confined() else "{data_dir}, ~ or $VARS"


# --- .npy / .npz headers: read and checked before anything is mapped or loaded ---

_MAGIC = b"\x93NUMPY"
_MAX_HEADER_BYTES = 65_536  # np.save writes far less for any numeric array
_FEATURE_KINDS = "biufc"  # bool, int, uint, float, complex: what TensorFlow takes as numbers
_LABEL_KINDS = "biuf"  # labels become int64 class indices
_AS_FLOAT = "arr.astype('float32')"
_KIND_NAMES = {
    "b": "bool",
    "i": "int",
    "u": "uint",
    "f": "float",
    "c": "complex",
    "O": "Python objects",
    "U": "text",
    "S": "byte strings",
    "V": "raw bytes",
    "M": "datetimes",
    "m": "time deltas",
}


@dataclass(frozen=True)
class ArrayHeader:
    """What a checked `.npy` header declares; `data_offset` counts from the magic string."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _byte_count(n: int) -> str:
    return f"{n:,} bytes" if n < 10**15 else f"about 10^{len(str(n)) - 1} bytes"


def _saver(key: str | None) -> Callable[[str], str]:
    """The call that saves `expr` the way the file is read: np.save, or np.savez under `key`."""
    if key is None:
        return lambda expr: f"np.save(path, {expr})"
    if key.isidentifier():
        return lambda expr: f"np.savez(path, {key}={expr})"
    return lambda expr: f"np.savez(path, **{{{key!r}: {expr}}})"


def check_array_header(
    stream: Any, *, size: int, what: str, key: str | None = None, labels: bool = False
) -> ArrayHeader:
    """Read and check the `.npy` header at the start of `stream` (only the header is read).

    `size` is how many bytes the `.npy` data holds in all (header and data); `what`
    names it in messages ("'x.npy'", "array 'x' of 'd.npz'"); `key` is the npz
    member's name (for the fix shown), None for a `.npy` file. Refused: a header
    numpy cannot parse; Python objects (reading them would use raw bytes as object
    pointers); structured dtypes; dtypes that are not bool, int, uint, float or
    complex (labels: not complex either); a shape whose data is larger than the
    bytes present (a truncated file, or a header that lies).

    Raises:
        SourceError: the array cannot be read safely; the message names the fix.
    """
    save = _saver(key)
    prefix = stream.read(len(_MAGIC) + 2)
    if len(prefix) < len(_MAGIC) + 2 or not prefix.startswith(_MAGIC):
        raise SourceError(
            f"{what} is not a .npy array (it does not start with numpy's magic string); "
            f"save the array with {save('arr')}"
        )
    version = (prefix[-2], prefix[-1])
    if version not in ((1, 0), (2, 0)):
        raise SourceError(
            f"{what} uses .npy format version {version[0]}.{version[1]}, which holds no plain "
            f"numeric array; save it with a numeric dtype: {save(_AS_FLOAT)}"
        )
    length_format = "<H" if version == (1, 0) else "<I"
    length_bytes = stream.read(struct.calcsize(length_format))
    header_length = (
        struct.unpack(length_format, length_bytes)[0]
        if len(length_bytes) == struct.calcsize(length_format)
        else -1
    )
    header = stream.read(header_length) if 0 <= header_length <= _MAX_HEADER_BYTES else b""
    if len(header) != header_length or header_length > _MAX_HEADER_BYTES:
        raise SourceError(
            f"{what} has a damaged .npy header (cut short or over {_MAX_HEADER_BYTES:,} bytes); "
            f"save the array again with {save('arr')}"
        )
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    try:
        shape, fortran_order, dtype = reader(io.BytesIO(length_bytes + header))
    except Exception:  # a bounded header parsed in memory: any failure means a bad header
        raise SourceError(
            f"{what} has a .npy header numpy cannot parse; save the array again with {save('arr')}"
        ) from None
    data_offset = len(prefix) + len(length_bytes) + header_length
    _check_dtype(dtype, what=what, save=save, labels=labels)
    shape = tuple(shape)
    if len(shape) > 64 or any(d < 0 for d in shape):
        raise SourceError(
            f"{what} declares an impossible shape {_clip(str(shape))}; the file is damaged: "
            f"save the array again with {save('arr')}"
        )
    needed = math.prod(shape) * dtype.itemsize
    present = max(0, size - data_offset)
    if needed > present:
        raise SourceError(
            f"{what} is truncated: its header declares shape {_clip(str(shape))} of {dtype} "
            f"({_byte_count(needed)}) but only {_byte_count(present)} of data follow; copy the "
            f"file again, or save the array again with {save('arr')}"
        )
    return ArrayHeader(shape, dtype, bool(fortran_order), data_offset)


def _check_dtype(dtype: np.dtype, *, what: str, save: Callable[[str], str], labels: bool) -> None:
    numeric = save("arr.astype('int64')" if labels else _AS_FLOAT)
    if dtype.hasobject:
        raise SourceError(
            f"{what} holds Python objects (dtype {_clip(str(dtype), 80)}); reading them means "
            f"unpickling, which can run code from the file, so they are refused: save it with a "
            f"numeric dtype: {numeric}"
        )
    if dtype.names is not None:
        fields = ", ".join(dtype.names[:5]) + (", ..." if len(dtype.names) > 5 else "")
        first = dtype.names[0] if dtype.names else "a"
        raise SourceError(
            f"{what} has a structured dtype (fields: {_clip(fields, 80)}); TensorFlow needs one "
            f"numeric dtype per array: save each field as its own array, e.g. "
            f"{save(f'arr[{first!r}]')}"
        )
    kinds = _LABEL_KINDS if labels else _FEATURE_KINDS
    if dtype.subdtype is not None or dtype.kind not in kinds:
        kind = "sub-arrays" if dtype.subdtype is not None else _KIND_NAMES.get(dtype.kind, "?")
        allowed = "bool, int, uint or float" if labels else "bool, int, uint, float or complex"
        role = "labels need" if labels else "features need"
        raise SourceError(
            f"{what} has dtype {_clip(str(dtype), 80)} ({kind}); {role} {allowed} numbers: "
            f"save it with a numeric dtype: {numeric}"
        )


def read_npy_header(path: str, *, labels: bool = False) -> ArrayHeader:
    """The checked header of a `.npy` file (see `check_array_header`); nothing is mapped."""
    with open(path, "rb") as handle:
        return check_array_header(
            handle, size=os.fstat(handle.fileno()).st_size, what=repr(path), labels=labels
        )


def npz_member(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    """The zip entry of array `key` (`key.npy`, or `key` as np.load also accepts)."""
    names = set(archive.namelist())
    for name in (key + ".npy", key):
        if name in names:
            return archive.getinfo(name)
    return None


def read_npz_header(
    archive: zipfile.ZipFile,
    key: str,
    *,
    what: str,
    archive_size: int,
    labels: bool = False,
) -> ArrayHeader:
    """The checked header of npz member `key` (only its header is decompressed).

    A stored (uncompressed) member must also lie inside the archive's
    `archive_size` bytes, as memory-mapping reads it straight from the file.
    """
    info = npz_member(archive, key)
    if info is None:
        raise SourceError(f"{what}: no array {key!r}; set the key to one of: {_npz_keys(archive)}")
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            _check_stored_member(archive, info, what=what, archive_size=archive_size)
        with archive.open(info) as stream:
            return check_array_header(
                stream, size=info.file_size, what=what, key=key, labels=labels
            )
    except SourceError:
        raise
    except (
        zipfile.BadZipFile,
        NotImplementedError,  # a compression method zipfile lacks
        RuntimeError,  # an encrypted member
        OSError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        raise SourceError(
            f"{what} cannot be read from the archive ({_clip(str(exc), 80)}); save the file "
            "again with np.savez"
        ) from None


def _check_stored_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, what: str, archive_size: int
) -> None:
    raw = archive.fp
    if raw is None:
        raise SourceError(f"{what}: the archive is closed")
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04" or info.compress_size != info.file_size:
        raise SourceError(f"{what} has a damaged zip entry; save the file again with np.savez")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    end = info.header_offset + 30 + name_length + extra_length + info.file_size
    if end > archive_size:
        raise SourceError(
            f"{what} is truncated: the archive ends {_byte_count(end - archive_size)} before "
            "the array does; copy the file again, or save it again with np.savez"
        )


def _npz_keys(archive: zipfile.ZipFile) -> str:
    return ", ".join(n.removesuffix(".npy") for n in archive.namelist())


def _interleave_args(interleave: InterleaveStep | None) -> dict[str, Any] | None:
    if interleave is None:
        return None
    return {
        "cycle_length": interleave.cycle_length,
        "block_length": interleave.block_length,
        "num_parallel_calls": interleave.num_parallel_calls,
        "deterministic": interleave.deterministic,
    }


def _plan_synthetic(source: SyntheticSource, *, distributed: bool = False, **_: Any) -> Call:
    args = source.model_dump(exclude={"type"})
    return Call(synthetic_dataset, {**args, "sharded": True} if distributed else args)


_FILE_KEYS = {"features_key", "labels_key"}  # numpy source fields that only a file uses


def _plan_numpy(source: NumpySource, **_: Any) -> Call:
    if source.path is None:
        return Call(numpy_dataset, source.model_dump(exclude={"type", "path"} | _FILE_KEYS))
    path = _existing_file(source.path, what="numpy source path", kind=".npy or .npz")
    if not path.endswith((".npy", ".npz")):
        raise SourceError(f"numpy source path {path!r} must end in .npy or .npz")
    if path.endswith(".npz"):
        with _open_npz(path) as archive:
            if npz_member(archive, source.features_key) is None:
                raise SourceError(
                    f"{path!r} has no array {source.features_key!r}; set features_key to "
                    f"one of: {_npz_keys(archive)}"
                )
            features, _ = _npz_headers(archive, path, source.features_key, source.labels_key)
    else:
        features = read_npy_header(path)
    if not features.shape:
        raise SourceError(f"{path!r} holds a scalar; it needs one row per example")
    kwargs = {"path": path, "features_key": source.features_key, "labels_key": source.labels_key}
    return Call(numpy_file_dataset, kwargs)


def _npz_headers(archive: zipfile.ZipFile, path: str, features_key: str, labels_key: str | None):
    """Checked headers of the features array and of the labels array (None when not named
    or not in the archive)."""
    size = os.path.getsize(path)
    features = read_npz_header(
        archive, features_key, what=_member(path, features_key), archive_size=size
    )
    labels = None
    if labels_key is not None and npz_member(archive, labels_key) is not None:
        labels = read_npz_header(
            archive, labels_key, what=_member(path, labels_key), archive_size=size, labels=True
        )
    return features, labels


def _member(path: str, key: str) -> str:
    return f"array {key!r} of {path!r}"


def _open_npz(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise SourceError(f"{path!r} is not an .npz archive; save it with np.savez") from None


def _plan_npy(source: NpySource, **_: Any) -> Call:
    features = _existing_file(source.features_path, what="features_path", kind=".npy")
    header = read_npy_header(features)
    shape, dtype = header.shape, header.dtype
    if not shape:
        raise SourceError(f"{features!r} holds a scalar; it needs one row per example")
    labels = None
    if source.labels_path is not None:
        labels = _existing_file(source.labels_path, what="labels_path", kind=".npy")
        label_rows = (read_npy_header(labels, labels=True).shape or (0,))[0]
        if label_rows != shape[0]:
            raise SourceError(
                f"labels_path has {label_rows} rows but features_path has {shape[0]}; "
                "both files need one row per example"
            )
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    return Call(
        npy_dataset,
        {"features_path": features, "labels_path": labels, "chunk_rows": _chunk_rows(row_bytes)},
        helpers=(memmap_dataset,),
    )


def _plan_npz(source: NpzSource, **_: Any) -> Call:
    path = _existing_file(source.path, what="npz path", kind=".npz")
    with _open_npz(path) as archive:
        for key, what in ((source.features_key, "features_key"), (source.labels_key, "labels_key")):
            if key is not None and npz_member(archive, key) is None:
                raise SourceError(
                    f"{path!r} has no array {key!r}; set {what} to one of: {_npz_keys(archive)}"
                )
        features, labels = _npz_headers(archive, path, source.features_key, source.labels_key)
        if not features.shape:
            raise SourceError(
                f"{_member(path, source.features_key)} holds a scalar; it needs one row per example"
            )
        if labels is not None:
            label_rows = (labels.shape or (0,))[0]
            if label_rows != features.shape[0]:
                raise SourceError(
                    f"{source.labels_key!r} has {label_rows} rows but {source.features_key!r} "
                    f"has {features.shape[0]}; both need one row per example"
                )
        for key in (source.features_key, source.labels_key):
            info = npz_member(archive, key) if key is not None else None
            if info is not None and info.compress_type != zipfile.ZIP_STORED:
                raise SourceError(
                    f"{path}: array {key!r} is compressed, so it cannot be memory-mapped; "
                    "save the file with np.savez (not np.savez_compressed)"
                )
    row_bytes = math.prod(features.shape[1:]) * features.dtype.itemsize
    kwargs = {
        "path": path,
        "features_key": source.features_key,
        "labels_key": source.labels_key,
        "chunk_rows": _chunk_rows(row_bytes),
    }
    return Call(npz_dataset, kwargs, helpers=(open_npz_member, memmap_dataset))


def _plan_generator(
    source: GeneratorSource, *, generator: Callable[[], Iterable[Any]] | None = None, **_: Any
) -> Call:
    if source.template == CUSTOM_TEMPLATE:
        if generator is None:
            raise SourceError(
                'template "custom" needs a callable: pass build(spec, generator=my_generator) '
                "from Python, or pick a built-in template: " + ", ".join(GENERATOR_TEMPLATES)
            )
        gen: Any = generator
    elif source.template in GENERATOR_TEMPLATES:
        factory = GENERATOR_TEMPLATES[source.template].factory
        gen = Call(factory, source.model_dump(exclude={"type", "template"}))
    else:
        raise SourceError(
            f"unknown generator template {source.template!r}; known: "
            + ", ".join([*GENERATOR_TEMPLATES, CUSTOM_TEMPLATE])
        )
    return Call(generator_dataset, {"generator": gen, "shape": source.shape, "dtype": source.dtype})


def _plan_image_folder(
    source: ImageFolderSource, *, interleave: InterleaveStep | None = None, **_: Any
) -> Call:
    path = _resolve(source.path, what="image folder")
    if not path.is_dir():
        raise SourceError(
            f"image folder {str(path)!r} does not exist; point path at a folder with one "
            "sub-folder per class (python -m pipeline_core demo-data DIR writes an example)"
        )
    if paths.confined():
        _check_image_links(source.path, path)
    classes, files, _ = list_image_folder(str(path))
    if paths.confined():
        _check_image_links(source.path, path, files)
    if not classes:
        raise SourceError(
            f"image folder {str(path)!r} has no class sub-folders; put the images of each "
            "class in their own sub-folder (e.g. cats/, dogs/)"
        )
    if not files:
        raise SourceError(
            f"image folder {str(path)!r} has class folders ({', '.join(classes[:5])}) but no "
            "images; add .jpg, .jpeg, .png, .bmp or .gif files"
        )
    kwargs = source.model_dump(exclude={"type", "path"})
    kwargs.update(path=str(path), deterministic=None)
    if interleave is not None:
        # One image per file: an interleave step's parallelism becomes the parallel map's.
        kwargs.update(
            num_parallel_calls=interleave.num_parallel_calls,
            deterministic=interleave.deterministic,
        )
    return Call(
        image_folder_dataset,
        kwargs,
        helpers=(list_image_folder, parallelism, decode_and_resize),
    )


def _check_image_links(given: str, folder: Path, files: list[str] | None = None) -> None:
    """Confined: refuse class folders (before they are walked) or image files (before they
    are read) that lead outside the data dir through a symlink."""
    if files is None:
        found = [e.path for e in os.scandir(folder) if e.is_dir()]
    else:
        found = files
    for name in found:
        if not paths.is_inside_roots(name):
            inner = os.path.relpath(name, folder)
            raise paths.outside_error(
                given,
                what="image folder",
                detail=f"holds {inner!r}, a link that leads outside the data dir",
            )


def _glob_files(text: str, *, what: str) -> tuple[str, list[str]]:
    pattern, files = paths.glob_files(text, what=what)
    if not files:
        _ensure_demo(Path(pattern))
        pattern, files = paths.glob_files(text, what=what)
    if not files:
        raise SourceError(
            f"{what} {pattern!r} matches no files; check the path or glob pattern "
            "(e.g. data/train-*.tfrecord)"
        )
    return pattern, files


_TF_KINDS = {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}


def infer_tfrecord_features(
    file_name: str, *, compression: str = ""
) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """A feature description `{name: (kind, dtype, shape)}` read off the first record."""
    records = tf.data.TFRecordDataset(file_name, compression_type=compression).take(1)
    try:
        first = [r.numpy() for r in records]
        example = tf.train.Example.FromString(first[0]) if first else None
    except Exception as exc:  # any read or parse failure means a bad file
        raise SourceError(
            f"cannot read a tf.train.Example from {file_name!r} ({type(exc).__name__}); check "
            'the file and the compression setting ("", GZIP or ZLIB)'
        ) from None
    if example is None:
        raise SourceError(f"{file_name!r} holds no records; point files at non-empty TFRecords")
    description = {}
    for name, feature in sorted(example.features.feature.items()):
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        length = len(getattr(feature, kind).value)
        shape = () if length == 1 else (length,)
        description[name] = ("fixed", _TF_KINDS[kind], shape)
    return description


def _plan_tfrecord(
    source: TFRecordSource, *, interleave: InterleaveStep | None = None, **_: Any
) -> Call:
    pattern, files = _glob_files(source.files, what="files")
    if source.features is None:
        features = infer_tfrecord_features(files[0], compression=source.compression)
    else:
        features = {k: (f.kind, f.dtype, tuple(f.shape)) for k, f in source.features.items()}
    for key, what in ((source.features_key, "features_key"), (source.label_key, "label_key")):
        if key is not None and key not in features:
            raise SourceError(
                f"the records have no feature {key!r}; set {what} to one of: " + ", ".join(features)
            )
    if source.decode_image and features[source.features_key][1] != "string":
        raise SourceError(
            f"decode_image needs {source.features_key!r} to hold encoded image bytes, but it "
            f"holds {features[source.features_key][1]}; turn decode_image off"
        )
    if source.label_key is not None and features[source.label_key][1] == "string":
        raise SourceError(
            f"label {source.label_key!r} holds text; labels must be integers: store class "
            "indices or set label_key to null"
        )
    kwargs = source.model_dump(exclude={"type", "files", "features"})
    kwargs.update(files=pattern, features=features, interleave=_interleave_args(interleave))
    return Call(tfrecord_dataset, kwargs, helpers=(parallelism, decode_and_resize, read_files))


def _infer_type(values: list[str]) -> str:
    for dtype, parse in (("int64", int), ("float32", float)):
        try:
            for value in values:
                parse(value)
        except ValueError:
            continue
        return dtype
    return "string"


def infer_csv_columns(
    file_name: str, *, header: bool, field_delim: str, rows: int = 50
) -> list[tuple[str, str]]:
    """`[(column name, dtype)]` from the header and the first `rows` rows."""
    with open(file_name, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=field_delim)
        lines = [line for _, line in zip(range(rows + 1), reader, strict=False)]
    if not lines:
        raise SourceError(f"{file_name!r} is empty; point path at a CSV file with rows")
    names = lines[0] if header else [f"column{i}" for i in range(len(lines[0]))]
    body = lines[1:] if header else lines
    if not body:
        raise SourceError(f"{file_name!r} has a header but no rows; add data rows")
    return [(name, _infer_type([r[i] for r in body if i < len(r)])) for i, name in enumerate(names)]


def _plan_csv(source: CsvSource, *, interleave: InterleaveStep | None = None, **_: Any) -> Call:
    pattern, files = _glob_files(source.path, what="path")
    columns = infer_csv_columns(files[0], header=source.header, field_delim=source.field_delim)
    if source.column_types:
        unknown = [n for n in source.column_types if n not in dict(columns)]
        if unknown:
            raise SourceError(
                f"column_types names unknown columns {unknown}; the columns are: "
                + ", ".join(n for n, _ in columns)
            )
        columns = [(n, source.column_types.get(n, t)) for n, t in columns]
    names = [n for n, _ in columns]
    if source.label_column not in names:
        raise SourceError(
            f"no column {source.label_column!r}; set label_column to one of: " + ", ".join(names)
        )
    text = [n for n, t in columns if t == "string"]
    if text:
        first = _bad_csv_line(
            files[0],
            header=source.header,
            field_delim=source.field_delim,
            deadline=time.monotonic() + LOCATE_BUDGET_S,
        )
        raise SourceError(
            f"columns {text} hold text{f' ({first})' if first else ''}; features and labels "
            "must be numbers: remove these columns or encode them as numbers"
        )
    kwargs = {
        "files": pattern,
        "columns": columns,
        "label_column": source.label_column,
        "header": source.header,
        "field_delim": source.field_delim,
        "num_parallel_calls": source.num_parallel_calls,
        "interleave": _interleave_args(interleave),
    }
    return Call(csv_dataset, kwargs, helpers=(parallelism, read_files))


SourcePlanner = Callable[..., Call]

SOURCES: dict[type, SourcePlanner] = {
    SyntheticSource: _plan_synthetic,
    NumpySource: _plan_numpy,
    NpySource: _plan_npy,
    NpzSource: _plan_npz,
    GeneratorSource: _plan_generator,
    ImageFolderSource: _plan_image_folder,
    TFRecordSource: _plan_tfrecord,
    CsvSource: _plan_csv,
}


def plan_source(
    source: Any,
    *,
    generator: Callable[[], Iterable[Any]] | None = None,
    interleave: InterleaveStep | None = None,
    distributed: bool = False,
) -> Call:
    """Check `source` and return the call that builds it (used by build and export);
    `distributed`: a `distribute` step sends the source to tf.data service workers.

    Raises:
        SourceError: the source cannot be read as configured.
    """
    planner = SOURCES.get(type(source))
    if planner is None:
        known = ", ".join(t.__name__ for t in SOURCES)
        raise SourceError(f"no builder for {type(source).__name__}; known: {known}")
    return planner(source, generator=generator, interleave=interleave, distributed=distributed)


def build_source(
    source: Any,
    *,
    generator: Callable[[], Iterable[Any]] | None = None,
    interleave: InterleaveStep | None = None,
    distributed: bool = False,
) -> Any:
    """The unbatched `tf.data.Dataset` of `(features, label)` for a source model.

    Args:
        source: one of the source models of `pipeline_core.spec`.
        generator: the callable for a generator source with template "custom".
        interleave: the spec's leading interleave step (file sources only).
        distributed: a `distribute` step sends the source to tf.data service workers.

    Raises:
        SourceError: the source cannot be read as configured.
    """
    call = plan_source(source, generator=generator, interleave=interleave, distributed=distributed)
    return call.run()


# --- after a failure: which file (and line) the pipeline could not read ---------------------

LOCATE_BUDGET_S = 20.0  # the longest a search for the bad file may take after a failure


def _bad_csv_line(file_name: str, *, header: bool, field_delim: str, deadline: float) -> str | None:
    """`file, line N: ...` for the first row of a CSV file that cannot become an example."""
    with open(file_name, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=field_delim)
        width = None
        for number, row in enumerate(reader, start=1):
            if time.monotonic() > deadline:
                return None
            if number == 1 and header:
                width = len(row)
                continue
            width = len(row) if width is None else width
            if len(row) != width:
                return f"{file_name}, line {number}: {len(row)} fields where the header has {width}"
            for value in row:
                try:
                    float(value)
                except ValueError:
                    return f"{file_name}, line {number}: {_clip(value, 40)!r} is not a number"
    return None


def _bad_image(file_names: list[str], deadline: float) -> str | None:
    """The first file of an image folder that does not decode as an image."""
    for name in file_names:
        if time.monotonic() > deadline:
            return None
        try:
            tf.io.decode_image(tf.io.read_file(name), expand_animations=False)
        except Exception:  # any failure to read or decode is what is looked for
            return f"{name} does not decode as an image; remove or replace it"
    return None


def locate_bad_input(source: Any, *, budget_s: float = LOCATE_BUDGET_S) -> str | None:
    """After a pipeline failed, the file (and line) of a CSV or image-folder source it could
    not read, found by reading the files again for at most `budget_s`; None otherwise."""
    deadline = time.monotonic() + budget_s
    try:
        if isinstance(source, CsvSource):
            for name in paths.glob_files(source.path, what="path")[1]:
                found = _bad_csv_line(
                    name, header=source.header, field_delim=source.field_delim, deadline=deadline
                )
                if found:
                    return found
        elif isinstance(source, ImageFolderSource):
            return _bad_image(
                list_image_folder(str(_resolve(source.path, what="image folder")))[1], deadline
            )
    except (OSError, PipelineLabError):
        return None
    return None
