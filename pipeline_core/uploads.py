"""Safe handling of files uploaded in the browser.

An upload is one of: a zip of an image folder (one sub-folder per class), an
`.npz` archive, a `.csv` file or a `.tfrecord` file. It is stored under
`paths.uploads_dir()` and turned into the source JSON that reads it. A hostile
zip (path traversal, links, too many files, too large once unpacked) is
refused with an `UploadError` that says what is wrong and what to do; so is an
`.npz` with an array of Python objects, a structured or non-numeric dtype, or a
header that declares more data than the member holds (only headers are read).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline_core.errors import PipelineLabError
from pipeline_core.paths import uploads_dir

UPLOAD_SUFFIXES: tuple[str, ...] = (".zip", ".npz", ".csv", ".tfrecord")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
MAX_UPLOAD_MB = 200  # matches server.maxUploadSize in .streamlit/config.toml
MAX_ZIP_FILES = 20_000
MAX_UNPACKED_MB = 1024
_CHUNK = 1 << 20


class UploadError(PipelineLabError):
    """An upload was refused; the message names the problem and the fix."""


@dataclass(frozen=True)
class ZipLimits:
    """Limits a zip must respect before anything is written to disk."""

    max_files: int = MAX_ZIP_FILES
    max_unpacked_bytes: int = MAX_UNPACKED_MB * 1024 * 1024


@dataclass(frozen=True)
class StoredUpload:
    """Where an upload was stored and the source (JSON data) that reads it."""

    kind: str  # "image_folder", "npz", "csv" or "tfrecord"
    path: Path
    source: dict[str, Any]
    notes: tuple[str, ...] = field(default=())


def store_upload(
    name: str,
    data: bytes,
    *,
    limits: ZipLimits = ZipLimits(),
    max_bytes: int = MAX_UPLOAD_MB * 1024 * 1024,
) -> StoredUpload:
    """Store an uploaded file under the uploads dir and describe the source that reads it.

    Args:
        name: the file name the browser sent (only its last part is used).
        data: the file's bytes.
        limits: file count and unpacked size a zip may have.
        max_bytes: the largest upload accepted.

    Raises:
        UploadError: the file type is not supported, the file is empty, too large,
            not what its suffix says, or a zip is hostile.
    """
    safe = _safe_name(name)
    suffix = PurePosixPath(safe).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadError(
            f"cannot use {name!r}: unsupported file type {suffix or '(none)'}; "
            f"upload one of {', '.join(UPLOAD_SUFFIXES)}"
        )
    if not data:
        raise UploadError(f"{name!r} is empty; upload a file with data in it")
    if len(data) > max_bytes:
        raise UploadError(
            f"{name!r} is {len(data) / 2**20:.1f} MB, above the {max_bytes / 2**20:.0f} MB "
            "upload limit; upload a smaller file or put the data in the data dir and type its path"
        )
    digest = hashlib.sha256(data).hexdigest()[:12]
    stem = PurePosixPath(safe).stem
    handler = {
        ".zip": _store_zip,
        ".npz": _store_npz,
        ".csv": _store_csv,
        ".tfrecord": _store_tfrecord,
    }[suffix]
    return handler(name, data, uploads_dir() / f"{stem}-{digest}", limits)


def _safe_name(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return cleaned[:120]


def _placeholder(path: Path) -> str:
    """A path written with `{data_dir}` so a spec stays portable between machines."""
    root = uploads_dir().parent
    try:
        return "{data_dir}/" + path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --- zip of an image folder ----------------------------------------------------


def check_zip(
    archive: zipfile.ZipFile, *, limits: ZipLimits = ZipLimits()
) -> list[zipfile.ZipInfo]:
    """The members to extract; raises `UploadError` for a hostile or useless zip."""
    members = [m for m in archive.infolist() if not _ignored(m.filename)]
    files = [m for m in members if not m.is_dir()]
    if len(files) > limits.max_files:
        raise UploadError(
            f"the zip holds {len(files)} files, more than the {limits.max_files} allowed; "
            "upload a smaller sample or put the folder in the data dir and type its path"
        )
    total = 0
    for member in members:
        _check_member_name(member.filename)
        mode = member.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadError(
                f"the zip holds a symbolic link ({member.filename!r}), which is refused; "
                "zip the image files themselves"
            )
        total += member.file_size
        if total > limits.max_unpacked_bytes:
            raise UploadError(
                f"the zip unpacks to more than {limits.max_unpacked_bytes / 2**20:.0f} MB; "
                "upload a smaller sample or put the folder in the data dir and type its path"
            )
    return files


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" or p.startswith("._") or p == ".DS_Store" for p in parts)


def _check_member_name(name: str) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    if (
        posix.is_absolute()
        or ".." in posix.parts
        or re.match(r"^[A-Za-z]:", name)
        or "\x00" in name
    ):
        raise UploadError(
            f"the zip entry {name!r} points outside the folder it unpacks to (path traversal) "
            "and is refused; zip the image folder with relative paths"
        )


def _store_zip(name: str, data: bytes, target: Path, limits: ZipLimits) -> StoredUpload:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError(f"{name!r} is not a valid zip file; re-create the zip") from None
    with archive:
        files = check_zip(archive, limits=limits)
        if not any(PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES for m in files):
            raise UploadError(
                f"{name!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "zip a folder with one sub-folder of images per class"
            )
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _extract(archive, files, staging, limits)
        except (zipfile.BadZipFile, EOFError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UploadError(f"{name!r} is damaged ({exc}); re-create the zip") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if target.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    root = _class_root(target)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UploadError(
            f"{name!r} has images but no class sub-folders; zip a folder with one "
            "sub-folder of images per class (the sub-folder names become the labels)"
        )
    notes = (
        f"{len(classes)} classes: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}",
    )
    source = {"type": "image_folder", "path": _placeholder(root)}
    return StoredUpload("image_folder", root, source, notes)


def _extract(
    archive: zipfile.ZipFile, files: list[zipfile.ZipInfo], staging: Path, limits: ZipLimits
) -> None:
    """Extract regular files, counting real bytes (a zip's header sizes may lie)."""
    written = 0
    root = staging.resolve()
    for member in files:
        dest = (staging / member.filename.replace("\\", "/")).resolve()
        if root not in dest.parents:
            raise UploadError(
                f"the zip entry {member.filename!r} points outside the folder it unpacks to "
                "(path traversal) and is refused; zip the image folder with relative paths"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limits.max_unpacked_bytes:
                    raise UploadError(
                        "the zip unpacks to more than "
                        f"{limits.max_unpacked_bytes / 2**20:.0f} MB; upload a smaller sample "
                        "or put the folder in the data dir and type its path"
                    )
                out.write(chunk)


def _class_root(folder: Path) -> Path:
    """Descend through single wrapper folders (e.g. `flowers/` around the classes)."""
    current = folder
    while True:
        entries = [p for p in current.iterdir() if not _ignored(p.name)]
        dirs = [p for p in entries if p.is_dir()]
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(dirs) == 1 and not images and any(d.is_dir() for d in dirs[0].iterdir()):
            current = dirs[0]
        else:
            return current


# --- single files --------------------------------------------------------------


def _write(target: Path, suffix: str, data: bytes) -> Path:
    path = target.with_name(target.name + suffix)
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.rename(path)
    return path


def _store_npz(name: str, data: bytes, target: Path, limits: ZipLimits) -> StoredUpload:
    import numpy as np

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            keys = list(archive.files)
            compressed = _npz_compressed(data)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UploadError(
            f"{name!r} is not a readable .npz archive ({exc}); save it with numpy.savez"
        ) from None
    if not keys:
        raise UploadError(f"{name!r} holds no arrays; save features (and labels) with numpy.savez")
    features = "x" if "x" in keys else keys[0]
    labels = "y" if "y" in keys else next((k for k in keys if k != features), None)
    _check_npz_headers(name, data, keys)
    path = _write(target, ".npz", data)
    notes = [f"arrays: {', '.join(keys)}"]
    if compressed:
        # Compressed members cannot be memory-mapped: load them into memory instead.
        source = {"type": "numpy", "path": _placeholder(path), "features_key": features}
        if labels:
            source["labels_key"] = labels
        notes.append("compressed .npz: loaded into memory (save with numpy.savez to memory-map)")
        return StoredUpload("npz", path, source, tuple(notes))
    source = {"type": "npz", "path": _placeholder(path), "features_key": features}
    source["labels_key"] = labels
    return StoredUpload("npz", path, source, tuple(notes))


def _check_npz_headers(name: str, data: bytes, keys: list[str]) -> None:
    """Refuse objects, structured or non-numeric dtypes and truncated members (headers only)."""
    from pipeline_core.sources import SourceError, read_npz_header

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for key in keys:
                what = f"array {key!r} of {name!r}"
                read_npz_header(archive, key, what=what, archive_size=len(data))
    except SourceError as exc:
        raise UploadError(str(exc)) from None


def _npz_compressed(data: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return any(m.compress_type != zipfile.ZIP_STORED for m in archive.infolist())


def _store_csv(name: str, data: bytes, target: Path, limits: ZipLimits) -> StoredUpload:
    try:
        text = data[: 64 * 1024].decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(f"{name!r} is not UTF-8 text; save the CSV as UTF-8") from None
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise UploadError(
            f"{name!r} needs a header line and at least one data row with two or more columns "
            "(features and a label)"
        )
    header = [h.strip() for h in rows[0]]
    label = "label" if "label" in header else header[-1]
    path = _write(target, ".csv", data)
    notes = (f"columns: {', '.join(header[:12])}{' ...' if len(header) > 12 else ''}",)
    source = {"type": "csv", "path": _placeholder(path), "label_column": label}
    return StoredUpload("csv", path, source, notes)


def _store_tfrecord(name: str, data: bytes, target: Path, limits: ZipLimits) -> StoredUpload:
    if len(data) < 16:
        raise UploadError(f"{name!r} is too short to hold a TFRecord; upload a .tfrecord file")
    length = int.from_bytes(data[:8], "little")
    if length <= 0 or 16 + length > len(data):
        raise UploadError(
            f"{name!r} does not look like a TFRecord file (bad first record length); "
            "upload a file written by tf.io.TFRecordWriter (uncompressed)"
        )
    path = _write(target, ".tfrecord", data)
    from pipeline_core.sources import SourceError, infer_tfrecord_features

    try:
        features = infer_tfrecord_features(str(path))
    except SourceError as exc:
        path.unlink(missing_ok=True)
        raise UploadError(f"{name!r}: {exc}") from None
    source = {"type": "tfrecord", "files": _placeholder(path), **_tfrecord_keys(features)}
    notes = (f"features: {', '.join(f'{k} ({v[1]})' for k, v in features.items())}",)
    return StoredUpload("tfrecord", path, source, notes)


def _tfrecord_keys(features: dict[str, tuple[str, str, tuple[int, ...]]]) -> dict[str, Any]:
    """Which feature holds the example and which the label; encoded images get decoded."""
    names = list(features)
    label = "label" if "label" in features else None
    if label is None:
        label = next((n for n in names if features[n][1] == "int64" and features[n][2] == ()), None)
    rest = [n for n in names if n != label] or names
    feature = "image" if "image" in features else rest[0]
    return {
        "features_key": feature,
        "label_key": label if label != feature else None,
        "decode_image": features[feature][1] == "string",
    }
