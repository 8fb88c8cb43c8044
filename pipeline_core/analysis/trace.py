"""TensorBoard interop: capture a TensorFlow profiler trace of a short run.

The trace lands in `<logdir>/plugins/profile/<run>/*.xplane.pb`, which the
Profile plugin of TensorBoard opens (input-pipeline analyzer, trace viewer).
TensorBoard itself is not a dependency of Pipeline Lab: the hint says what to
install and run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import examples_in, is_batched
from pipeline_core.build import build
from pipeline_core.errors import PipelineLabError
from pipeline_core.paths import data_dir
from pipeline_core.spec import PipelineSpec


class TraceError(PipelineLabError):
    """The profiler trace could not be captured."""


@dataclass(frozen=True)
class TraceResult:
    """Where the trace went, what was run, and how to open it."""

    logdir: Path
    files: tuple[Path, ...]
    elements: int
    examples: int
    seconds: float

    def command(self) -> str:
        return f"tensorboard --logdir {self.logdir}"

    def hint(self) -> str:
        return (
            "Open it with TensorBoard's Profile plugin: "
            "`pip install tensorboard tensorboard-plugin-profile`, then "
            f"`{self.command()}` and the PROFILE tab."
        )


def default_logdir() -> Path:
    """A fresh folder under the data dir: `traces/<timestamp>`."""
    return data_dir() / "traces" / time.strftime("%Y%m%d-%H%M%S")


def capture_trace(
    spec: PipelineSpec, *, logdir: Path | str | None = None, max_elements: int = 50
) -> TraceResult:
    """Run `spec` for up to `max_elements` elements under the TensorFlow profiler.

    Raises:
        TraceError: the profiler is already running or failed to write the trace.
    """
    tf = _tf()
    logdir = Path(logdir) if logdir is not None else default_logdir()
    logdir.mkdir(parents=True, exist_ok=True)
    dataset = build(spec).take(max_elements)
    batched = is_batched(spec)
    try:
        tf.profiler.experimental.start(str(logdir))
    except tf.errors.AlreadyExistsError:
        raise TraceError(
            "a TensorFlow profiler session is already running in this process; wait for it "
            "to finish and try again"
        ) from None
    elements = examples = 0
    start = time.perf_counter()
    try:
        for element in dataset:
            elements += 1
            examples += examples_in(element, batched=batched)
    finally:
        seconds = time.perf_counter() - start
        tf.profiler.experimental.stop()
    files = tuple(sorted(logdir.glob("plugins/profile/*/*.xplane.pb")))
    if not files:
        raise TraceError(f"the profiler wrote no trace under {logdir}; check it is writable")
    return TraceResult(
        logdir=logdir, files=files, elements=elements, examples=examples, seconds=seconds
    )
