"""Lazy, quiet TensorFlow import shared by every module that needs TF.

TensorFlow's C++ logging is controlled by environment variables that must be
set before the first import; `quiet_tensorflow_logs()` sets them, and `tf()`
imports TensorFlow once, with its Python logger at ERROR.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from functools import cache


def quiet_tensorflow_logs() -> None:
    """Silence TensorFlow's C++ INFO/WARNING chatter (must run before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


@contextmanager
def _stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration (C++ writes bypass Python)."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@cache
def tf():
    """Import and return the `tensorflow` module with its logs quieted.

    TensorFlow's C++ runtime prints a few lines (oneDNN notice, CUDA probing) before
    its log level applies; they are swallowed by silencing stderr during the import
    and the first device discovery. Python exceptions are unaffected.
    """
    quiet_tensorflow_logs()
    with _stderr_silenced():
        import tensorflow  # noqa: PLC0415

        tensorflow.config.list_physical_devices()
    tensorflow.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TF
        pass
    return tensorflow
