"""Profile a pipeline in a child process: timed batches, live snapshots, readings, limits.

`start_profile(spec_or_factory, settings=...)` starts a child process (under the
one supervisor, `pipeline_core.child`) that builds the pipeline, times the
consumer's wait for every batch, optionally runs a simulated training step,
samples readings and streams everything to the parent. The returned
`RunHandle` polls without blocking, stops within a second, and turns any
failure of the child into a failed run with a reason. `profile(...)` is the
blocking form.

- `settings`: `RunSettings` (limits, simulated step), `ProfileError`;
- `result`: the frozen `RunResult` (derived figures) and the live `Snapshot`;
- `handle`: `RunHandle`, the parent's side of the run (messages, store);
- `worker`: the child's side (build, timed loop, simulated step, messages);
- `run`: `start_profile` and `profile`, which send what is profiled to the child.
"""

from pipeline_core.profile.handle import RunHandle
from pipeline_core.profile.result import RunResult, Snapshot
from pipeline_core.profile.run import profile, start_profile
from pipeline_core.profile.settings import ProfileError, RunSettings
from pipeline_core.profile.worker import EMPTY_DATASET

__all__ = [
    "EMPTY_DATASET",
    "ProfileError",
    "RunHandle",
    "RunResult",
    "RunSettings",
    "Snapshot",
    "profile",
    "start_profile",
]
