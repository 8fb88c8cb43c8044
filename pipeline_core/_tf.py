"""The one way to TensorFlow: `tf()` imports it on first use, with its logs quieted.

Importing `pipeline_core` (or any of its modules) neither imports TensorFlow
nor changes the environment. The first call of `tf()` sets TensorFlow's log
levels (unless the environment already sets them), imports it once and
returns the module; later calls return the same module.

Modules whose functions are embedded verbatim in exported scripts
(`sources`, `augment_ops`) name TensorFlow `tf` at module level, as a script
that does `import tensorflow as tf` does: they bind `lazy_tf`, which calls
`tf()` on first attribute access.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from functools import cache
from typing import Any

# TensorFlow's C++ logging reads these once, at import: INFO/WARNING chatter off.
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", "ABSL_MIN_LOG_LEVEL": "2"}


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
def tf() -> Any:
    """Import and return the `tensorflow` module with its logs quieted.

    TensorFlow's C++ runtime prints a few lines (oneDNN notice, CUDA probing) before
    its log level applies; they are swallowed by silencing stderr during the import
    and the first device discovery. Python exceptions are unaffected.
    """
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    with _stderr_silenced():
        import tensorflow

        tensorflow.config.list_physical_devices()
    tensorflow.get_logger().setLevel(logging.ERROR)
    import absl.logging  # ships with TensorFlow

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tensorflow


class _LazyTensorFlow:
    """Stands in for the `tensorflow` module: each attribute is read from `tf()`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(tf(), name)

    def __repr__(self) -> str:
        return "<tensorflow, imported on first use by pipeline_core._tf.tf()>"


lazy_tf: Any = _LazyTensorFlow()
