"""Standalone `tf.data` code for a spec: a script that imports only TensorFlow and NumPy.

The script reads like the TF guide: paths as constants at the top, the source
function, one `augment(image, label, seed)` per map step calling `tf.image`
ops by name, then `make_dataset()` with the steps in order. It embeds the very
code the builder runs - the source function from `pipeline_core.sources` (via
`inspect.getsource`) and the augment functions `pipeline_core.augment_code`
writes (the builder compiles the same text) - and each step's lines come from
its op's `emit`, beside its `build` in `pipeline_core.steps`, so an exported
pipeline cannot drift from the one Pipeline Lab profiles.
"""

from __future__ import annotations

import inspect
import os
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from pipeline_core.augment_code import AugmentCode, augment_source, helper_source
from pipeline_core.build import BuildError, element_specs_job, map_inputs
from pipeline_core.errors import PipelineLabError
from pipeline_core.paths import data_dir
from pipeline_core.sources import Call, SourceError, plan_source
from pipeline_core.spec import Options, PipelineSpec, load_spec
from pipeline_core.steps import STEPS, InterleaveStep, MapStep, ScriptNames, distribute_step


class ExportError(PipelineLabError):
    """The spec cannot be exported as standalone code; the message says why and what to do."""


_INDENT = "    "


# Source arguments that hold paths: written as constants at the top of the script.
_PATH_ARGS = ("path", "files", "features_path", "labels_path")


class _Paths:
    """Path constants of a script: `DATA_DIR` and one name per path, in order of use."""

    def __init__(self) -> None:
        self.home = str(data_dir())
        self.constants: dict[str, str] = {}

    def name(self, path: str, wanted: str) -> str:
        for name, value in self.constants.items():
            if value == path:
                return name
        name = wanted.upper()
        while name in self.constants:
            name += "_"
        self.constants[name] = path
        return name

    def lines(self) -> list[str]:
        if not self.constants:
            return []
        lines = []
        inside = [p for p in self.constants.values() if p.startswith(self.home + os.sep)]
        if inside:
            lines.append(f"DATA_DIR = {self.home!r}  # Pipeline Lab's data dir: point at yours")
        for name, path in self.constants.items():
            if path.startswith(self.home + os.sep):
                rest = path[len(self.home) + 1 :]
                lines.append(f'{name} = f"{{DATA_DIR}}/{rest}"')
            else:
                lines.append(f"{name} = {path!r}")
        return lines


def _render_value(value: Any, key: str = "", paths: _Paths | None = None) -> str:
    if isinstance(value, Call):
        return _render_call(value, paths)
    if callable(value):
        return value.__name__
    if paths is not None and key in _PATH_ARGS and isinstance(value, str):
        return paths.name(value, f"source_{key}")
    return repr(value)


def _render_call(call: Call, paths: _Paths | None = None) -> str:
    args = [f"{key}={_render_value(value, key, paths)}" for key, value in call.kwargs.items()]
    one_line = f"{call.function.__name__}({', '.join(args)})"
    if len(one_line) <= 92:
        return one_line
    lines, line = [], ""
    for arg in args:
        if line and len(line) + len(arg) + 2 > 88:
            lines.append(line)
            line = ""
        line = f"{line} {arg}," if line else f"{arg},"
    lines.append(line)
    body = "".join(f"{_INDENT}{text}\n" for text in lines)
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


def _options_lines(options: Options) -> list[str]:
    """`tf.data.Options` lines, ending in `return ...` (no options when all are default)."""
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
    if not lines:
        return ["return ds"]
    return ["options = tf.data.Options()", *lines, "return ds.with_options(options)"]


_MAIN = """
if __name__ == "__main__":
    ds = make_dataset()
    print("element_spec:", ds.element_spec)
    for x, y in ds.take(3):
        total = float(tf.reduce_sum(tf.cast(x, tf.float64)))
        print("features", x.dtype.name, x.shape, "sum", total, "labels", y.numpy().ravel()[:8].tolist())
    if "--count" in sys.argv:
        print("elements:", sum(1 for _ in ds))
"""


def _safe_name(spec: PipelineSpec) -> str:
    return " ".join(spec.name.replace("\\", "/").replace('"', "'").split())


def _header(spec: PipelineSpec, paths: _Paths, uses_os: bool) -> str:
    lines = [
        f'"""{_safe_name(spec)}: a tf.data pipeline exported by Pipeline Lab.',
        "",
        'Run it to print the first elements; --count counts them all."""',
        "",
        "import os" if uses_os else "",
        "import sys",
        "",
        "import numpy as np",
        "import tensorflow as tf",
    ]
    constants = paths.lines()
    lines = [line for i, line in enumerate(lines) if line or i != 4]
    return "\n".join(lines + ([""] + constants if constants else []))


def _augment_codes(
    spec: PipelineSpec, generator: Callable[[], Iterable[Any]] | None
) -> dict[int, AugmentCode]:
    """The augment function of every map step, named `augment` (one map) or `augment_<i>`."""
    maps = [i for i, s in enumerate(spec.steps) if isinstance(s, MapStep)]
    if not maps:
        return {}
    try:
        inputs = map_inputs(spec, generator=generator)
    except BuildError as exc:
        raise ExportError(str(exc)) from None
    codes = {}
    for index in maps:
        name = "augment" if len(maps) == 1 else f"augment_{index}"
        try:
            codes[index] = augment_source(
                spec.steps[index].augmentations, features=inputs[index], name=name
            )
        except ValueError as exc:
            raise ExportError(f"steps[{index}] (map): {exc}") from None
    return codes


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
        ExportError: the source cannot be read as configured, a map step cannot be
            built, or the custom generator's code cannot be read.
    """
    spec = load_spec(spec)
    first = spec.steps[0] if spec.steps else None
    interleave = first if isinstance(first, InterleaveStep) else None
    try:
        distributed = distribute_step(spec) is not None
        call = plan_source(
            spec.source, generator=generator, interleave=interleave, distributed=distributed
        )
    except SourceError as exc:
        raise ExportError(f"source ({spec.source.type}): {exc}") from None
    codes = _augment_codes(spec, generator)
    functions = [*_custom_functions(call), *call.functions()]
    paths = _Paths()
    body = [f"ds = {_render_call(call, paths)}"]
    names = ScriptNames(augment={i: code.name for i, code in codes.items()}, path=paths.name)
    for index, step in enumerate(spec.steps):
        body.extend(STEPS[step.op].emit(step, index, names))
    body.extend(_options_lines(spec.options))
    sections = [_header(spec, paths, uses_os=any("os." in line for line in body))]
    sections.append("\n\n\n".join(_function_source(fn) for fn in functions))
    helpers = [h for code in codes.values() for h in code.helpers]
    if helpers:
        sections.append(helper_source(helpers))
    sections.extend(code.source.rstrip() for code in codes.values())
    make = (
        "def make_dataset():\n"
        f'{_INDENT}"""The pipeline "{_safe_name(spec)}" (built, not yet iterated)."""\n'
        + "".join(f"{_INDENT}{line}\n" if line else "\n" for line in "\n".join(body).split("\n"))
    )
    sections.append(make.rstrip())
    return "\n\n\n".join(sections) + "\n\n" + _MAIN


def design_job(spec_json: str, *, progress: Any = None) -> dict[str, Any]:
    """The Design page's figures of a spec as one isolated job (`pipeline_core.isolate`):
    `build.element_specs_job`'s stages and error, plus the exported code ("code") or why
    there is none ("code_error"). Both plan the user's source (file headers, folders, a
    TFRecord's first record with TensorFlow), so they share one child process."""
    found = element_specs_job(spec_json, progress=progress)
    try:
        code, code_error = export_code(spec_json), None
    except PipelineLabError as exc:
        code, code_error = None, str(exc)
    return {**found, "code": code, "code_error": code_error}
