"""Start a profile run: what is profiled travels to the child, the handle watches it.

`start_profile(spec_or_factory, settings=...)` sends a spec, a module-level
dataset factory or a serialized `tf.data.Dataset` to a child process
(`worker.run_profile`) and returns its `RunHandle` at once; `profile(...)` is
the blocking form.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.child import default_memory_limit_mb
from pipeline_core.profile.handle import RunHandle
from pipeline_core.profile.result import RunResult, Snapshot
from pipeline_core.profile.settings import ProfileError, RunSettings
from pipeline_core.spec import PipelineSpec, load_spec


def _is_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")


# Stateful ops whose state is only a random stream: a copy in the child draws its own numbers,
# which is all a profile needs (tf.data service ships such datasets the same way).
_RANDOM_OPS = re.compile(r"(Random\w*|TruncatedNormal|ParameterizedTruncatedNormal|Multinomial)")
_STATEFUL_OP = re.compile(r"(\w+) is stateful")


def _serialized_graph(ds: Any) -> bytes:
    """The dataset's graph as bytes; raises ProfileError for state that cannot be copied."""
    tf = _tf()
    policy = tf.data.experimental.ExternalStatePolicy
    try:
        return ds._as_serialized_graph(external_state_policy=policy.FAIL).numpy()
    except tf.errors.OpError as exc:
        found = _STATEFUL_OP.search(exc.message or "")
        op = found.group(1) if found else None
        if op is None or not _RANDOM_OPS.fullmatch(op):
            what = f"its graph holds state ({op}) that" if op else "its graph"
            raise ProfileError(
                f"this tf.data.Dataset cannot be sent to the profiling process: {what} cannot "
                "be copied to another process (from_generator, py_function and numpy_function "
                "run Python code of this process); pass a module-level function that returns "
                "the dataset instead, e.g. start_profile(make_dataset, settings=...), or "
                "profile a spec"
            ) from None
    return ds._as_serialized_graph(external_state_policy=policy.IGNORE).numpy()


def _dataset_payload(ds: Any) -> dict[str, Any]:
    graph = _serialized_graph(ds)
    try:
        element_spec = pickle.dumps(ds.element_spec)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ProfileError(
            f"the element_spec of this tf.data.Dataset cannot be sent to the profiling process "
            f"({exc}); pass a module-level function that returns the dataset instead"
        ) from None
    return {"dataset_graph": graph, "element_spec": element_spec}


def _payload(source: Any, generator: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    if _is_dataset(source):
        return _dataset_payload(source), None, f"tf.data.Dataset ({type(source).__name__})"
    if callable(source) and not isinstance(source, PipelineSpec):
        try:
            pickle.dumps(source)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ProfileError(
                f"the dataset factory {source!r} cannot be sent to the profiling process "
                f"({exc}); define it at module level (not a lambda or nested function)"
            ) from None
        name = f"{getattr(source, '__module__', '?')}.{getattr(source, '__qualname__', source)}"
        return {"factory": source}, None, name
    spec = load_spec(source)
    if generator is not None:
        try:
            pickle.dumps(generator)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ProfileError(
                f"the generator cannot be sent to the profiling process ({exc}); "
                "define it at module level"
            ) from None
    return {"spec": spec.to_dict(), "generator": generator}, spec.to_dict(), spec.name


def start_profile(
    spec_or_factory: Any,
    *,
    settings: RunSettings | None = None,
    store: Any = None,
    name: str | None = None,
    generator: Any = None,
    summary_extra: Mapping[str, Any] | None = None,
) -> RunHandle:
    """Start profiling in a child process and return its handle at once.

    Args:
        spec_or_factory: a `PipelineSpec` (or its dict / JSON text / file path), a
            picklable zero-argument function returning a `tf.data.Dataset`, or a
            `tf.data.Dataset` itself: its graph is serialized here and rebuilt in the child
            (refused when it runs Python code: from_generator, py_function, numpy_function).
        settings: limits and the simulated step (default `RunSettings()`).
        store: a `RunStore` to record the run in as it goes (None: not stored).
        name: the run's name (default: settings.name, the spec's or the factory's name).
        generator: a picklable callable for a spec with a "custom" generator source.
        summary_extra: JSON-able keys stored with the run's summary (e.g. the memory
            estimate made before the run); the measured figures win on a clash.

    Raises:
        ProfileError: the settings are invalid, the factory cannot be pickled or the
            dataset's graph cannot be copied to another process.
        SpecError: the spec is invalid.
    """
    settings = settings or RunSettings()
    if settings.memory_limit_mb is None:
        settings = replace(settings, memory_limit_mb=default_memory_limit_mb())
    payload, spec, default_name = _payload(spec_or_factory, generator)
    payload["settings"] = settings.to_dict()
    run_name = name or settings.name or default_name
    return RunHandle(
        payload,
        settings=settings,
        name=run_name,
        spec=spec,
        store=store,
        summary_extra=summary_extra,
    )


def profile(
    spec_or_factory: Any,
    *,
    settings: RunSettings | None = None,
    store: Any = None,
    name: str | None = None,
    generator: Any = None,
    on_snapshot: Callable[[Snapshot], None] | None = None,
) -> RunResult:
    """Profile and wait for the result (see `start_profile`); `on_snapshot` gets live
    snapshots about `sample_hz` times a second. Ctrl-C stops the run and keeps its result."""
    handle = start_profile(
        spec_or_factory, settings=settings, store=store, name=name, generator=generator
    )
    interval = 1.0 / (settings or RunSettings()).sample_hz
    try:
        while not handle.done:
            if on_snapshot is not None:
                on_snapshot(handle.snapshot())
            handle.wait(interval)
    except KeyboardInterrupt:
        handle.stop()
    return handle.result()
