"""Shared by the child-process tests: is a process still there?"""

from __future__ import annotations

import os

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split()[2] != "Z"


@pytest.fixture
def alive():
    """`alive(pid)`: the process exists and is not a zombie."""
    return _alive
