"""Browser uploads: stored under the uploads dir, hostile zips refused with a message."""

from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
import pytest

from pipeline_core.paths import resolve_path, uploads_dir
from pipeline_core.spec import load_spec
from pipeline_core.uploads import StoredUpload, UploadError, ZipLimits, store_upload


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], *, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _valid_source(stored: StoredUpload) -> None:
    spec = load_spec({"source": stored.source})
    assert spec.source.type == stored.source["type"]


def test_image_folder_zip_is_unpacked_with_wrapper_folder_skipped():
    png = _png()
    data = _zip({"pets/cat/a.png": png, "pets/cat/b.png": png, "pets/dog/c.png": png})
    stored = store_upload("pets.zip", data)
    assert stored.kind == "image_folder"
    assert stored.path.name == "pets"
    assert sorted(p.name for p in stored.path.iterdir()) == ["cat", "dog"]
    assert uploads_dir() in stored.path.parents
    assert resolve_path(stored.source["path"]) == stored.path
    assert "2 classes" in stored.notes[0]
    _valid_source(stored)
    # The same upload again reuses the stored copy.
    assert store_upload("pets.zip", data).path == stored.path


@pytest.mark.parametrize(
    "entry",
    ["../evil/x.png", "/etc/evil.png", "cls/../../x.png", "C:/win/x.png"],
)
def test_path_traversal_is_refused(entry):
    data = _zip({"cls/ok.png": _png(), entry: _png()})
    with pytest.raises(UploadError, match="path traversal"):
        store_upload("evil.zip", data)
    assert not list(uploads_dir().glob("evil-*"))


def test_symlink_entry_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("cls/a.png", _png())
        link = zipfile.ZipInfo("cls/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UploadError, match="symbolic link"):
        store_upload("links.zip", buf.getvalue())


def test_too_many_files_is_refused():
    data = _zip({f"cls/{i}.png": b"x" for i in range(6)})
    with pytest.raises(UploadError, match="6 files, more than the 5 allowed"):
        store_upload("many.zip", data, limits=ZipLimits(max_files=5))


def test_zip_bomb_is_refused_before_and_while_unpacking():
    data = _zip({"cls/a.png": _png(), "cls/big.png": b"\0" * (3 * 2**20)})
    with pytest.raises(UploadError, match="unpacks to more than 1 MB"):
        store_upload("bomb.zip", data, limits=ZipLimits(max_unpacked_bytes=2**20))
    assert not list(uploads_dir().glob("bomb-*"))


def test_zip_with_lying_header_sizes_is_stopped_while_unpacking():
    data = bytearray(_zip({"cls/a.png": b"\0" * (2 * 2**20)}, compress=zipfile.ZIP_STORED))
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    for marker, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(marker)
        data[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    with pytest.raises(UploadError, match="damaged|unpacks to more"):
        store_upload("liar.zip", bytes(data), limits=ZipLimits(max_unpacked_bytes=2**20))
    assert not any(p.is_file() for p in uploads_dir().rglob("liar-*/**/*"))


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("notes.txt", b"hello", "unsupported file type"),
        ("empty.csv", b"", "is empty"),
        ("broken.zip", b"not a zip", "not a valid zip"),
        ("noimages.zip", None, "holds no images"),
        ("flat.zip", None, "no class sub-folders"),
        ("bad.npz", b"garbage", "not a readable .npz"),
        ("one.csv", b"a\n1\n", "header line"),
        ("bad.tfrecord", b"\xff" * 20, "does not look like a TFRecord"),
        (
            "junk.tfrecord",
            (4).to_bytes(8, "little") + b"\0" * 4 + b"junk" + b"\0" * 4,
            "cannot read",
        ),
    ],
)
def test_bad_uploads_name_the_problem(name, data, match):
    if name == "noimages.zip":
        data = _zip({"cls/readme.txt": b"hi"})
    if name == "flat.zip":
        data = _zip({"a.png": _png()})
    with pytest.raises(UploadError, match=match):
        store_upload(name, data)


def test_upload_over_the_size_limit_is_refused():
    with pytest.raises(UploadError, match="upload limit"):
        store_upload("big.csv", b"a,label\n" * 100, max_bytes=100)


def test_npz_plain_is_memory_mapped_and_compressed_is_loaded():
    x = np.zeros((4, 2, 2, 1), np.float32)
    y = np.arange(4)
    plain, packed = io.BytesIO(), io.BytesIO()
    np.savez(plain, x=x, y=y)
    np.savez_compressed(packed, features=x, labels=y)
    stored = store_upload("arrays.npz", plain.getvalue())
    assert stored.source["type"] == "npz"
    assert stored.source["features_key"] == "x" and stored.source["labels_key"] == "y"
    assert resolve_path(stored.source["path"]).is_file()
    _valid_source(stored)
    stored = store_upload("packed.npz", packed.getvalue())
    assert stored.source["type"] == "numpy"
    assert stored.source["features_key"] == "features"
    assert stored.source["labels_key"] == "labels"
    _valid_source(stored)


def test_csv_and_tfrecord_sources(tf, tmp_path):
    stored = store_upload("../../table.csv", b"f1,f2,target\n1,2,0\n3,4,1\n")
    assert stored.path.parent == uploads_dir()
    assert stored.source["label_column"] == "target"
    _valid_source(stored)

    record = tmp_path / "r.tfrecord"
    with tf.io.TFRecordWriter(str(record)) as writer:
        feature = {
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png()])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writer.write(example.SerializeToString())
    stored = store_upload("r.tfrecord", record.read_bytes())
    assert stored.source == {"type": "tfrecord", "files": stored.source["files"],
                             "features_key": "image", "label_key": "label", "decode_image": True}  # fmt: skip
    from pipeline_core.build import element_specs

    source_stage = element_specs(load_spec({"source": stored.source}))[0]
    assert source_stage.features.startswith("uint8 (")  # decoded image, not bytes
    assert resolve_path(stored.source["files"]).read_bytes() == record.read_bytes()
    _valid_source(stored)


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """A data dir of this test alone, so usage and listings start empty."""
    monkeypatch.setenv("PIPELINE_LAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_list_uploads_and_usage_describe_what_is_stored(own_home, monkeypatch):
    import os
    import time

    from pipeline_core.uploads import list_uploads, uploads_usage

    monkeypatch.setenv("PIPELINE_LAB_UPLOAD_QUOTA_MB", "3")
    assert list_uploads() == [] and uploads_usage().used_bytes == 0
    png = _png()
    folder = store_upload("pets.zip", _zip({"pets/cat/a.png": png, "pets/dog/b.png": png}))
    table = b"f1,label\n1,0\n2,1\n"
    csv = store_upload("t.csv", table)
    future = time.time() + 60
    os.utime(csv.path, (future, future))
    listed = list_uploads()
    assert [(u.kind, u.size_bytes) for u in listed] == [
        ("csv", len(table)),
        ("image_folder", 2 * len(png)),
    ]
    assert listed[0].name == csv.path.name and listed[0].modified == pytest.approx(future)
    assert listed[1].path in folder.path.parents
    usage = uploads_usage()
    assert usage.used_bytes == len(table) + 2 * len(png)
    assert usage.quota_bytes == 3 * 2**20 and usage.free_bytes == 3 * 2**20 - usage.used_bytes
    assert usage.describe() == f"{usage.used_bytes} bytes of 3.0 MB"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (40 * 1024, "40 KB"),
        (int(3.5 * 2**20), "3.5 MB"),
        (312 * 2**20, "312 MB"),
        (2048 * 2**20, "2,048 MB"),
    ],  # fmt: skip
)
def test_format_size(size, text):
    from pipeline_core.uploads import format_size

    assert format_size(size) == text


def test_default_quota_and_its_setting(monkeypatch):
    from pipeline_core.uploads import ENV_QUOTA, upload_quota_bytes

    monkeypatch.delenv(ENV_QUOTA, raising=False)
    assert upload_quota_bytes() == 2048 * 2**20
    monkeypatch.setenv(ENV_QUOTA, "0.5")
    assert upload_quota_bytes() == 2**19
    for bad in ("-1", "nan", "inf", "2GB"):
        monkeypatch.setenv(ENV_QUOTA, bad)
        with pytest.raises(UploadError, match=f"{ENV_QUOTA}={bad!r} is not a number"):
            upload_quota_bytes()


def test_uploads_read_by_names_the_uploads_a_source_reads(own_home):
    from pipeline_core.uploads import uploads_read_by

    stored = store_upload("t.csv", b"f1,label\n1,0\n")
    assert uploads_read_by(stored.source) == [stored.path.name]
    folder = store_upload("pets.zip", _zip({"pets/cat/a.png": _png(), "pets/dog/b.png": _png()}))
    assert uploads_read_by(folder.source) == [folder.path.parent.name]
    assert uploads_read_by({"type": "image_folder", "path": "{data_dir}/demo/images"}) == []
    assert uploads_read_by({"type": "synthetic", "num_examples": 3}) == []


def test_stale_temporary_folders_are_removed_fresh_ones_kept(own_home):
    import os
    import time

    from pipeline_core.uploads import list_uploads, uploads_usage

    root = uploads_dir()
    stale, fresh = root / ".partial-dead", root / ".partial-busy"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "x.png").write_bytes(b"\0" * 100)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert uploads_usage().used_bytes == 200  # counted: they are on disk
    assert list_uploads() == []  # but not listed: they are no uploads
    store_upload("t.csv", b"f1,label\n1,0\n")
    assert not stale.exists() and fresh.exists()


def test_refused_uploads_leave_nothing_behind(own_home, tf):
    junk = (4).to_bytes(8, "little") + b"\0" * 4 + b"junk" + b"\0" * 4
    with pytest.raises(
        UploadError, match="'junk.tfrecord': cannot read a tf.train.Example from it"
    ):
        store_upload("junk.tfrecord", junk)
    with pytest.raises(UploadError, match="no class sub-folders"):
        store_upload("flat.zip", _zip({"a.png": _png()}))
    assert list(uploads_dir().iterdir()) == []


def test_a_write_error_is_an_upload_error_naming_the_member(own_home, monkeypatch):
    import builtins

    real_open = builtins.open

    def full_disk(path, mode="r", *args, **kwargs):
        if "x" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk)
    data = _zip({"pets/cat/a.png": _png(), "pets/dog/b.png": _png()})
    with pytest.raises(UploadError, match=r"'pets/cat/a.png' could not be unpacked \(No space"):
        store_upload("pets.zip", data)
    assert list(uploads_dir().iterdir()) == []
