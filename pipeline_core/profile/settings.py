"""Run settings: the limits and the simulated training step of one profile run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline_core.errors import PipelineLabError

SIMULATED_STEP_MODELS = ("small",)  # Keras models a run can train on each batch (`step_model`)


class ProfileError(PipelineLabError):
    """A profile cannot start: bad settings or a source that cannot reach the child."""


@dataclass(frozen=True)
class RunSettings:
    """Limits and the simulated training step of one run.

    Attributes:
        max_batches: stop after this many batches (None = no batch limit).
        max_seconds: stop after this long iterating (None = no time limit).
        memory_limit_mb: stop when the child's private memory passes this (None =
            half the memory available when the run starts). Pages of memory-mapped
            files are not counted (`metrics.process_memory`): they can be dropped
            and re-read, so a file larger than the ceiling streams to the end.
        step_ms: simulate a training step of this many ms after each batch.
        step_model: "small" trains a small real Keras model on each batch instead.
        sample_hz: readings (and live snapshots) per second, 4-50.
        name: run name (default: the spec's name or the factory's name).
        repeat: repeat the data until a limit ends the run, so a short dataset can be
            watched as long as the limits say (applied in the child, after the
            pipeline: the spec is unchanged); off (the default here and on the command
            line; the dashboard's default is on), the run ends with the data.
    """

    max_batches: int | None = 200
    max_seconds: float | None = 30.0
    memory_limit_mb: int | None = None
    step_ms: float | None = None
    step_model: str | None = None
    sample_hz: float = 5.0
    name: str | None = None
    repeat: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.max_batches is not None and self.max_batches < 1:
            problems.append(f"max_batches should be >= 1 or None. Received: {self.max_batches}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            problems.append(f"max_seconds should be > 0 or None. Received: {self.max_seconds}")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 1:
            problems.append(
                f"memory_limit_mb should be >= 1 or None. Received: {self.memory_limit_mb}"
            )
        if self.step_ms is not None and self.step_ms < 0:
            problems.append(f"step_ms should be >= 0 or None. Received: {self.step_ms}")
        if self.step_model not in (None, *SIMULATED_STEP_MODELS):
            problems.append(f"step_model should be None or 'small'. Received: {self.step_model!r}")
        if self.step_ms is not None and self.step_model is not None:
            problems.append("choose either step_ms or step_model, not both")
        if self.repeat and self.max_batches is None and self.max_seconds is None:
            problems.append("repeat needs a limit (max_batches or max_seconds) to end the run")
        if not 4 <= self.sample_hz <= 50:
            problems.append(f"sample_hz should be between 4 and 50. Received: {self.sample_hz}")
        if problems:
            raise ProfileError("invalid run settings: " + "; ".join(problems))

    @property
    def has_step(self) -> bool:
        """A simulated training step runs after each batch."""
        return self.step_ms is not None or self.step_model is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
