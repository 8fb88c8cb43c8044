"""The benchmark tests time nothing: no pause between their tiny windows, short warm-ups."""

from __future__ import annotations

import pytest

from benchmarks import _timing


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(_timing, "SETTLE_S", 0.0)
    monkeypatch.setattr(_timing, "PRIME_S", 0.05)
    monkeypatch.setattr(_timing, "FRESH_WARMUP_S", 0.0)
