"""Hostile .npy/.npz files: refused from their headers alone, before anything is mapped.

Each case is a file whose array holds Python objects (a pickle, or raw bytes that
a memory map would use as object pointers: the Streamlit server died with SIGSEGV
on such an upload), a structured or non-numeric dtype, or a header that declares
more data than the file holds. Every way in -- the sources (`npy`, `npz`,
`numpy`), a browser upload, the command line -- answers with a message that names
the file or member, the problem and the fix; the CLI exits 2 or fails the run
(exit 1) with the message, never by a signal.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline_core import sources
from pipeline_core.sources import SourceError, build_source
from pipeline_core.spec import NpySource, NpzSource, NumpySource
from pipeline_core.uploads import UploadError, store_upload
from tests import REPO

STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED


def _npy(descr: object, shape: tuple[int, ...], data: bytes = b"", *, version=(1, 0)) -> bytes:
    """`.npy` bytes whose header says `descr`/`shape`, followed by `data` as given."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    writer = (
        np.lib.format.write_array_header_1_0
        if version == (1, 0)
        else np.lib.format.write_array_header_2_0
    )
    writer(buf, header)
    return buf.getvalue() + data


def _saved(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)  # writing a hostile file; reading never pickles
    return buf.getvalue()


def _npz(members: dict[str, bytes], compression: int = STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for key, data in members.items():
            archive.writestr(key + ".npy", data)
    return buf.getvalue()


LABELS = _saved(np.arange(4, dtype=np.int64))
OBJECTS = np.array([[1], ["a"], [None], [2.5]], dtype=object)
# The crash of the issue: '|O' declared over 6 KB of bytes that are no pickle; before
# headers were checked, mapping it and reading a row killed the process (SIGSEGV).
RAW_OBJECT_POINTERS = _npy("|O", (4, 187), np.random.default_rng(0).bytes(6000))
STRUCTURED = np.zeros(4, dtype=[("pixels", "f4", (2,)), ("label", "i8")])
TRUNCATED = _npy("<f4", (1000,), b"\0" * 40)
HUGE = _npy("<f4", (10**12, 10**6), b"\0" * 16)

NUMERIC = "save it with a numeric dtype: "
NPZ_FIX = NUMERIC + "np.savez(path, x=arr.astype('float32'))"
NPY_FIX = NUMERIC + "np.save(path, arr.astype('float32'))"
UNPICKLE = "holds Python objects (dtype object); reading them means unpickling"

# (case, .npy bytes of the features, message for an .npy file, message for an npz member)
ARRAYS: list[tuple[str, bytes, str, str]] = [
    (
        "object-pickle",
        _saved(OBJECTS),
        f"{UNPICKLE}, which can run code from the file, so they are refused: {NPY_FIX}",
        f"{UNPICKLE}, which can run code from the file, so they are refused: {NPZ_FIX}",
    ),
    ("object-raw-pointers", RAW_OBJECT_POINTERS, UNPICKLE, UNPICKLE),
    (
        "structured",
        _saved(STRUCTURED),
        "has a structured dtype (fields: pixels, label); TensorFlow needs one numeric dtype "
        "per array: save each field as its own array, e.g. np.save(path, arr['pixels'])",
        "e.g. np.savez(path, x=arr['pixels'])",
    ),
    ("text", _saved(np.array(["ab", "cd"])), "has dtype <U2 (text); features need", NPZ_FIX),
    ("datetime", _npy("<M8[s]", (2,), b"\0" * 16), "has dtype datetime64[s] (datetimes)", NPZ_FIX),
    ("subarray", _npy(("<f4", (3,)), (2,), b"\0" * 24), "(sub-arrays)", NPZ_FIX),
    (
        "truncated",
        TRUNCATED,
        "is truncated: its header declares shape (1000,) of float32 (4,000 bytes) but only "
        "40 bytes of data follow; copy the file again, or save the array again with "
        "np.save(path, arr)",
        "but only 40 bytes of data follow",
    ),
    (
        "huge-shape-tiny-file",
        HUGE,
        "declares shape (1000000000000, 1000000) of float32 (about 10^18 bytes) but only 16 bytes",
        "(about 10^18 bytes) but only 16 bytes",
    ),
    ("negative-shape", _npy("<f4", (-5,)), "declares an impossible shape (-5,)", "impossible"),
    (
        "not-npy",
        b"root:x:0:0:root:/root:/bin/bash\n" * 4,
        "is not a .npy array (it does not start with numpy's magic string)",
        "is not a .npy array",
    ),
    (
        "header-cut-short",
        b"\x93NUMPY\x01\x00" + struct.pack("<H", 500) + b"{'descr': '<f4'",
        "has a damaged .npy header (cut short or over 65,536 bytes)",
        "damaged .npy header",
    ),
    (
        "header-4gb-long",
        b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{" * 64,
        "has a damaged .npy header",
        "damaged .npy header",
    ),
    (
        "header-garbage",
        b"\x93NUMPY\x01\x00" + struct.pack("<H", 16) + b"{'shape': ((((((",
        "has a .npy header numpy cannot parse; save the array again with np.save(path, arr)",
        "numpy cannot parse",
    ),
    ("format-3", _npy("<f4", (1,), b"\0" * 4)[:6] + b"\x03\x00", "format version 3.0", "3.0"),
]
IDS = [case[0] for case in ARRAYS]


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("case, data, npy_message, _", ARRAYS, ids=IDS)
@pytest.mark.parametrize("make", [NpySource, NumpySource], ids=["npy", "numpy"])
def test_npy_file_refused(case, data, npy_message, _, make, tmp_path):
    path = _write(tmp_path, "bad.npy", data)
    source = make(features_path=path) if make is NpySource else make(path=path)
    with pytest.raises(SourceError) as caught:
        build_source(source)
    assert str(caught.value).startswith(repr(path))
    assert npy_message in str(caught.value)
    assert "root:" not in str(caught.value)  # file contents are never echoed


NPZ_SOURCES: dict[str, Callable[[str], object]] = {
    "npz": lambda p: NpzSource(path=p),
    "numpy": lambda p: NumpySource(path=p),
}


@pytest.mark.parametrize("case, data, _, npz_message", ARRAYS, ids=IDS)
@pytest.mark.parametrize("compression", [STORED, DEFLATED], ids=["stored", "compressed"])
@pytest.mark.parametrize("kind", sorted(NPZ_SOURCES))
def test_npz_member_refused(case, data, _, npz_message, compression, kind, tmp_path):
    path = _write(tmp_path, "bad.npz", _npz({"x": data, "y": LABELS}, compression))
    with pytest.raises(SourceError) as caught:
        build_source(NPZ_SOURCES[kind](path))
    text = str(caught.value)
    assert text.startswith(f"array 'x' of {path!r}"), text
    assert npz_message in text


@pytest.mark.parametrize("case, data, _, npz_message", ARRAYS, ids=IDS)
@pytest.mark.parametrize("compression", [STORED, DEFLATED], ids=["stored", "compressed"])
def test_npz_upload_refused_and_not_stored(case, data, _, npz_message, compression, lab_home):
    from pipeline_core.paths import uploads_dir

    before = set(uploads_dir().glob("*")) if uploads_dir().exists() else set()
    with pytest.raises(UploadError) as caught:
        store_upload("hostile.npz", _npz({"x": data, "y": LABELS}, compression))
    assert str(caught.value).startswith("array 'x' of 'hostile.npz'")
    assert npz_message in str(caught.value)
    after = set(uploads_dir().glob("*")) if uploads_dir().exists() else set()
    assert after == before


def test_member_ending_past_the_archive_is_refused(tmp_path):
    """A stored member whose declared size runs past the end of the file (a lying directory)."""
    good = np.arange(64, dtype=np.float32)
    data = bytearray(_npz({"x": _saved(good)}))
    directory = data.rindex(b"PK\x01\x02")
    for offset in (20, 24):  # compressed and uncompressed size in the central directory
        struct.pack_into("<I", data, directory + offset, 10**6)
    path = _write(tmp_path, "liar.npz", bytes(data))
    with pytest.raises(SourceError, match="is truncated: the archive ends 999,5.. bytes before"):
        build_source(NpzSource(path=path, labels_key=None))


@pytest.mark.parametrize("kind", sorted(NPZ_SOURCES))
def test_corrupt_compressed_member_is_refused(kind, tmp_path):
    data = bytearray(_npz({"x": _saved(np.arange(1000.0)), "y": LABELS}, DEFLATED))
    data[40:80] = b"\xff" * 40  # inside the deflate stream of x.npy
    path = _write(tmp_path, "corrupt.npz", bytes(data))
    with pytest.raises(SourceError) as caught:
        build_source(NPZ_SOURCES[kind](path))
    assert str(caught.value).startswith(
        f"array 'x' of {path!r} cannot be read from the archive (Error -3 while decompressing"
    )
    assert str(caught.value).endswith("save the file again with np.savez")


def test_labels_must_be_real_numbers(tmp_path):
    labels = _saved(np.array([1 + 2j, 3j, 0, 1], dtype=np.complex64))
    path = _write(tmp_path, "d.npz", _npz({"x": _saved(np.zeros((4, 2), np.float32)), "y": labels}))
    with pytest.raises(SourceError) as caught:
        build_source(NpzSource(path=path))
    assert str(caught.value) == (
        f"array 'y' of {path!r} has dtype complex64 (complex); labels need bool, int, uint or "
        "float numbers: save it with a numeric dtype: np.savez(path, y=arr.astype('int64'))"
    )


def test_the_object_message_in_full(tmp_path):
    path = _write(tmp_path, "o.npz", _npz({"x": RAW_OBJECT_POINTERS, "y": LABELS}))
    with pytest.raises(SourceError) as caught:
        build_source(NpzSource(path=path))
    assert str(caught.value) == (
        f"array 'x' of {path!r} holds Python objects (dtype object); reading them means "
        "unpickling, which can run code from the file, so they are refused: save it with a "
        "numeric dtype: np.savez(path, x=arr.astype('float32'))"
    )


def test_open_npz_member_refuses_objects_itself(tmp_path):
    """The exported reader refuses too, should the file change after the source was checked."""
    path = _write(tmp_path, "o.npz", _npz({"x": RAW_OBJECT_POINTERS}))
    with pytest.raises(ValueError, match="has dtype object; save it with a numeric dtype"):
        sources.open_npz_member(path, "x")


# --- files that must still work ------------------------------------------------------

X = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
Y = np.array([0, 1, 1, 0], dtype=np.int64)


def _elements(ds) -> list[tuple[np.ndarray, int]]:
    return [(x.numpy(), int(y.numpy())) for x, y in ds]


@pytest.mark.parametrize(
    "name, make",
    [
        ("npy", lambda t: NpySource(features_path=_write(t, "x.npy", _saved(X)),
                                    labels_path=_write(t, "y.npy", _saved(Y)))),
        ("npz", lambda t: NpzSource(path=_write(t, "d.npz", _npz({"x": _saved(X), "y": _saved(Y)})))),
        ("numpy-compressed", lambda t: NumpySource(path=_write(
            t, "d.npz", _npz({"x": _saved(X), "y": _saved(Y)}, DEFLATED)))),
        ("numpy-npy", lambda t: NumpySource(path=_write(t, "x.npy", _saved(X)))),
        ("big-endian-bool-labels", lambda t: NpzSource(path=_write(t, "d.npz", _npz(
            {"x": _saved(X.astype(">f4")), "y": _saved(Y.astype(bool))})))),
        ("fortran-order", lambda t: NpzSource(path=_write(t, "d.npz", _npz(
            {"x": _saved(np.asfortranarray(X)), "y": _saved(Y)})))),
    ],
)  # fmt: skip
def test_valid_files_still_build(name, make, tmp_path):
    elements = _elements(build_source(make(tmp_path)))
    assert len(elements) == 4
    assert np.array_equal(np.stack([x for x, _ in elements]), X)
    if name != "numpy-npy":
        assert [y for _, y in elements] == Y.astype(np.int64).tolist()


def test_valid_upload_still_stored():
    stored = store_upload("fine.npz", _npz({"x": _saved(X), "y": _saved(Y)}))
    assert stored.source["type"] == "npz"
    assert stored.path.is_file()


# --- the command line: exit 2 (export) or a failed run (profile), never a signal ------


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PIPELINE_LAB_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline_core", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


CLI_CASES = {
    "object-raw-pointers": (RAW_OBJECT_POINTERS, UNPICKLE),
    "truncated": (TRUNCATED, "is truncated: its header declares shape (1000,) of float32"),
    "huge-shape-tiny-file": (HUGE, "(about 10^18 bytes) but only 16 bytes of data follow"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_export_exits_2_with_the_message(case, tmp_path):
    data, message = CLI_CASES[case]
    path = _write(tmp_path, "bad.npz", _npz({"x": data, "y": LABELS}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": {"type": "npz", "path": path}}), encoding="utf-8")
    done = _cli("export", str(spec), home=tmp_path / "home")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and f"array 'x' of {path!r}" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_profile_fails_the_run_with_the_message(tmp_path):
    """The segfault of the issue: a child that builds the pipeline reports instead of dying."""
    path = _write(tmp_path, "bad.npz", _npz({"x": RAW_OBJECT_POINTERS, "y": LABELS}))
    spec = tmp_path / "spec.json"
    steps = [{"op": "batch", "batch_size": 2}]
    spec.write_text(json.dumps({"source": {"type": "npz", "path": path}, "steps": steps}))
    done = _cli("profile", str(spec), "--no-store", "--batches", "2", home=tmp_path / "home")
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "building the pipeline failed: source (npz): array 'x' of" in done.stdout
    assert UNPICKLE in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
