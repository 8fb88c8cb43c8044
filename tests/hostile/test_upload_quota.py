"""Hostile uploads against the disk: zip bombs, quota, lying sizes, odd member names.

Found by the hostile-input campaign of issue 10: a 0.98 MB zip that unpacked to
1,000 MB was accepted twice (the uploads dir reached 2.2 GB), refused uploads
stayed on disk, and zip members with colliding or 300-character names escaped as
raw `FileExistsError`/`OSError`. Each case stores a few uploads in a fresh data
dir; the last one is refused with a message that names the problem and the fix,
or accepted. Either way the uploads dir then holds exactly what was accepted: no
temporary folder, nothing half written, and never more than the quota.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline_core.paths import uploads_dir
from pipeline_core.uploads import (
    ENV_QUOTA,
    MAX_NAME_BYTES,
    UploadError,
    ZipLimits,
    delete_upload,
    list_uploads,
    store_upload,
    uploads_usage,
)

MB = 1 << 20
STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
PNG = bytes.fromhex(  # a valid 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a3a7f90000000049454e44ae426082"
)


@pytest.fixture(autouse=True)
def fresh_home(tmp_path, monkeypatch) -> Path:
    """Each case gets its own data dir, so quotas and usage start at zero."""
    monkeypatch.setenv("PIPELINE_LAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _zip(entries: list[tuple[str, bytes]], compression: int = STORED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: that is the point
        with zipfile.ZipFile(buf, "w", compression=compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buf.getvalue()


def _noise(n: int, seed: int = 0) -> bytes:
    """Bytes that do not compress, so a zip's size is its unpacked size."""
    return np.random.default_rng(seed).bytes(n)


def _images(size: int, seed: int = 0) -> bytes:
    """A zip of two classes whose unpacked size is about `size` bytes."""
    return _zip([("a/1.png", PNG), ("b/2.png", PNG), ("b/pad.png", _noise(size, seed))])


def _declare(data: bytes, member: int, size: int) -> bytes:
    """Rewrite the unpacked size a zip declares for its `member`-th entry (both headers)."""
    out = bytearray(data)
    for marker, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = -1
        for _ in range(member + 1):
            at = out.index(marker, at + 1)
        struct.pack_into("<I", out, at + offset, size)
    return bytes(out)


def _encrypted() -> bytes:
    """A zip whose member is flagged as encrypted (zipfile cannot write encryption)."""
    out = bytearray(_zip([("a/x.png", PNG)]))
    for marker, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.index(marker) + offset
        struct.pack_into("<H", out, at, struct.unpack_from("<H", out, at)[0] | 0x1)
    return bytes(out)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _npz(arrays: dict[str, bytes], compression: int = DEFLATED) -> bytes:
    return _zip([(k + ".npy", v) for k, v in arrays.items()], compression)


def _saved(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


LABELS = _saved(np.arange(4, dtype=np.int64))
# A compressed member of a few bytes whose headers declare 2 GB of float32: the check
# against the member's size passes (the zip declares 2 GB too); loading would not.
HUGE_DECLARED_NPZ = _declare(
    _npz({"x": _npy_header((2**29,)) + b"\0" * 64, "y": LABELS}),
    0,
    len(_npy_header((2**29,))) + 2**31,
)
LONG = "x" * 300


@dataclass(frozen=True)
class Case:
    """Uploads stored in order; all but the last must be accepted."""

    id: str
    uploads: Callable[[], list[tuple[str, bytes]]]
    refused: str | None  # a regex the last upload's message matches; None: accepted
    stored: int  # entries in the uploads dir afterwards
    quota_mb: float | None = None
    limits: ZipLimits = field(default_factory=ZipLimits)
    check: Callable[[list], None] | None = None  # runs on the StoredUploads


def _long_names_kept_unique(stored: list) -> None:
    files = sorted(p for p in stored[-1].path.rglob("*") if p.is_file())
    assert len(files) == 3
    assert len({p.name for p in files}) == 3  # cut to the same prefix, told apart by a hash
    for path in files:
        assert len(path.name.encode()) <= MAX_NAME_BYTES
        assert path.suffix == ".png"


def _colliding_names_all_kept(stored: list) -> None:
    files = sorted(p.name for p in stored[-1].path.rglob("*") if p.is_file())
    assert len(files) == 5, files  # none overwrote another


def _long_class_names(stored: list) -> None:
    classes = sorted(p.name for p in stored[-1].path.iterdir())
    assert len(classes) == 2 and all(len(c.encode()) <= MAX_NAME_BYTES for c in classes)
    assert classes[0] != classes[1]


CASES = [
    Case(
        "zip-bomb-over-per-zip-cap",
        lambda: [("bomb.zip", _zip([("a/x.png", PNG), ("a/big.png", b"\0" * 3 * MB)], DEFLATED))],
        r"unpacks to more than 1 MB; upload a smaller sample",
        0,
        limits=ZipLimits(max_unpacked_bytes=MB),
    ),
    Case(
        "zip-declaring-1100-MB-refused-from-its-directory",
        lambda: [("bomb.zip", _declare(_zip([("a/x.png", PNG)], DEFLATED), 0, 1100 * MB))],
        r"unpacks to more than 1024 MB",
        0,
    ),
    Case(
        "second-zip-over-the-quota-refused-first-kept",
        lambda: [("one.zip", _images(600_000, 1)), ("two.zip", _images(600_000, 2))],
        r"'two.zip' needs 586 KB once unpacked, but the uploads dir holds 586 KB of 1.0 MB of "
        r"its quota \(438 KB free\); delete uploads you no longer need \(Design page, 'Stored "
        rf"uploads'\), or raise {ENV_QUOTA}",
        1,
        quota_mb=1,
    ),
    Case(
        "same-zip-twice-reuses-the-stored-copy",
        lambda: [("one.zip", _images(600_000)), ("one.zip", _images(600_000))],
        None,
        1,
        quota_mb=1,
    ),
    Case(
        "same-bytes-under-another-name-reuse-the-stored-copy",
        lambda: [("one.zip", _images(600_000)), ("one (1).zip", _images(600_000))],
        None,
        1,
        quota_mb=1,
    ),
    Case(
        "zip-lying-about-file-size",
        lambda: [("liar.zip", _declare(_zip([("a/x.png", PNG), ("b/y.png", _noise(MB))]), 1, 10))],
        r"'liar.zip' is damaged \(Bad CRC-32.*re-create the zip",
        0,
    ),
    Case(
        "same-member-twice",
        lambda: [("dup.zip", _zip([("a/x.png", PNG), ("b/y.png", PNG), ("a/x.png", PNG)]))],
        r"the zip holds the entry 'a/x.png' twice, so one would overwrite the other",
        0,
    ),
    Case(
        "member-both-file-and-folder",
        lambda: [("both.zip", _zip([("a/x.png", PNG), ("b", PNG), ("b/y.png", PNG)]))],
        r"the zip entry 'b/y.png' uses 'b' both as a file and as a folder",
        0,
    ),
    Case(
        "names-colliding-after-cleaning-or-case-folding",
        lambda: [
            (
                "fold.zip",
                _zip(
                    [
                        ("a/X.png", PNG),
                        ("a/x.png", PNG),
                        ("b/p|q.png", PNG),
                        ("b/p?q.png", PNG),
                        ("b/p_q.png", PNG),
                    ]
                ),
            )
        ],
        None,
        1,
        check=_colliding_names_all_kept,
    ),
    Case(
        "300-character-member-names",
        lambda: [
            (
                "long.zip",
                _zip([(f"a/{LONG}1.png", PNG), (f"a/{LONG}2.png", PNG), ("b/y.png", PNG)]),
            )
        ],
        None,
        1,
        check=_long_names_kept_unique,
    ),
    Case(
        "300-character-class-names",
        lambda: [("long.zip", _zip([(f"{LONG}a/1.png", PNG), (f"{LONG}b/1.png", PNG)]))],
        None,
        1,
        check=_long_class_names,
    ),
    Case(
        "encrypted-member",
        lambda: [("locked.zip", _encrypted())],
        r"the zip entry 'a/x.png' is encrypted; zip the images without a password",
        0,
    ),
    Case(
        "path-nested-too-deep",
        lambda: [("deep.zip", _zip([("/".join(["d" * 100] * 12) + "/x.png", PNG)]))],
        r"is nested too deep \(its path is over 1024 bytes\)",
        0,
    ),
    Case(
        "npz-declaring-2-GB",
        lambda: [("huge.npz", HUGE_DECLARED_NPZ)],
        r"'huge.npz' declares 2,048 MB of array data \(array 'x': shape \(536870912,\) of "
        r"float32, 2,048 MB\), more than the 1,024 MB an uploaded .npz may hold once loaded",
        0,
    ),
    Case(
        "compressed-npz-over-the-cap",
        lambda: [("zeros.npz", _npz({"x": _saved(np.zeros(MB // 2, np.float32))}))],
        r"declares 2.0 MB of array data .* more than the 1.0 MB",
        0,
        limits=ZipLimits(max_unpacked_bytes=MB),
    ),
    Case(
        "csv-over-the-quota",
        lambda: [("t.csv", b"a,label\n" + b"1,0\n" * 300_000)],
        r"'t.csv' needs 1.1 MB, but the uploads dir holds 0 bytes of 1.0 MB",
        0,
        quota_mb=1,
    ),
    Case(
        "images-without-class-folders-refused-after-unpacking",
        lambda: [("flat.zip", _zip([("x.png", PNG)]))],
        r"no class sub-folders",
        0,
    ),
]


def _entries() -> list[str]:
    return sorted(p.name for p in uploads_dir().iterdir())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_upload(case: Case, monkeypatch):
    if case.quota_mb is not None:
        monkeypatch.setenv(ENV_QUOTA, str(case.quota_mb))
    *accepted, last = case.uploads()
    stored = [store_upload(name, data, limits=case.limits) for name, data in accepted]
    before = _entries()
    if case.refused is None:
        stored.append(store_upload(*last, limits=case.limits))
    else:
        with pytest.raises(UploadError, match=case.refused):
            store_upload(*last, limits=case.limits)
        assert _entries() == before, "a refused upload leaves nothing behind"
    entries = _entries()
    assert len(entries) == case.stored, entries
    assert not [e for e in entries if e.startswith(".") or e.endswith(".partial")]
    usage = uploads_usage()
    assert usage.used_bytes <= usage.quota_bytes
    if case.check is not None:
        case.check(stored)


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", "", "a/b", "/etc/passwd", "..\\x", ".partial-abc", "x\x00y"],
)
def test_delete_refuses_anything_but_a_stored_upload(name, fresh_home):
    store_upload("t.csv", b"a,label\n1,0\n")
    (fresh_home / "x").write_text("keep me")  # what "../x" names, next to the uploads dir
    with pytest.raises(UploadError, match="not the name of a stored upload"):
        delete_upload(name)
    assert (fresh_home / "x").read_text() == "keep me"
    assert [u.name for u in list_uploads()] == [p.name for p in uploads_dir().iterdir()]


def test_delete_of_a_missing_upload_says_so():
    with pytest.raises(UploadError, match="no stored upload named 'gone.csv'"):
        delete_upload("gone.csv")


def test_delete_frees_the_quota_for_the_next_upload(monkeypatch):
    monkeypatch.setenv(ENV_QUOTA, "1")
    first = store_upload("one.zip", _images(600_000, 1))
    with pytest.raises(UploadError, match="quota"):
        store_upload("two.zip", _images(600_000, 2))
    name = first.path.relative_to(uploads_dir()).parts[0]
    used = uploads_usage().used_bytes
    assert delete_upload(name) == used
    assert uploads_usage().used_bytes == 0 and list_uploads() == []
    second = store_upload("two.zip", _images(600_000, 2))
    assert [u.name for u in list_uploads()] == [second.path.relative_to(uploads_dir()).parts[0]]


def test_bad_quota_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_QUOTA, "lots")
    with pytest.raises(UploadError, match=f"{ENV_QUOTA}='lots' is not a number of megabytes"):
        store_upload("t.csv", b"a,label\n1,0\n")
    assert _entries() == []
