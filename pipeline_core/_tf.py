"""Lazy, quiet TensorFlow import shared by every module that needs TF.

TensorFlow's C++ logging is controlled by environment variables that must be
set before the first import; `quiet_tensorflow_logs()` sets them, and `tf()`
imports TensorFlow once, with its Python logger at ERROR.
"""

from __future__ import annotations

import logging
import os
from functools import cache


def quiet_tensorflow_logs() -> None:
    """Silence TensorFlow's C++ INFO/WARNING chatter (must run before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


@cache
def tf():
    """Import and return the `tensorflow` module with its logs quieted."""
    quiet_tensorflow_logs()
    import tensorflow  # noqa: PLC0415

    tensorflow.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TF
        pass
    return tensorflow
