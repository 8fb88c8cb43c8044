"""`PipelineSpec` -> `tf.data.Dataset`. Builds, never iterates.

The source comes first (a leading interleave step is handed to it), then the
steps in the user's order, then `options` mapped onto `tf.data.Options`. A
failure raises `BuildError` naming the step (or the source) and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline_core._tf import tf as _import_tf
from pipeline_core.augment_code import Features, augment_function, features_of
from pipeline_core.errors import PipelineLabError, describe_error
from pipeline_core.paths import resolve_path
from pipeline_core.sources import build_source
from pipeline_core.spec import (
    BatchStep,
    CacheStep,
    InterleaveStep,
    MapStep,
    Options,
    PipelineSpec,
    PrefetchStep,
    RepeatStep,
    ShuffleStep,
    TakeStep,
    load_spec,
)

Generator = Callable[[], Iterable[Any]]


class BuildError(PipelineLabError):
    """The pipeline could not be built; `.step_index` is the failing step (None = source)."""

    def __init__(self, message: str, *, step_index: int | None):
        super().__init__(message)
        self.step_index = step_index


@dataclass(frozen=True)
class StageSpec:
    """What elements look like after one stage of the pipeline.

    Attributes:
        stage: "source (synthetic)" or "steps[1] map".
        step_index: None for the source, else the step's index.
        features: features' dtype and shape as text, e.g. "uint8 (None, 64, 64, 3)".
        label: the label's dtype and shape as text.
        cardinality: the known element count, or None (unknown or infinite).
    """

    stage: str
    step_index: int | None
    features: str
    label: str
    cardinality: int | None


def map_seed(step_index: int) -> int:
    """Seed of the random-seed stream a map step at `step_index` zips with."""
    return 1_000_003 * (step_index + 1)


def parallel_calls(value: int | str | None) -> int | None:
    """Spec parallelism (null / int / "autotune") as a `num_parallel_calls` argument."""
    return _import_tf().data.AUTOTUNE if value == "autotune" else value


def _parallel_args(calls: int | str | None, deterministic: bool | None) -> dict[str, Any]:
    """`num_parallel_calls`/`deterministic` kwargs (`deterministic` only matters when parallel)."""
    if calls is None:
        return {}
    args: dict[str, Any] = {"num_parallel_calls": parallel_calls(calls)}
    if deterministic is not None:
        args["deterministic"] = deterministic
    return args


# --- one function per op -------------------------------------------------------


def seed_stream(index: int) -> Any:
    """The per-element random numbers a map step at `index` zips with: new ones every epoch."""
    return _import_tf().data.Dataset.random(seed=map_seed(index), rerandomize_each_iteration=True)


def _map(ds: Any, step: MapStep, index: int) -> Any:
    tf = _import_tf()
    features, _ = ds.element_spec
    augment = augment_function(step.augmentations, features=features_of(features))
    return tf.data.Dataset.zip((ds, seed_stream(index))).map(
        lambda element, seed: augment(element[0], element[1], tf.stack([seed, 0])),
        **_parallel_args(step.num_parallel_calls, step.deterministic),
    )


def _shuffle(ds: Any, step: ShuffleStep, index: int) -> Any:
    return ds.shuffle(
        step.buffer_size, seed=step.seed, reshuffle_each_iteration=step.reshuffle_each_iteration
    )


def _cache(ds: Any, step: CacheStep, index: int) -> Any:
    if not step.filename:
        return ds.cache()
    path = resolve_path(step.filename)
    if path.is_dir():
        raise ValueError(
            f"cache filename {str(path)!r} is a folder; give a file path prefix such as "
            f"{str(path / 'cache')!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return ds.cache(str(path))


def batch_size_for(batch_size: int, count: int | None, *, drop_remainder: bool) -> int:
    """The batch size to hand TensorFlow for `count` known elements (None: unknown/infinite).

    A batch size above the element count yields one batch of every element, exactly as
    the count itself would, but TensorFlow reserves room for `batch_size` elements, so
    an absurd size (1e9) stalls the pipeline: ask for the count instead. With
    `drop_remainder` such a pipeline would yield nothing at all, a mistake worth naming.
    """
    if count is None or batch_size <= count:
        return batch_size
    if drop_remainder:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {count} elements that reach this "
            "step, and drop_remainder drops that one partial batch, so the pipeline yields "
            "nothing: lower batch_size or set drop_remainder to false"
        )
    return max(count, 1)


def _batch(ds: Any, step: BatchStep, index: int) -> Any:
    size = batch_size_for(step.batch_size, cardinality(ds), drop_remainder=step.drop_remainder)
    return ds.batch(
        size,
        drop_remainder=step.drop_remainder,
        **_parallel_args(step.num_parallel_calls, step.deterministic),
    )


def _prefetch(ds: Any, step: PrefetchStep, index: int) -> Any:
    size = step.buffer_size
    return ds.prefetch(_import_tf().data.AUTOTUNE if size == "autotune" else size)


def _repeat(ds: Any, step: RepeatStep, index: int) -> Any:
    return ds.repeat(step.count)


def _take(ds: Any, step: TakeStep, index: int) -> Any:
    return ds.take(step.count)


def _interleave(ds: Any, step: InterleaveStep, index: int) -> Any:
    return ds  # applied by the source, which reads the files


STEP_BUILDERS: dict[type, Callable[[Any, Any, int], Any]] = {
    MapStep: _map,
    ShuffleStep: _shuffle,
    CacheStep: _cache,
    BatchStep: _batch,
    PrefetchStep: _prefetch,
    RepeatStep: _repeat,
    TakeStep: _take,
    InterleaveStep: _interleave,
}


def tf_options(options: Options) -> Any:
    """`tf.data.Options` with the spec's non-null options set."""
    result = _import_tf().data.Options()
    if options.deterministic is not None:
        result.deterministic = options.deterministic
    if options.private_threadpool_size is not None:
        result.threading.private_threadpool_size = options.private_threadpool_size
    if options.max_intra_op_parallelism is not None:
        result.threading.max_intra_op_parallelism = options.max_intra_op_parallelism
    if options.autotune is not None:
        result.autotune.enabled = options.autotune
    if options.autotune_ram_budget_mb is not None:
        result.autotune.ram_budget = options.autotune_ram_budget_mb * 1024 * 1024
    return result


# --- orchestration -------------------------------------------------------------


def _fail(where: str, exc: BaseException, step_index: int | None) -> BuildError:
    return BuildError(f"{where}: {describe_error(exc)}", step_index=step_index)


def _stages(
    spec: PipelineSpec, generator: Generator | None
) -> Iterator[tuple[str, int | None, Any]]:
    """Yield `(stage label, step index, dataset)` after the source and after each step."""
    first = spec.steps[0] if spec.steps else None
    interleave = first if isinstance(first, InterleaveStep) else None
    where = f"source ({spec.source.type})"
    try:
        ds = build_source(spec.source, generator=generator, interleave=interleave)
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its stage
        raise _fail(where, exc, None) from exc
    yield where, None, ds
    for index, step in enumerate(spec.steps):
        where = f"steps[{index}] ({step.op})"
        try:
            ds = STEP_BUILDERS[type(step)](ds, step, index)
        except Exception as exc:  # noqa: BLE001
            raise _fail(where, exc, index) from exc
        yield f"steps[{index}] {step.op}", index, ds


def build(spec: PipelineSpec | dict[str, Any] | str, *, generator: Generator | None = None) -> Any:
    """The `tf.data.Dataset` for `spec` (built, not iterated).

    Args:
        spec: a `PipelineSpec` (or anything `load_spec` accepts).
        generator: the callable of a generator source with template "custom".

    Raises:
        SpecError: `spec` is not a valid spec.
        BuildError: a stage failed; the message names it ("steps[2] (map): ...").
    """
    spec = load_spec(spec)
    *_, (_, _, ds) = _stages(spec, generator)
    try:
        return ds.with_options(tf_options(spec.options))
    except Exception as exc:  # noqa: BLE001
        raise _fail("options", exc, None) from exc


def cardinality(ds: Any) -> int | None:
    """The dataset's known element count, or None when unknown or infinite."""
    count = int(_import_tf().data.experimental.cardinality(ds))
    return count if count >= 0 else None


def dataset_cardinality(
    spec: PipelineSpec | dict[str, Any] | str, *, generator: Generator | None = None
) -> int | None:
    """The known element count of the built pipeline, or None (unknown or infinite)."""
    return cardinality(build(spec, generator=generator))


def _text(spec: Any) -> str:
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        dims = ", ".join("None" if d is None else str(d) for d in spec.shape.as_list() or [])
        if spec.shape.rank == 1:
            dims += ","
        return f"{spec.dtype.name} ({dims})"
    return str(spec)


def map_inputs(
    spec: PipelineSpec | dict[str, Any] | str, *, generator: Generator | None = None
) -> dict[int, Features]:
    """What each map step receives (dtype and static shape), by step index.

    The builder writes each map's augment function for exactly this input;
    export writes the same function.

    Raises:
        SpecError, BuildError: as `build`.
    """
    spec = load_spec(spec)
    out = {}
    previous = None
    for _, index, ds in _stages(spec, generator):
        if index is not None and isinstance(spec.steps[index], MapStep):
            out[index] = features_of(previous.element_spec[0])
        previous = ds
    return out


def element_specs(
    spec: PipelineSpec | dict[str, Any] | str, *, generator: Generator | None = None
) -> list[StageSpec]:
    """What elements look like after the source and after each step (for the Design page).

    Raises:
        SpecError, BuildError: as `build`.
    """
    out = []
    for stage, index, ds in _stages(load_spec(spec), generator):
        features, label = ds.element_spec
        out.append(StageSpec(stage, index, _text(features), _text(label), cardinality(ds)))
    return out
