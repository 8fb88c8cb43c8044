"""Safe handling of files uploaded in the browser.

An upload is one of: a zip of an image folder (one sub-folder per class), an
`.npz` archive, a `.csv` file or a `.tfrecord` file. It is stored under
`paths.uploads_dir()` and turned into the source JSON that reads it. A hostile
zip (path traversal, links, encrypted or duplicated entries, too many files, too
large once unpacked) is refused with an `UploadError` that says what is wrong and
what to do; so is an `.npz` with an array of Python objects, a structured or
non-numeric dtype, a header that declares more data than the member holds, or
more array data than `ZipLimits.max_unpacked_bytes` (only headers are read).

Everything an upload writes goes first to a temporary folder inside the uploads
dir and is renamed into place only once it is checked, so a refused upload leaves
nothing behind. The uploads dir has a total quota (`PIPELINE_LAB_UPLOAD_QUOTA_MB`,
default 2048 MB), checked before anything is written against the size the upload
takes once stored (a zip's unpacked size from its directory); identical bytes
uploaded again reuse the stored copy. `list_uploads`, `uploads_usage` and
`delete_upload` let the user see and free that space.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import math
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline_core.errors import PipelineLabError
from pipeline_core.paths import resolve_path, uploads_dir

UPLOAD_SUFFIXES: tuple[str, ...] = (".zip", ".npz", ".csv", ".tfrecord")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
MAX_UPLOAD_MB = 200  # matches server.maxUploadSize in .streamlit/config.toml
MAX_ZIP_FILES = 20_000
MAX_UNPACKED_MB = 1024
ENV_QUOTA = "PIPELINE_LAB_UPLOAD_QUOTA_MB"
DEFAULT_QUOTA_MB = 2048
MAX_NAME_BYTES = 120  # a stored file or folder name (filesystems allow 255, eCryptfs 143)
MAX_PATH_BYTES = 1024  # a zip member's path inside its upload folder
_MB = 1 << 20
_CHUNK = 1 << 20
_TEMP_PREFIX = ".partial-"
_STALE_S = 3600  # a temporary folder this old was left by a process that died
_LOCK = threading.Lock()  # the dashboard's sessions are threads of one process ...
_LOCK_FILE = ".uploads.lock"  # ... and each upload is checked in a child process of its own


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the uploads dir for one store or delete: threads of this process and other
    processes (each upload is checked in a child) wait for each other."""
    with _LOCK, open(root.parent / _LOCK_FILE, "a+b") as handle:  # beside, not in, uploads
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


class UploadError(PipelineLabError):
    """An upload was refused; the message names the problem and the fix."""


@dataclass(frozen=True)
class ZipLimits:
    """Limits a zip (or the arrays of an `.npz`) must respect before anything is written."""

    max_files: int = MAX_ZIP_FILES
    max_unpacked_bytes: int = MAX_UNPACKED_MB * _MB


@dataclass(frozen=True)
class StoredUpload:
    """Where an upload was stored and the source (JSON data) that reads it."""

    kind: str  # "image_folder", "npz", "csv" or "tfrecord"
    path: Path
    source: dict[str, Any]
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class UploadInfo:
    """One stored upload: a file or folder directly in the uploads dir."""

    name: str  # what `delete_upload` takes
    kind: str  # "image_folder", "npz", "csv", "tfrecord" or "other"
    size_bytes: int
    modified: float  # seconds since the epoch
    path: Path


@dataclass(frozen=True)
class UploadsUsage:
    """Bytes the uploads dir holds and the quota it may hold."""

    used_bytes: int
    quota_bytes: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.quota_bytes - self.used_bytes)

    def describe(self) -> str:
        """E.g. "312 MB of 2,048 MB"."""
        return f"{format_size(self.used_bytes)} of {format_size(self.quota_bytes)}"


def format_size(n: int) -> str:
    """A byte count for people: 512 bytes, 40 KB, 3.5 MB, 2,048 MB."""
    if n < 1024:
        return f"{n} bytes"
    if n < _MB:
        return f"{n / 1024:.0f} KB"
    if n < 10 * _MB:
        return f"{n / _MB:.1f} MB"
    return f"{n / _MB:,.0f} MB"


def upload_quota_bytes() -> int:
    """The uploads dir's quota: `$PIPELINE_LAB_UPLOAD_QUOTA_MB` megabytes, else 2048 MB."""
    raw = os.environ.get(ENV_QUOTA, "").strip()
    if not raw:
        return DEFAULT_QUOTA_MB * _MB
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = math.nan
    if not math.isfinite(megabytes) or megabytes < 0:
        raise UploadError(
            f"{ENV_QUOTA}={raw!r} is not a number of megabytes; set it to e.g. "
            f"{DEFAULT_QUOTA_MB}, or unset it for the default ({DEFAULT_QUOTA_MB} MB)"
        )
    return int(megabytes * _MB)


def uploads_usage() -> UploadsUsage:
    """What the uploads dir holds now (temporary folders included) and its quota."""
    return UploadsUsage(_tree_size(uploads_dir()), upload_quota_bytes())


def list_uploads() -> list[UploadInfo]:
    """The stored uploads, newest first (temporary folders of uploads in progress left out)."""
    found = []
    for entry in uploads_dir().iterdir():
        if _is_temporary(entry.name):
            continue
        try:
            modified = entry.lstat().st_mtime
        except OSError:  # deleted meanwhile
            continue
        found.append(UploadInfo(entry.name, _kind_of(entry), _tree_size(entry), modified, entry))
    return sorted(found, key=lambda u: (-u.modified, u.name))


def delete_upload(name: str) -> int:
    """Delete the stored upload `name` (a direct child of the uploads dir); returns bytes freed.

    Raises:
        UploadError: `name` is not the name of a stored upload (a path, `..`, a
            temporary folder, or nothing of that name), or it cannot be deleted.
    """
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00") or _is_temporary(name):
        raise UploadError(
            f"cannot delete {name!r}: not the name of a stored upload (a file or folder "
            "directly in the uploads dir); pick a name from the list of stored uploads"
        )
    root = uploads_dir()
    path = root / name
    with _locked(root):
        if path.parent != root or not (path.exists() or path.is_symlink()):
            raise UploadError(
                f"there is no stored upload named {name!r}; it may be deleted already"
            )
        size = _tree_size(path)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            raise UploadError(
                f"cannot delete the upload {name!r} ({exc.strerror or exc}); check the "
                f"permissions of {root}"
            ) from None
    return size


def uploads_read_by(source: dict[str, Any]) -> list[str]:
    """Names of the stored uploads that a source's JSON data reads (its path fields)."""
    root = uploads_dir().resolve()
    names: list[str] = []
    for value in source.values():
        if not isinstance(value, str) or not value:
            continue
        try:
            relative = resolve_path(value).resolve().relative_to(root)
        except (ValueError, OSError, RuntimeError):
            continue
        if relative.parts and relative.parts[0] not in names:
            names.append(relative.parts[0])
    return names


def _is_temporary(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) or name.endswith(".partial")


def _kind_of(path: Path) -> str:
    if path.is_dir() and not path.is_symlink():
        return "image_folder"
    return {".npz": "npz", ".csv": "csv", ".tfrecord": "tfrecord"}.get(path.suffix.lower(), "other")


def _tree_size(path: Path) -> int:
    """Bytes of the files at or under `path`; links are counted, never followed."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for folder, _, names in os.walk(path, followlinks=False):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _remove_stale(root: Path) -> None:
    """Temporary folders left by a process that died while storing an upload."""
    now = time.time()
    for entry in root.iterdir():
        if not _is_temporary(entry.name):
            continue
        try:
            if now - entry.lstat().st_mtime < _STALE_S:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            continue


@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A temporary folder inside the uploads dir, removed with whatever is left in it."""
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=root))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _existing(target: Path, *, suffix: str, folder: bool) -> Path | None:
    """A stored copy of the same bytes (same digest), under this or another name."""
    path = target.with_name(target.name + suffix)
    candidates = [path, *sorted(target.parent.glob(f"*-{target.name.rsplit('-', 1)[-1]}{suffix}"))]
    for candidate in candidates:
        if _is_temporary(candidate.name) or candidate.is_symlink():
            continue
        if candidate.is_dir() if folder else candidate.is_file():
            return candidate
    return None


def _check_quota(name: str, needed: int, *, unpacked: bool = False) -> int:
    """Refuse an upload that would take the uploads dir over its quota; the bytes free."""
    usage = uploads_usage()
    if usage.used_bytes + needed > usage.quota_bytes:
        raise UploadError(
            f"{name!r} needs {format_size(needed)}{' once unpacked' if unpacked else ''}, but "
            f"the uploads dir holds {usage.describe()} of its quota "
            f"({format_size(usage.free_bytes)} free); delete uploads you no longer need "
            f"(Design page, 'Stored uploads'), or raise {ENV_QUOTA}"
        )
    return usage.free_bytes


def _move_into_place(staged: Path, target: Path, name: str) -> Path:
    """Rename a checked upload into place; a copy stored meanwhile is reused."""
    try:
        staged.rename(target)
    except OSError as exc:
        if target.exists():
            return target
        raise UploadError(
            f"{name!r} could not be stored ({exc.strerror or exc}); check the permissions "
            f"and free space of {target.parent}"
        ) from None
    return target


def store_upload(
    name: str,
    data: bytes,
    *,
    limits: ZipLimits = ZipLimits(),
    max_bytes: int = MAX_UPLOAD_MB * 1024 * 1024,
) -> StoredUpload:
    """Store an uploaded file under the uploads dir and describe the source that reads it.

    Nothing is written unless the upload passes every check and fits the quota;
    the same bytes uploaded again reuse the stored copy (and take no more space).

    Args:
        name: the file name the browser sent (only its last part is used).
        data: the file's bytes.
        limits: file count and unpacked size a zip may have (and array bytes an npz may declare).
        max_bytes: the largest upload accepted.

    Raises:
        UploadError: the file type is not supported, the file is empty, too large,
            not what its suffix says, a zip is hostile, or the quota is reached.
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
    root = uploads_dir()
    with _locked(root):
        _remove_stale(root)
        try:
            return handler(name, data, root / f"{stem}-{digest}", limits)
        except OSError as exc:  # a full disk, permissions: a message, never a traceback
            raise UploadError(
                f"{name!r} could not be stored ({exc.strerror or exc}); free disk space or "
                f"check the permissions of {root}"
            ) from None


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
    """The members to extract; raises `UploadError` for a hostile or useless zip.

    The unpacked size is summed from the zip's central directory, before anything
    is written (zipfile never yields more than a member declares; `_extract` counts
    the real bytes as well).
    """
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
        if member.flag_bits & 0x1:
            raise UploadError(
                f"the zip entry {member.filename!r} is encrypted; zip the images without a password"
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


@dataclass
class _Level:
    """The names given inside one folder while planning a zip's extraction."""

    by_original: dict[str, tuple[str, bool]] = field(default_factory=dict)  # -> (name, is file)
    taken: set[str] = field(default_factory=set)  # normalized, case-folded names


def _plan_members(files: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Where each member is written, relative to the folder the zip unpacks to.

    Each part of a member's path is kept, except characters some filesystems refuse
    (control characters, `<>:"|?*`), which become `_`, and a part longer than
    `MAX_NAME_BYTES`, which is cut (keeping its suffix) and made unique with a hash.
    Names that collide once cleaned, or that differ only in case or Unicode form
    (one file on macOS or Windows), get a hash too, so no member overwrites another.

    Raises:
        UploadError: the same entry twice, an entry that is both a file and a
            folder, or a path too long even with its parts cut; the message names it.
    """
    levels: dict[tuple[str, ...], _Level] = {}
    plan = []
    for member in files:
        parts = [p for p in member.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts:
            raise UploadError(
                f"the zip entry {member.filename!r} has no file name; re-create the zip"
            )
        placed: list[str] = []
        for index, part in enumerate(parts):
            is_file = index == len(parts) - 1
            level = levels.setdefault(tuple(placed), _Level())
            seen = level.by_original.get(part)
            if seen is not None:
                given, was_file = seen
                if is_file and was_file:
                    raise UploadError(
                        f"the zip holds the entry {member.filename!r} twice, so one would "
                        "overwrite the other; re-create the zip with one entry per file"
                    )
                if is_file != was_file:
                    raise UploadError(
                        f"the zip entry {member.filename!r} uses {part!r} both as a file and "
                        "as a folder; rename one of them and zip the folder again"
                    )
                placed.append(given)
                continue
            given = _fit_name(part)
            if _fold(given) in level.taken:
                given = _fit_name(part, force_tag=True)
                counter = 2
                while _fold(given) in level.taken:
                    given = _fit_name(f"{part}\0{counter}", force_tag=True)
                    counter += 1
            level.taken.add(_fold(given))
            level.by_original[part] = (given, is_file)
            placed.append(given)
        relative = PurePosixPath(*placed)
        if len(str(relative).encode()) > MAX_PATH_BYTES:
            raise UploadError(
                f"the zip entry {member.filename[:80]!r}... is nested too deep (its path is "
                f"over {MAX_PATH_BYTES} bytes); zip the image folder with shorter paths"
            )
        plan.append((member, relative))
    return plan


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _fit_name(part: str, *, force_tag: bool = False) -> str:
    """`part` cleaned for any filesystem, cut to `MAX_NAME_BYTES` with a hash when needed."""
    cleaned = _UNSAFE_CHARS.sub("_", part)
    if not force_tag and len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    suffix = PurePosixPath(cleaned).suffix
    if len(suffix.encode()) > 16:
        suffix = ""
    stem = cleaned[: len(cleaned) - len(suffix)]
    tag = hashlib.sha256(part.encode("utf-8", "replace")).hexdigest()[:8]
    room = MAX_NAME_BYTES - len(suffix.encode()) - len(tag) - 1
    stem = stem.encode()[:room].decode("utf-8", "ignore")
    return f"{stem}-{tag}{suffix}"


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
        plan = _plan_members(files)
        folder = _existing(target, suffix="", folder=True)
        if folder is None:
            needed = sum(m.file_size for m in files)
            free = _check_quota(name, needed, unpacked=True)
            with _staging(target.parent) as temp:
                staged = temp / target.name
                try:
                    _extract(archive, plan, staged, limits=limits, free_bytes=free)
                except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
                    raise UploadError(f"{name!r} is damaged ({exc}); re-create the zip") from None
                _image_classes(name, staged)
                folder = _move_into_place(staged, target, name)
    root, classes = _image_classes(name, folder)
    notes = (
        f"{len(classes)} classes: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}",
    )
    source = {"type": "image_folder", "path": _placeholder(root)}
    return StoredUpload("image_folder", root, source, notes)


def _image_classes(name: str, folder: Path) -> tuple[Path, list[str]]:
    root = _class_root(folder)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UploadError(
            f"{name!r} has images but no class sub-folders; zip a folder with one "
            "sub-folder of images per class (the sub-folder names become the labels)"
        )
    return root, classes


def _extract(
    archive: zipfile.ZipFile,
    plan: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    staging: Path,
    *,
    limits: ZipLimits,
    free_bytes: int,
) -> None:
    """Extract regular files, counting real bytes (a zip's header sizes may lie)."""
    written = 0
    staging.mkdir()
    root = staging.resolve()
    for member, relative in plan:
        dest = root.joinpath(*relative.parts)
        if root not in dest.resolve().parents:
            raise UploadError(
                f"the zip entry {member.filename!r} points outside the folder it unpacks to "
                "(path traversal) and is refused; zip the image folder with relative paths"
            )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(dest, "xb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > limits.max_unpacked_bytes:
                        raise UploadError(
                            "the zip unpacks to more than "
                            f"{limits.max_unpacked_bytes / 2**20:.0f} MB; upload a smaller "
                            "sample or put the folder in the data dir and type its path"
                        )
                    if written > free_bytes:
                        raise UploadError(
                            f"the zip unpacks to more than the {format_size(free_bytes)} left "
                            "in the uploads quota; delete uploads you no longer need (Design "
                            f"page, 'Stored uploads'), or raise {ENV_QUOTA}"
                        )
                    out.write(chunk)
        except OSError as exc:
            raise UploadError(
                f"the zip entry {member.filename!r} could not be unpacked "
                f"({exc.strerror or exc}); free disk space, or zip the folder again with "
                "shorter, unique file names"
            ) from None


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


def _store_file(name: str, data: bytes, target: Path, suffix: str, check=None) -> Path:
    """Write a checked single-file upload (or reuse a stored copy of the same bytes).

    `check(path)` runs on the written copy before it is moved into place; what it
    raises leaves nothing behind.
    """
    existing = _existing(target, suffix=suffix, folder=False)
    if existing is not None:
        return existing
    _check_quota(name, len(data))
    path = target.with_name(target.name + suffix)
    with _staging(target.parent) as temp:
        staged = temp / path.name
        staged.write_bytes(data)
        if check is not None:
            check(staged)
        return _move_into_place(staged, path, name)


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
    _check_npz_headers(name, data, keys, limits)
    path = _store_file(name, data, target, ".npz")
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


def _check_npz_headers(
    name: str, data: bytes, keys: list[str], limits: ZipLimits = ZipLimits()
) -> None:
    """Refuse objects, structured or non-numeric dtypes, truncated members and too much data.

    Only headers are read. The array bytes the headers declare are capped at
    `limits.max_unpacked_bytes`: a compressed member is loaded into memory whole,
    and a few kilobytes of zeros can declare gigabytes.
    """
    from pipeline_core.sources import SourceError, read_npz_header

    declared = 0
    largest = ("", 0, "")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for key in keys:
                what = f"array {key!r} of {name!r}"
                header = read_npz_header(archive, key, what=what, archive_size=len(data))
                size = math.prod(header.shape) * header.dtype.itemsize
                declared += size
                if size > largest[1]:
                    largest = (key, size, f"shape {header.shape} of {header.dtype}")
    except SourceError as exc:
        raise UploadError(str(exc)) from None
    if declared > limits.max_unpacked_bytes:
        key, size, described = largest
        raise UploadError(
            f"{name!r} declares {format_size(declared)} of array data (array {key!r}: "
            f"{described}, {format_size(size)}), more than the "
            f"{format_size(limits.max_unpacked_bytes)} an uploaded .npz may hold once "
            "loaded; upload a smaller sample, or put the file in the data dir and type its path"
        )


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
    path = _store_file(name, data, target, ".csv")
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
    from pipeline_core.sources import SourceError, infer_tfrecord_features

    def infer(path: Path) -> dict[str, tuple[str, str, tuple[int, ...]]]:
        try:
            return infer_tfrecord_features(str(path))
        except SourceError as exc:
            # The path is a temporary one: name the upload instead.
            raise UploadError(f"{name!r}: {str(exc).replace(repr(str(path)), 'it')}") from None

    inferred: list[dict[str, tuple[str, str, tuple[int, ...]]]] = []
    path = _store_file(name, data, target, ".tfrecord", check=lambda p: inferred.append(infer(p)))
    features = inferred[0] if inferred else infer(path)  # else a stored copy is reused
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


@dataclass(frozen=True)
class UploadAnswer:
    """What `upload_job` sends back: the stored upload, or why it was refused."""

    stored: StoredUpload | None = None
    refused: str | None = None


def upload_job(name: str, data: bytes, *, progress: Any = None) -> UploadAnswer:
    """`store_upload` as an isolated job (`pipeline_core.isolate`): a page checks and
    unpacks an upload in a child process, never in the server (a TFRecord's features
    are read with TensorFlow, a zip is unpacked)."""
    try:
        return UploadAnswer(stored=store_upload(name, data))
    except UploadError as exc:
        return UploadAnswer(refused=str(exc))
