"""The step ops, one table: for each op its parameter model, how it builds, how it is written.

`STEPS` maps an op name ("map", "batch", ...) to a `StepOp`:

* `model`: the frozen pydantic model of the step (`pipeline_core.spec` validates
  a spec's steps against these, tagged by `op`);
* `build(ds, step, index)`: the `tf.data` call (`pipeline_core.build`);
* `emit(step, index, names)`: the same call as lines of an exported script
  (`pipeline_core.export`).

Build and emit of one op sit side by side, so the pipeline Pipeline Lab
measures and the code it hands out cannot drift apart. A new op is a model,
a build function and an emit function added to `STEPS`. TensorFlow is reached
through `pipeline_core._tf.tf()` when a step is built, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from pipeline_core import paths
from pipeline_core._tf import tf as _tf
from pipeline_core.augment import AugmentationParams
from pipeline_core.augment_code import augment_function, features_of
from pipeline_core.errors import PipelineLabError
from pipeline_core.fields import MAX_BUFFER, BufferSize, Frozen, Parallelism, Seed

# Above this batch size the pipeline asks for the known element count instead (see
# `batch_size_for`); the exported script writes the same rule.
HUGE_BATCH = 65_536

# --- the models -----------------------------------------------------------------


class StepError(PipelineLabError):
    """A step cannot apply to what reaches it (the message names the fix)."""


class MapStep(Frozen):
    """Apply a list of augmentations, in order, with `Dataset.map`."""

    op: Literal["map"] = "map"
    augmentations: tuple[AugmentationParams, ...] = Field(
        ..., min_length=1, description="Augmentations applied in order."
    )
    num_parallel_calls: Parallelism = Field(None, description='null, an int or "autotune".')
    deterministic: bool | None = Field(None, description="Keep element order (null = options).")


class ShuffleStep(Frozen):
    """Shuffle with a buffer."""

    op: Literal["shuffle"] = "shuffle"
    buffer_size: int = Field(
        1000, ge=1, le=MAX_BUFFER, description="Elements held in the shuffle buffer."
    )
    seed: Seed | None = Field(None, description="Seed (null = random).")
    reshuffle_each_iteration: bool = Field(True, description="New order each epoch.")


class CacheStep(Frozen):
    """Cache elements in memory (empty filename) or in a file."""

    op: Literal["cache"] = "cache"
    filename: str = Field("", description="Empty for memory, else a cache file path prefix.")


class BatchStep(Frozen):
    """Group consecutive elements into batches."""

    op: Literal["batch"] = "batch"
    batch_size: int = Field(32, ge=1, description="Elements per batch.")
    drop_remainder: bool = Field(False, description="Drop a last, smaller batch.")
    num_parallel_calls: Parallelism = Field(None, description='null, an int or "autotune".')
    deterministic: bool | None = Field(None, description="Keep element order (null = options).")


class PrefetchStep(Frozen):
    """Overlap producing and consuming with a buffer of ready elements."""

    op: Literal["prefetch"] = "prefetch"
    buffer_size: BufferSize = Field("autotune", description='An int or "autotune".')


class RepeatStep(Frozen):
    """Repeat the dataset `count` times (null = forever)."""

    op: Literal["repeat"] = "repeat"
    count: int | None = Field(None, ge=1, description="Number of repetitions; null = forever.")


class TakeStep(Frozen):
    """Keep only the first `count` elements."""

    op: Literal["take"] = "take"
    count: int = Field(100, ge=1, description="Number of elements kept.")


class InterleaveStep(Frozen):
    """Read several files at once (file sources only; must be the first step)."""

    op: Literal["interleave"] = "interleave"
    cycle_length: int | None = Field(4, ge=1, description="Files read concurrently (null = auto).")
    block_length: int = Field(1, ge=1, description="Consecutive elements taken from each file.")
    num_parallel_calls: Parallelism = Field("autotune", description='null, an int or "autotune".')
    deterministic: bool | None = Field(None, description="Keep element order (null = options).")


class SleepStep(Frozen):
    """Wait before each element inside the dataset graph (like slow storage); runs on
    tf.data service workers, unlike the `sleep` augmentation (a Python callable)."""

    op: Literal["sleep"] = "sleep"
    ms: float = Field(10.0, ge=0.0, le=10_000.0, description="Milliseconds per element.")


LOCAL = "local"  # a distribute step's service: servers Pipeline Lab starts for the run
SERVICE_PATTERN = r"^(local|grpc://[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5})$"
METRICS_URL_PATTERN = r"^https?://[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}/?$"


class DistributeStep(Frozen):
    """Hand the steps above to tf.data service workers; the steps below run here."""

    op: Literal["distribute"] = "distribute"
    service: str = Field(
        LOCAL,
        pattern=SERVICE_PATTERN,
        description='"local" (a dispatcher and workers on this machine, started for each '
        'run) or the dispatcher of running servers, "grpc://HOST:PORT".',
    )
    workers: int = Field(2, ge=1, le=16, description="Local worker processes (local only).")
    processing_mode: Literal["distributed_epoch", "parallel_epochs"] = Field(
        "distributed_epoch",
        description="distributed_epoch: each element once, split over workers; "
        "parallel_epochs: every worker makes the whole dataset.",
    )
    compression: Literal["auto"] | None = Field(
        "auto", description='"auto" lets the service compress elements; null: never.'
    )
    worker_metrics: tuple[Annotated[str, Field(pattern=METRICS_URL_PATTERN)], ...] = Field(
        (),
        max_length=64,
        description="Remote service only: each worker's readings endpoint, "
        '"http://HOST:PORT" (`serve worker --metrics-port`), read during a run. '
        "Local workers are read without it.",
    )


# --- shared by build and emit ---------------------------------------------------


class _Code(str):
    """Text that goes into a script as it is: its `repr` is the text itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


_AUTOTUNE_CODE = _Code("tf.data.AUTOTUNE")


def _tuned(value: Any, autotune: Any) -> Any:
    """A spec's parallelism or buffer size, with "autotune" given as `autotune`."""
    return autotune if value == "autotune" else value


def _parallel_args(
    calls: int | str | None, deterministic: bool | None, autotune: Any
) -> dict[str, Any]:
    """`num_parallel_calls`/`deterministic` keyword arguments (`deterministic` only matters,
    and is only passed, when the calls are parallel)."""
    if calls is None:
        return {}
    args: dict[str, Any] = {"num_parallel_calls": _tuned(calls, autotune)}
    if deterministic is not None:
        args["deterministic"] = deterministic
    return args


def _code_args(args: Mapping[str, Any]) -> str:
    """Keyword arguments as the tail of a call in a script: ", name=value, ..."."""
    return "".join(f", {name}={value!r}" for name, value in args.items())


def map_seed(step_index: int) -> int:
    """Seed of the random-seed stream a map step at `step_index` zips with."""
    return 1_000_003 * (step_index + 1)


def seed_stream(index: int) -> Any:
    """The per-element random numbers a map step at `index` zips with: new ones every epoch."""
    return _tf().data.Dataset.random(seed=map_seed(index), rerandomize_each_iteration=True)


def cardinality(ds: Any) -> int | None:
    """The dataset's known element count, or None when unknown or infinite."""
    count = int(_tf().data.experimental.cardinality(ds))
    return count if count >= 0 else None


def batch_size_for(batch_size: int, count: int | None, *, drop_remainder: bool) -> int:
    """The batch size to hand TensorFlow for `count` known elements (None: unknown/infinite).

    A batch size above the element count yields one batch of every element, exactly as
    the count itself would, but TensorFlow reserves room for `batch_size` elements, so
    an absurd size (1e9) stalls the pipeline: above `HUGE_BATCH`, ask for the count
    instead. With `drop_remainder` such a pipeline would yield nothing at all, a mistake
    worth naming.

    Raises:
        StepError: `drop_remainder` with more than `count` elements to a batch.
    """
    if count is None or batch_size <= count:
        return batch_size
    if drop_remainder:
        raise StepError(
            f"batch_size {batch_size} is larger than the {count} elements that reach this "
            "step, and drop_remainder drops that one partial batch, so the pipeline yields "
            "nothing: lower batch_size or set drop_remainder to false"
        )
    return max(count, 1) if batch_size > HUGE_BATCH else batch_size


@dataclass(frozen=True)
class ScriptNames:
    """Names an exported script gives to what steps refer to.

    Attributes:
        augment: the augment function of each map step, by step index.
        path: `path(value, wanted)` -> the constant holding a path (made on first use).
    """

    augment: Mapping[int, str]
    path: Callable[[str, str], str]


# --- one build and one emit function per op -------------------------------------
# build(ds, step, index) -> ds; emit(step, index, names) -> lines of `make_dataset()`.


def _build_map(ds: Any, step: MapStep, index: int) -> Any:
    tf = _tf()
    features, _ = ds.element_spec
    augment = augment_function(step.augmentations, features=features_of(features))
    return tf.data.Dataset.zip((ds, seed_stream(index))).map(
        lambda element, seed: augment(element[0], element[1], tf.stack([seed, 0])),
        **_parallel_args(step.num_parallel_calls, step.deterministic, tf.data.AUTOTUNE),
    )


def _emit_map(step: MapStep, index: int, names: ScriptNames) -> list[str]:
    args = _parallel_args(step.num_parallel_calls, step.deterministic, _AUTOTUNE_CODE)
    return [
        f"seeds = tf.data.Dataset.random(seed={map_seed(index)}, rerandomize_each_iteration=True)",
        "ds = tf.data.Dataset.zip((ds, seeds)).map(",
        f"    lambda example, seed: {names.augment[index]}(*example, tf.stack([seed, 0]))"
        f"{_code_args(args)}",
        ")",
    ]


def _build_shuffle(ds: Any, step: ShuffleStep, index: int) -> Any:
    return ds.shuffle(
        step.buffer_size, seed=step.seed, reshuffle_each_iteration=step.reshuffle_each_iteration
    )


def _emit_shuffle(step: ShuffleStep, index: int, names: ScriptNames) -> list[str]:
    return [
        f"ds = ds.shuffle({step.buffer_size}, seed={step.seed!r}, "
        f"reshuffle_each_iteration={step.reshuffle_each_iteration!r})"
    ]


def _build_cache(ds: Any, step: CacheStep, index: int) -> Any:
    if not step.filename:
        return ds.cache()
    path = _cache_path(step.filename)
    if path.is_dir():
        raise StepError(
            f"cache filename {step.filename!r} is a folder; give a file path prefix such as "
            f"{step.filename.rstrip('/') + '/cache'!r}"
        )
    # TensorFlow writes the cache files next to the prefix but does not make the folder.
    # Made when the pipeline is built, never when a spec is loaded; when confined, only
    # inside the data dir (checked above).
    path.parent.mkdir(parents=True, exist_ok=True)
    return ds.cache(str(path))


def _cache_path(filename: str) -> Path:
    """The cache file prefix; when confined, its folder too must be inside the data dir
    (TensorFlow writes `<prefix>.index`, `<prefix>_0.lockfile`, ... beside it)."""
    path = paths.resolve_path(filename, what="cache filename")
    if paths.confined() and not paths.is_inside_roots(path.parent):
        raise paths.outside_error(filename, what="cache filename")
    return path


def _emit_cache(step: CacheStep, index: int, names: ScriptNames) -> list[str]:
    if not step.filename:
        return ["ds = ds.cache()"]
    name = names.path(str(_cache_path(step.filename)), f"cache_file_{index}")
    return [
        f"os.makedirs(os.path.dirname({name}) or '.', exist_ok=True)",
        f"ds = ds.cache({name})",
    ]


def _build_batch(ds: Any, step: BatchStep, index: int) -> Any:
    size = batch_size_for(step.batch_size, cardinality(ds), drop_remainder=step.drop_remainder)
    return ds.batch(
        size,
        drop_remainder=step.drop_remainder,
        **_parallel_args(step.num_parallel_calls, step.deterministic, _tf().data.AUTOTUNE),
    )


def _emit_batch(step: BatchStep, index: int, names: ScriptNames) -> list[str]:
    size = str(step.batch_size)
    lines = []
    if step.batch_size > HUGE_BATCH and not step.drop_remainder:
        # batch_size_for at run time: the count is known only once the script builds
        lines.append("known = int(ds.cardinality())  # -1 infinite, -2 unknown")
        size = f"min({step.batch_size}, max(known, 1)) if known >= 0 else {step.batch_size}"
    args = _parallel_args(step.num_parallel_calls, step.deterministic, _AUTOTUNE_CODE)
    drop = ", drop_remainder=True" if step.drop_remainder else ""
    return [*lines, f"ds = ds.batch({size}{drop}{_code_args(args)})"]


def _build_prefetch(ds: Any, step: PrefetchStep, index: int) -> Any:
    return ds.prefetch(_tuned(step.buffer_size, _tf().data.AUTOTUNE))


def _emit_prefetch(step: PrefetchStep, index: int, names: ScriptNames) -> list[str]:
    return [f"ds = ds.prefetch({_tuned(step.buffer_size, _AUTOTUNE_CODE)!r})"]


def _build_repeat(ds: Any, step: RepeatStep, index: int) -> Any:
    return ds.repeat(step.count)


def _emit_repeat(step: RepeatStep, index: int, names: ScriptNames) -> list[str]:
    return [f"ds = ds.repeat({step.count!r})"]


def _build_take(ds: Any, step: TakeStep, index: int) -> Any:
    return ds.take(step.count)


def _emit_take(step: TakeStep, index: int, names: ScriptNames) -> list[str]:
    return [f"ds = ds.take({step.count})"]


def _build_interleave(ds: Any, step: InterleaveStep, index: int) -> Any:
    return ds  # applied by the source, which reads the files


def _emit_interleave(step: InterleaveStep, index: int, names: ScriptNames) -> list[str]:
    return [f"# steps[{index}]: interleave is applied by the source function"]


SLEEP_IMPORT = "from tensorflow.python.data.experimental.ops.testing import sleep"


def _build_sleep(ds: Any, step: SleepStep, index: int) -> Any:
    from tensorflow.python.data.experimental.ops.testing import sleep

    return ds.apply(sleep(round(step.ms * 1000)))


def _emit_sleep(step: SleepStep, index: int, names: ScriptNames) -> list[str]:
    return [
        f"{SLEEP_IMPORT}  # TensorFlow's SleepDataset: waits in the graph",
        f"ds = ds.apply(sleep({round(step.ms * 1000)}))  # {step.ms:g} ms before each element",
    ]


# The dispatcher of the local servers serving this process's run (`serving_locally`).
_local_dispatcher: list[str] = []


@contextmanager
def serving_locally(address: str) -> Iterator[None]:
    """Within this block, a distribute step with service "local" uses `address`."""
    _local_dispatcher.append(address)
    try:
        yield
    finally:
        _local_dispatcher.remove(address)


def distribute_step(spec: Any) -> DistributeStep | None:
    """The spec's distribute step (validation allows one at most), else None."""
    return next((step for step in spec.steps if isinstance(step, DistributeStep)), None)


def local_distribute_step(spec: Any) -> DistributeStep | None:
    """The spec's distribute step when it asks for local servers, else None."""
    step = distribute_step(spec)
    return step if step is not None and step.service == LOCAL else None


def dispatcher_address(step: DistributeStep) -> str:
    """The dispatcher a distribute step reads from now."""
    if step.service != LOCAL:
        return step.service
    if not _local_dispatcher:
        raise StepError(
            'service "local" runs on a dispatcher and workers Pipeline Lab starts for a '
            "profile run (the Profile page, `python -m pipeline_core profile`); to build "
            "this pipeline anywhere else, start servers with `python -m pipeline_core "
            'serve ...` and set service to "grpc://HOST:PORT"'
        )
    return _local_dispatcher[-1]


def _compression(step: DistributeStep) -> str | None:
    return "AUTO" if step.compression == "auto" else None


def _build_distribute(ds: Any, step: DistributeStep, index: int) -> Any:
    tf = _tf()
    return ds.apply(
        tf.data.experimental.service.distribute(
            step.processing_mode,
            dispatcher_address(step),
            compression=_compression(step),
        )
    )


def _emit_distribute(step: DistributeStep, index: int, names: ScriptNames) -> list[str]:
    lines = []
    service = step.service
    if service == LOCAL:
        service = "grpc://localhost:5050"
        ports = ", ".join(str(5051 + i) for i in range(step.workers))
        lines = [
            f"# Pipeline Lab ran this on {step.workers} local tf.data service worker(s). Start "
            "a dispatcher and the workers first:",
            "#   python -m pipeline_core serve dispatcher --port 5050",
            "#   python -m pipeline_core serve worker --dispatcher localhost:5050 --port PORT"
            f"  # PORT = {ports}",
        ]
    call = f"{step.processing_mode!r}, {service!r}, compression={_compression(step)!r}"
    return [
        *lines,
        "# the steps above run on the workers, the steps below here",
        f"ds = ds.apply(tf.data.experimental.service.distribute({call}))",
    ]


# --- the table ------------------------------------------------------------------


@dataclass(frozen=True)
class StepOp:
    """One step op: its parameter model, its `tf.data` call and that call as script lines."""

    model: type[Frozen]
    build: Callable[[Any, Any, int], Any]
    emit: Callable[[Any, int, ScriptNames], list[str]]


STEPS: dict[str, StepOp] = {
    op.model.model_fields["op"].default: op
    for op in (
        StepOp(MapStep, _build_map, _emit_map),
        StepOp(ShuffleStep, _build_shuffle, _emit_shuffle),
        StepOp(CacheStep, _build_cache, _emit_cache),
        StepOp(BatchStep, _build_batch, _emit_batch),
        StepOp(PrefetchStep, _build_prefetch, _emit_prefetch),
        StepOp(RepeatStep, _build_repeat, _emit_repeat),
        StepOp(TakeStep, _build_take, _emit_take),
        StepOp(InterleaveStep, _build_interleave, _emit_interleave),
        StepOp(SleepStep, _build_sleep, _emit_sleep),
        StepOp(DistributeStep, _build_distribute, _emit_distribute),
    )
}
