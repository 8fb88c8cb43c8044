"""Hostile input against a real `streamlit run` server (issue 10): each case checks what the
user is told, and that the server still answers afterwards."""

from __future__ import annotations

import base64
import os
import socket
import urllib.request
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.e2e


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
