"""Hostile input against a real `streamlit run` server (issue 10): each case checks what the
user is told, and that the server still answers afterwards."""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import re
import socket
import urllib.request
import zipfile
from urllib.parse import urlparse

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import nav

pytestmark = pytest.mark.e2e
OUTSIDE = "outside the data dir"


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
        return response.read().decode().strip() == "ok"


def _websocket_status(url: str, host: str) -> str:
    """The status line the server answers a websocket upgrade sent with this Host header."""
    parts = urlparse(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://{host}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(256).decode(errors="replace").splitlines()[0]


@pytest.mark.parametrize(
    ("host", "accepted"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("evil.example", False),  # DNS rebinding: a foreign name resolving to 127.0.0.1
        ("evil.example:{port}", False),
        ("127.0.0.1.evil.example", False),
    ],
)
def test_the_websocket_refuses_a_foreign_host_header(lab_server, host, accepted):
    url = lab_server[0]
    status = _websocket_status(url, host.format(port=urlparse(url).port))
    assert (" 101 " in status) is accepted, status
    assert _healthy(url)


# --- hostile files sent through the browser ---------------------------------------------------


def _spec(source: dict | None = None, steps: list | None = None, name: str = "hostile") -> bytes:
    source = source or {"type": "synthetic", "num_examples": 64, "shape": [8, 8, 3]}
    return json.dumps({"name": name, "source": source, "steps": steps or []}).encode()


def _object_npz() -> bytes:
    """An .npz whose member declares Python objects (mapping it would read bytes as pointers)."""
    member = io.BytesIO()
    np.save(member, np.zeros(4, dtype=np.int64))
    raw = member.getvalue().replace(b"'descr': '<i8'", b"'descr': '|O' ")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", raw)
        archive.writestr("y.npy", raw)
    return out.getvalue()


def _zip_bomb() -> bytes:
    """About 1 MB that unpacks to 1.1 GB of zeros (over the 1,024 MB a zip may hold)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("cats/a.png", "w", force_zip64=True) as member,
    ):
        block = bytes(1 << 20)
        for _ in range(1100):
            member.write(block)
    return out.getvalue()


def _load_spec(page: Page, data: bytes) -> None:
    page.get_by_role("tab", name="Spec JSON").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Load a spec")
    uploader.locator("input[type=file]").set_input_files(
        files=[{"name": "spec.json", "mimeType": "application/json", "buffer": data}]
    )


def _upload_data(page: Page, name: str, data: bytes) -> None:
    page.get_by_text(re.compile(r"^Upload data")).click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Data file")
    uploader.locator("input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
    )


SECRET = os.environ.get("HOME", "/root")
SPEC_CASES = [
    # (id, spec bytes, page to look on, words the page must show, text it must never show)
    ("binary as spec", bytes(range(256)) * 4, "Design", "not a valid pipeline spec", None),
    ("nesting 100k deep", b"[" * 100_000 + b"]" * 100_000, "Design", "not a valid pipeline spec", None),
    ("shuffle 1e12", _spec(steps=[{"op": "shuffle", "buffer_size": 10**12}]), "Design",
     "not a valid pipeline spec", None),
    ("seed 2**70", _spec(steps=[{"op": "shuffle", "buffer_size": 8, "seed": 2**70}]), "Design",
     "not a valid pipeline spec", None),
    ("image folder at /", _spec({"type": "image_folder", "path": "/"}), "Preview", OUTSIDE, None),
    ("csv at /etc/passwd", _spec({"type": "csv", "path": "/etc/passwd"}), "Preview", OUTSIDE, "root:"),
    ("tfrecord glob /**", _spec({"type": "tfrecord", "files": "/**"}), "Preview", OUTSIDE, None),
    ("$HOME in a path", _spec({"type": "csv", "path": "$HOME/.bashrc"}), "Preview",
     "not expanded here", f"{SECRET}/"),
    ("cache in /tmp", _spec(steps=[{"op": "cache", "filename": "/tmp/pl-hostile-cache"}]), "Design",
     OUTSIDE, None),
    ("cache up two", _spec(steps=[{"op": "cache", "filename": "../../pl-hostile-cache"}]), "Design",
     OUTSIDE, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "where", "shown", "never"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_a_hostile_spec_from_the_browser_is_answered_and_the_server_keeps_going(
    app, lab_server, data, where, shown, never
):
    expect(app.get_by_test_id("stDataFrame").first).to_be_visible()  # the first run is done
    _load_spec(app, data)
    if where != "Design":
        app.wait_for_timeout(1500)  # the upload lands before the page changes
        nav(app, where)
    elif shown == OUTSIDE:  # the build's answer is in the first tab
        app.wait_for_timeout(1500)
        app.get_by_role("tab", name="Element spec").click()
    expect(app.get_by_text(re.compile(re.escape(shown))).first).to_be_visible()
    body = app.inner_text("body")
    if never:
        assert never not in body
    expect(app.get_by_test_id("stException")).to_have_count(0)
    assert not glob.glob("/tmp/pl-hostile-cache*") and not glob.glob(
        str(lab_server[1].parent.parent / "pl-hostile-cache*")
    )
    assert _healthy(lab_server[0])


DATA_CASES = [
    # (id, file name, bytes, words of the refusal)
    ("npz of Python objects", "objects.npz", _object_npz(), "Python objects"),
    ("zip bomb", "bomb.zip", _zip_bomb(), "unpack"),
    ("garbage tfrecord", "junk.tfrecord", bytes(100), "TFRecord"),
    ("binary as csv", "junk.csv", bytes(range(256)) * 8, "Upload refused"),
    ("empty zip", "empty.zip", b"", "Upload refused"),
]


@pytest.mark.parametrize(
    ("name", "data", "words"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_a_hostile_upload_is_refused_and_leaves_nothing(app, lab_server, name, data, words):
    expect(app.get_by_test_id("stDataFrame").first).to_be_visible()
    uploads = lab_server[1] / "uploads"
    before = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    _upload_data(app, name, data)
    refusal = app.get_by_text(re.compile("Upload refused")).first
    expect(refusal).to_be_visible()
    assert words in refusal.inner_text() or words == "Upload refused", refusal.inner_text()
    expect(app.get_by_test_id("stException")).to_have_count(0)
    after = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    assert after == before
    assert _healthy(lab_server[0])
