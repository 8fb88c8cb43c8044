"""Standalone `tf.data` code for a spec: a script that imports only TensorFlow and NumPy.

The script embeds the very functions the builder runs - the source function
from `pipeline_core.sources` (via `inspect.getsource`) and the augmentation ops
from `augment.export_source` - and calls them with the same arguments, so an
exported pipeline cannot drift from the one Pipeline Lab profiles.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from pipeline_core import augment
from pipeline_core.build import map_seed
from pipeline_core.paths import resolve_path
from pipeline_core.sources import Call, SourceError, plan_source
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

_HUGE_BATCH = 65_536  # above this, the script asks for the known element count instead


class ExportError(ValueError):
    """The spec cannot be exported as standalone code; the message says why and what to do."""


_INDENT = "    "


def _parallel(value: int | str | None) -> str:
    return "tf.data.AUTOTUNE" if value == "autotune" else repr(value)


def _parallel_args(calls: int | str | None, deterministic: bool | None) -> list[str]:
    """Same rule as the builder: `deterministic` is passed only with parallel calls."""
    if calls is None:
        return []
    return [f"num_parallel_calls={_parallel(calls)}", f"deterministic={deterministic!r}"]


def _render_value(value: Any) -> str:
    if isinstance(value, Call):
        return _render_call(value)
    if callable(value):
        return value.__name__
    return repr(value)


def _render_call(call: Call) -> str:
    args = [f"{key}={_render_value(value)}" for key, value in call.kwargs.items()]
    one_line = f"{call.function.__name__}({', '.join(args)})"
    if len(one_line) <= 80:
        return one_line
    body = "".join(f"{_INDENT}{arg},\n" for arg in args)
    return f"{call.function.__name__}(\n{body})"


def _function_source(fn: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn)).rstrip()
    except (OSError, TypeError):
        raise ExportError(
            f"cannot read the source code of {getattr(fn, '__name__', fn)!r}; define the "
            "generator with `def` in a .py file (not a lambda or an interactive session)"
        ) from None


def _custom_functions(call: Call) -> list[Callable[..., Any]]:
    """Callables passed as plain values (a custom generator), which need their source too."""
    out = []
    for value in call.kwargs.values():
        if isinstance(value, Call):
            out.extend(_custom_functions(value))
        elif callable(value):
            if getattr(value, "__name__", "<lambda>") == "<lambda>":
                raise ExportError(
                    "a lambda generator cannot be exported; define it with `def` in a .py file"
                )
            out.append(value)
    return out


# --- steps as code -------------------------------------------------------------


def _map_lines(step: MapStep, index: int) -> list[str]:
    chain = augment.chain_of(step.augmentations)
    names = ", ".join(a.name for a in step.augmentations)
    return [
        f"# steps[{index}]: map {names}",
        f"chain_{index} = {chain!r}",
        f"seeds_{index} = tf.data.Dataset.random(",
        f"{_INDENT}seed={map_seed(index)}, rerandomize_each_iteration=True",
        ").batch(2)",
        f"ds = tf.data.Dataset.zip((ds, seeds_{index})).map(",
        f"{_INDENT}lambda element, seed: apply_chain(element[0], element[1], chain_{index}, seed),",
        *(
            f"{_INDENT}{arg},"
            for arg in _parallel_args(step.num_parallel_calls, step.deterministic)
        ),
        ")",
    ]


def _cache_lines(step: CacheStep, index: int) -> list[str]:
    if not step.filename:
        return ["ds = ds.cache()"]
    path = str(resolve_path(step.filename))
    return [
        "import os",
        "",
        f"cache_path = {path!r}",
        "os.makedirs(os.path.dirname(cache_path) or '.', exist_ok=True)",
        "ds = ds.cache(cache_path)",
    ]


def _step_lines(step: Any, index: int) -> list[str]:
    if isinstance(step, MapStep):
        return _map_lines(step, index)
    if isinstance(step, ShuffleStep):
        return [
            f"ds = ds.shuffle({step.buffer_size}, seed={step.seed!r}, "
            f"reshuffle_each_iteration={step.reshuffle_each_iteration!r})"
        ]
    if isinstance(step, CacheStep):
        return _cache_lines(step, index)
    if isinstance(step, BatchStep):
        size = str(step.batch_size)
        lines = []
        if step.batch_size > _HUGE_BATCH and not step.drop_remainder:
            # as build.batch_size_for: TensorFlow reserves room for batch_size elements
            lines.append("known = int(ds.cardinality())  # -1 infinite, -2 unknown")
            size = f"min({step.batch_size}, max(known, 1)) if known >= 0 else {step.batch_size}"
        args = "".join(
            f", {arg}" for arg in _parallel_args(step.num_parallel_calls, step.deterministic)
        )
        return [*lines, f"ds = ds.batch({size}, drop_remainder={step.drop_remainder!r}{args})"]
    if isinstance(step, PrefetchStep):
        return [f"ds = ds.prefetch({_parallel(step.buffer_size)})"]
    if isinstance(step, RepeatStep):
        return [f"ds = ds.repeat({step.count!r})"]
    if isinstance(step, TakeStep):
        return [f"ds = ds.take({step.count})"]
    if isinstance(step, InterleaveStep):
        return [f"# steps[{index}]: interleave is applied by the source function above"]
    raise ExportError(f"steps[{index}]: cannot export op {step.op!r}")


def _options_lines(options: Options) -> list[str]:
    settings = [
        ("options.deterministic", options.deterministic),
        ("options.threading.private_threadpool_size", options.private_threadpool_size),
        ("options.threading.max_intra_op_parallelism", options.max_intra_op_parallelism),
        ("options.autotune.enabled", options.autotune),
    ]
    lines = [f"{target} = {value!r}" for target, value in settings if value is not None]
    if options.autotune_ram_budget_mb is not None:
        mb = options.autotune_ram_budget_mb
        lines.append(f"options.autotune.ram_budget = {mb} * 1024 * 1024  # {mb} MB")
    return ["options = tf.data.Options()", *lines, "ds = ds.with_options(options)"]


_MAIN = """
if __name__ == "__main__":
    import sys

    ds = make_dataset()
    print("element_spec:", ds.element_spec)
    for features, label in ds.take(3):
        total = float(tf.reduce_sum(tf.cast(features, tf.float64)))
        labels = label.numpy().ravel()[:8].tolist()
        print("features", features.dtype.name, features.shape, "sum", total, "labels", labels)
    if "--count" in sys.argv:
        print("elements:", sum(1 for _ in ds))
"""


def _safe_name(spec: PipelineSpec) -> str:
    return " ".join(spec.name.replace("\\", "/").replace('"', "'").split())


def _header(spec: PipelineSpec) -> str:
    return (
        f'"""{_safe_name(spec)}: a tf.data input pipeline exported by Pipeline Lab.\n\n'
        "Run `python this_file.py` to print the element_spec and the first elements;\n"
        'add --count to also count every element."""\n\n'
        "import numpy as np\n"
        "import tensorflow as tf\n"
    )


def export_code(
    spec: PipelineSpec | dict[str, Any] | str,
    *,
    generator: Callable[[], Iterable[Any]] | None = None,
) -> str:
    """A standalone Python script (tensorflow + numpy only) that builds the same pipeline.

    Args:
        spec: a `PipelineSpec` or anything `load_spec` accepts.
        generator: the callable of a generator source with template "custom"; its
            source code is copied into the script.

    Raises:
        SpecError: the spec is invalid.
        ExportError: the source cannot be read as configured, or the custom generator's
            code cannot be read.
    """
    spec = load_spec(spec)
    first = spec.steps[0] if spec.steps else None
    interleave = first if isinstance(first, InterleaveStep) else None
    try:
        call = plan_source(spec.source, generator=generator, interleave=interleave)
    except SourceError as exc:
        raise ExportError(f"source ({spec.source.type}): {exc}") from None
    functions = [*_custom_functions(call), *call.functions()]
    sections = [_header(spec)]
    sections.append(
        "# Source functions, copied from pipeline_core.sources.\n\n\n"
        + "\n\n\n".join(_function_source(fn) for fn in functions)
    )
    ops = [
        op
        for s in spec.steps
        if isinstance(s, MapStep)
        for op, _ in augment.chain_of(s.augmentations)
    ]
    if ops:
        sections.append(augment.export_source(ops).rstrip())
    body = [f"ds = {_render_call(call)}"]
    for index, step in enumerate(spec.steps):
        body.extend(_step_lines(step, index))
    body.extend(_options_lines(spec.options))
    body.append("return ds")
    make = (
        "def make_dataset():\n"
        f'{_INDENT}"""The pipeline "{_safe_name(spec)}" (built, not yet iterated)."""\n'
        + "".join(f"{_INDENT}{line}\n" if line else "\n" for line in "\n".join(body).split("\n"))
    )
    sections.append(make.rstrip())
    return "\n\n\n".join(sections) + "\n\n" + _MAIN
