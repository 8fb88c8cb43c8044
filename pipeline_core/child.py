"""Start a "spawn" child without re-running the parent's `__main__` script in it."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def main_hidden_from_spawn():
    """Keep a spawned child from re-running the parent's `__main__` script file.

    "spawn" re-executes the `__main__` module's file in the child when it has no
    importable name. Under Streamlit that file is the page script itself (its
    module is put in `sys.modules["__main__"]`), which must not run in the child.
    Hiding `__file__` while the child starts makes spawn skip it.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main.__spec__, "name", None) or "__file__" not in vars(main):
        yield
        return
    saved = main.__file__
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = saved
