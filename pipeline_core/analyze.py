"""Bottleneck analysis and tuning (the `analyze` module of docs/ARCHITECTURE.md).

A facade over the `pipeline_core.analysis` package, which keeps one concept
per module; import from here or from there.
"""

from pipeline_core.analysis import *  # noqa: F403
from pipeline_core.analysis import __all__  # noqa: F401
