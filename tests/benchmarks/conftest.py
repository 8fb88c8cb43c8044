"""The benchmark tests time nothing: no pause between their tiny windows."""

from __future__ import annotations

import pytest

from benchmarks import _timing


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(_timing, "SETTLE_S", 0.0)
