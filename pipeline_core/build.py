"""`PipelineSpec` -> `tf.data.Dataset`. Builds, never iterates.

The source comes first (a leading interleave step is handed to it), then the
steps in the user's order (each op's `build` in `pipeline_core.steps.STEPS`),
then `options` mapped onto `tf.data.Options`. A failure raises `BuildError`
naming the step (or the source) and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.augment_code import Features, features_of
from pipeline_core.errors import PipelineLabError, describe_error
from pipeline_core.sources import build_source
from pipeline_core.spec import Options, PipelineSpec, load_spec
from pipeline_core.steps import (
    STEPS,
    DistributeStep,
    InterleaveStep,
    MapStep,
    cardinality,
    distribute_step,
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


def tf_options(options: Options) -> Any:
    """`tf.data.Options` with the spec's non-null options set."""
    result = _tf().data.Options()
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
    spec: PipelineSpec, generator: Generator | None, *, plan: bool = False
) -> Iterator[tuple[str, int | None, Any]]:
    """Yield `(stage label, step index, dataset)` after the source and after each step.

    `plan`: only what elements look like is wanted, so a distribute step is passed over
    (its elements are those it receives) and no tf.data service is asked to register.
    """
    first = spec.steps[0] if spec.steps else None
    interleave = first if isinstance(first, InterleaveStep) else None
    where = f"source ({spec.source.type})"
    try:
        distributed = distribute_step(spec) is not None
        ds = build_source(
            spec.source, generator=generator, interleave=interleave, distributed=distributed
        )
    except Exception as exc:  # every failure is reported with its stage
        raise _fail(where, exc, None) from exc
    yield where, None, ds
    for index, step in enumerate(spec.steps):
        where = f"steps[{index}] ({step.op})"
        if plan and isinstance(step, DistributeStep):
            yield f"steps[{index}] {step.op}", index, ds
            continue
        try:
            ds = STEPS[step.op].build(ds, step, index)
        except Exception as exc:
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
    if spec.options == Options():
        # as exported code and hand-written code read: no `with_options` of defaults,
        # so the dataset graph is the one a user would write (benchmarks/bench_parity.py)
        return ds
    try:
        return ds.with_options(tf_options(spec.options))
    except Exception as exc:
        raise _fail("options", exc, None) from exc


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
    for _, index, ds in _stages(spec, generator, plan=True):
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
    for stage, index, ds in _stages(load_spec(spec), generator, plan=True):
        features, label = ds.element_spec
        out.append(StageSpec(stage, index, _text(features), _text(label), cardinality(ds)))
    return out


def element_specs_job(spec_json: str, *, progress: Any = None) -> dict[str, Any]:
    """`element_specs` as an isolated job (`pipeline_core.isolate`), for the Design page.

    Building imports TensorFlow and plans the user's source (file headers, folders),
    so the page runs this in a child process and draws the plain data it returns.

    Returns:
        {"stages": [the fields of each `StageSpec` as a dict], "error": None}, or
        {"stages": [], "error": message} when the spec is invalid or cannot be built
        (a `PipelineLabError`: the user's mistake, its message names the fix).
        Anything else raises (the job fails with the child's reason).
    """
    if progress is not None:
        progress("building the pipeline")
    try:
        stages = element_specs(spec_json)
    except PipelineLabError as exc:
        return {"stages": [], "error": str(exc)}
    return {"stages": [asdict(stage) for stage in stages], "error": None}
