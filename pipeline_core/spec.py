"""The declarative, versioned pipeline spec: source, ordered steps, options.

A `PipelineSpec` is frozen, JSON round-trippable data. `load_spec` validates a
dict/JSON text/file and reports every problem at once, each with its field
path, what was received and what is allowed, e.g.
``steps[2].batch_size: must be >= 1, received 0``. The source models live
here; the step models live with their build and export code in
`pipeline_core.steps`, generator templates in `pipeline_core.generators`.
Imports no TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError

from pipeline_core.augment import AUGMENTATIONS
from pipeline_core.errors import PipelineLabError
from pipeline_core.fields import Dim, DType, Frozen, Parallelism, Seed
from pipeline_core.generators import CUSTOM_TEMPLATE, GENERATOR_TEMPLATES
from pipeline_core.steps import (
    LOCAL,
    STEPS,
    BatchStep,
    CacheStep,
    DistributeStep,
    InterleaveStep,
    MapStep,
)

SCHEMA_VERSION = 1
# Bounds on a spec as read (issue 10): what any real pipeline stays far below.
MAX_SPEC_BYTES = 1_000_000  # JSON text of a spec
MAX_DEPTH = 32  # nesting of JSON objects and lists
MAX_STEPS = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # TensorFlow takes int64 at most
ECHO_CHARS = 80  # a received value is echoed in a message up to this many characters

# --- sources -------------------------------------------------------------------


class SyntheticSource(Frozen):
    """Random tensors of a given shape/dtype with integer labels, seeded (no data needed)."""

    type: Literal["synthetic"] = "synthetic"
    num_examples: int = Field(1000, ge=1, le=10_000_000, description="Number of examples.")
    shape: tuple[Dim, ...] = Field((32, 32, 3), min_length=1, description="Shape of one example.")
    dtype: DType = Field("float32", description="Data type of the features.")
    num_classes: int = Field(10, ge=1, description="Labels are drawn from 0..num_classes-1.")
    seed: Seed = Field(0, description="Seed of the random values.")


class NumpySource(Frozen):
    """In-memory NumPy arrays fed through `from_tensor_slices`.

    With `path` (an .npy/.npz file) the arrays are loaded fully into memory;
    without it, seeded random arrays of `shape` are made in memory.
    """

    type: Literal["numpy"] = "numpy"
    path: str | None = Field(None, description="Optional .npz/.npy file to load into memory.")
    features_key: str = Field("x", description="Array name of the features in an .npz file.")
    labels_key: str = Field("y", description="Array name of the labels in an .npz file.")
    num_examples: int = Field(1000, ge=1, le=1_000_000, description="Rows when generating.")
    shape: tuple[Dim, ...] = Field((32, 32, 3), min_length=1, description="Shape of one example.")
    dtype: DType = Field("float32", description="Data type of generated features.")
    num_classes: int = Field(10, ge=1, description="Number of label classes when generating.")
    seed: Seed = Field(0, description="Seed of generated arrays.")


class NpySource(Frozen):
    """`.npy` files, memory-mapped so data larger than RAM streams from disk."""

    type: Literal["npy"] = "npy"
    features_path: str = Field(..., min_length=1, description="Path of the features .npy file.")
    labels_path: str | None = Field(None, description="Path of the labels .npy file (optional).")


class NpzSource(Frozen):
    """An uncompressed `.npz` archive, its arrays memory-mapped."""

    type: Literal["npz"] = "npz"
    path: str = Field(..., min_length=1, description="Path of the .npz file.")
    features_key: str = Field("x", description="Array name of the features.")
    labels_key: str | None = Field("y", description="Array name of the labels (optional).")


class GeneratorSource(Frozen):
    """A Python generator through `from_generator` with an `output_signature`.

    `template` names a built-in generator (a closed registry: code typed in a
    browser is never executed); from the Python API, pass your own callable
    to `build(spec, generator=...)` and set `template` to "custom".
    """

    type: Literal["generator"] = "generator"
    template: str = Field("random_arrays", description="Built-in generator template.")
    num_examples: int = Field(1000, ge=1, le=10_000_000, description="Number of examples.")
    shape: tuple[Dim, ...] = Field((32, 32, 3), min_length=1, description="Shape of one example.")
    dtype: DType = Field("float32", description="dtype in the output_signature.")
    num_classes: int = Field(10, ge=1, description="Number of label classes.")
    seed: Seed = Field(0, description="Seed of the generator.")


class ImageFolderSource(Frozen):
    """JPEG/PNG/BMP/GIF files with labels from sub-folder names; decoded and resized."""

    type: Literal["image_folder"] = "image_folder"
    path: str = Field(..., min_length=1, description="Folder with one sub-folder per class.")
    image_size: tuple[Dim, Dim] = Field((64, 64), description="Height and width after resize.")
    channels: Literal[1, 3] = Field(3, description="Decode as grayscale (1) or RGB (3).")
    shuffle_files: bool = Field(True, description="Shuffle the file list (streams large data).")
    seed: Seed = Field(0, description="Seed of the file shuffle.")
    num_parallel_calls: Parallelism = Field(
        "autotune", description='Files read and decoded at once: null, an int or "autotune".'
    )


class TFRecordFeature(Frozen):
    """One entry of a TFRecord feature description."""

    kind: Literal["fixed", "var"] = Field("fixed", description="FixedLenFeature or VarLenFeature.")
    dtype: Literal["float32", "int64", "string"] = Field("float32", description="Stored dtype.")
    shape: tuple[int, ...] = Field((), description="Shape of a fixed-length feature.")


class TFRecordSource(Frozen):
    """TFRecord files (path or glob), optional GZIP; feature description given or inferred."""

    type: Literal["tfrecord"] = "tfrecord"
    files: str = Field(..., min_length=1, description="A file path or a glob pattern.")
    compression: Literal["", "GZIP", "ZLIB"] = Field("", description="Compression of the files.")
    features: dict[str, TFRecordFeature] | None = Field(
        None, description="Feature description; inferred from the first record when null."
    )
    features_key: str = Field("image", description="Feature used as the example's features.")
    label_key: str | None = Field("label", description="Feature used as the label (optional).")
    decode_image: bool = Field(
        False, description="Decode `features_key` as encoded image bytes (JPEG/PNG)."
    )
    image_size: tuple[Dim, Dim] | None = Field(None, description="Resize decoded images to this.")
    channels: Literal[1, 3] = Field(3, description="Channels of decoded images.")
    num_parallel_calls: Parallelism = Field(
        "autotune", description='Records parsed (and decoded) at once: null, an int or "autotune".'
    )


class CsvSource(Frozen):
    """A CSV file: one label column, the other columns as a float feature vector."""

    type: Literal["csv"] = "csv"
    path: str = Field(..., min_length=1, description="Path (or glob) of the CSV file(s).")
    label_column: str = Field("label", description="Name of the label column.")
    column_types: dict[str, Literal["float32", "int32", "int64", "string"]] | None = Field(
        None, description="Column types; inferred from the file when null."
    )
    header: bool = Field(True, description="The first line holds column names.")
    field_delim: str = Field(",", min_length=1, max_length=1, description="Field delimiter.")
    num_parallel_calls: Parallelism = Field(
        "autotune", description='Rows packed into examples at once: null, an int or "autotune".'
    )


SOURCE_MODELS: dict[str, type[Frozen]] = {
    m.model_fields["type"].default: m
    for m in (
        SyntheticSource,
        NumpySource,
        NpySource,
        NpzSource,
        GeneratorSource,
        ImageFolderSource,
        TFRecordSource,
        CsvSource,
    )
}
SOURCE_TYPES: tuple[str, ...] = tuple(SOURCE_MODELS)
FILE_SOURCES: frozenset[str] = frozenset({"image_folder", "tfrecord", "csv"})

Source = Annotated[
    Union[tuple(SOURCE_MODELS.values())],  # noqa: UP007
    Field(discriminator="type"),
]

# --- steps: the models live with their build and export code, in `pipeline_core.steps` ---

Step = Annotated[
    Union[tuple(op.model for op in STEPS.values())],  # noqa: UP007
    Field(discriminator="op"),
]

# --- options and the spec ------------------------------------------------------


class Options(Frozen):
    """Mapped onto `tf.data.Options` (null leaves TensorFlow's default)."""

    deterministic: bool | None = Field(None, description="Produce elements in order.")
    private_threadpool_size: int | None = Field(
        None, ge=0, description="Threads of a private pool (0 = shared pool)."
    )
    max_intra_op_parallelism: int | None = Field(
        None, ge=1, description="Max threads one op may use."
    )
    autotune: bool | None = Field(None, description="Let tf.data tune AUTOTUNE knobs.")
    autotune_ram_budget_mb: int | None = Field(
        None, ge=1, description="RAM budget of the autotuner, MB."
    )


class PipelineSpec(Frozen):
    """A whole pipeline: where data comes from and what happens to it, in order."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field("untitled pipeline", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    source: Source = Field(default_factory=SyntheticSource)
    steps: tuple[Step, ...] = Field((), max_length=MAX_STEPS)
    options: Options = Field(default_factory=Options)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; `load_spec(spec.to_dict()) == spec`."""
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text; `load_spec(spec.to_json()) == spec`."""
        return json.dumps(self.to_dict(), indent=indent)

    def replace(self, **changes: Any) -> PipelineSpec:
        """A validated copy with top-level fields replaced (e.g. `steps=...`)."""
        data = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            elif isinstance(value, list | tuple):
                value = [
                    v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value
                ]
            data[key] = value
        return load_spec(data)


# --- errors --------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation failure: where, what is wrong/allowed, and what was received."""

    path: str
    message: str
    received: Any = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(PipelineLabError):
    """A spec failed validation; `.problems` lists every failure."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        count = len(problems)
        head = f"invalid pipeline spec ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


_TAGS = set(SOURCE_MODELS) | set(STEPS) | set(AUGMENTATIONS)
_MISSING = object()


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    prev: Any = None
    for item in loc:
        is_tag = isinstance(item, str) and item in _TAGS
        if is_tag and (prev == "source" or isinstance(prev, int)):
            prev = item
            continue
        if isinstance(item, str) and item.startswith("function-"):
            prev = item
            continue
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
        prev = item
    return "".join(parts)


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for item in loc:
        if (
            isinstance(item, int)
            and isinstance(data, list | tuple)
            and -len(data) <= item < len(data)
        ):
            data = data[item]
        elif isinstance(data, dict) and item in data:
            data = data[item]
        elif isinstance(item, str) and item in _TAGS:
            continue
        else:
            return _MISSING
    return data


def _model_at(data: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the object at `loc` (for listing allowed fields)."""
    if not loc:
        return PipelineSpec
    parent = _lookup(data, loc)
    if isinstance(parent, dict):
        if loc[-1] == "source" or loc[-1] in SOURCE_MODELS:
            return SOURCE_MODELS.get(parent.get("type"))
        if "op" in parent and parent.get("op") in STEPS:
            return STEPS[parent["op"]].model
        if "name" in parent and parent.get("name") in AUGMENTATIONS:
            return AUGMENTATIONS[parent["name"]].params
    if loc[-1] == "options":
        return Options
    return None


def _fmt(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > ECHO_CHARS:
        text = text[:ECHO_CHARS] + f"... ({len(text):,} characters)"
    return text


def _bounds_problems(obj: Any, path: str = "", depth: int = 0) -> list[Problem]:
    """Integers TensorFlow cannot take and nesting deeper than any spec needs, by path
    (checked before validation, so a 2**70 seed is named here, not at run time)."""
    if depth > MAX_DEPTH:
        return [Problem(path, f"nested deeper than {MAX_DEPTH} levels; no spec field needs that")]
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int) and not INT64_MIN <= obj <= INT64_MAX:
        return [
            Problem(
                path,
                "must fit in a signed 64-bit integer, the largest TensorFlow takes, "
                f"received {_fmt(obj)}",
                obj,
            )
        ]
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    else:
        return []
    problems: list[Problem] = []
    for key, value in items:
        where = (
            f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else str(key)
        )
        problems.extend(_bounds_problems(value, where, depth + 1))
        if len(problems) >= 20:
            break
    return problems


def _problem(error: dict[str, Any], data: Any) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    received = error.get("input")
    got = f", received {_fmt(received)}"
    if kind == "extra_forbidden":
        model = _model_at(data, loc[:-1])
        allowed = ", ".join(n for n in model.model_fields) if model else "see the docs"
        msg = f"unknown field; allowed fields: {allowed}"
        return Problem(_path(loc), msg, received)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("discriminator", "").strip("'")
        known = {"type": SOURCE_TYPES, "op": tuple(STEPS), "name": tuple(AUGMENTATIONS)}.get(
            tag, ()
        )
        what = {"type": "source type", "op": "op", "name": "augmentation"}.get(tag, tag)
        path = _path((*loc, tag))
        if kind == "union_tag_not_found":
            return Problem(path, f"missing; known {what}s: {', '.join(known)}", None)
        return Problem(
            path,
            f"unknown {what} {_fmt(ctx.get('tag'))}; known: {', '.join(known)}",
            ctx.get("tag"),
        )
    if kind == "missing":
        return Problem(_path(loc), "required field is missing", None)
    bounds = {
        "greater_than_equal": ("must be >= {ge}", "ge"),
        "greater_than": ("must be > {gt}", "gt"),
        "less_than_equal": ("must be <= {le}", "le"),
        "less_than": ("must be < {lt}", "lt"),
    }
    if kind in bounds:
        template, _ = bounds[kind]
        return Problem(_path(loc), template.format(**ctx) + got, received)
    if kind == "literal_error":
        return Problem(_path(loc), f"must be one of {ctx.get('expected')}{got}", received)
    if kind in ("too_short", "too_long"):
        msg = (
            error["msg"]
            .replace("Tuple", "list")
            .replace("List", "list")
            .replace(" after validation", "")
        )
        return Problem(_path(loc), msg[0].lower() + msg[1:] + got, received)
    msg = error["msg"].removeprefix("Value error, ")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return Problem(_path(loc), msg + got, received)


def _generator_template_problems(spec: PipelineSpec) -> list[Problem]:
    """A generator source must name a registered template (or "custom")."""
    if not isinstance(spec.source, GeneratorSource):
        return []
    known = [*GENERATOR_TEMPLATES, CUSTOM_TEMPLATE]
    template = spec.source.template
    if template in known:
        return []
    return [
        Problem(
            "source.template",
            f"unknown generator template {_fmt(template)}; known: {', '.join(known)}",
            template,
        )
    ]


# Sources read through Python (`from_generator`): they run in this process only.
PYTHON_SOURCES = frozenset({"generator", "npy", "npz"})


def _distribute_problems(spec: PipelineSpec) -> list[Problem]:
    """A distribute step ships the steps above it to tf.data service workers, which run
    the dataset's graph only: nothing above it may call Python, and there is one."""
    where = [i for i, step in enumerate(spec.steps) if isinstance(step, DistributeStep)]
    if not where:
        return []
    first = where[0]
    problems = [
        Problem(
            f"steps[{i}].op",
            f"steps[{first}] already distributes the pipeline; one distribute step at most: "
            "remove this one",
            "distribute",
        )
        for i in where[1:]
    ]
    if spec.source.type in PYTHON_SOURCES:
        problems.append(
            Problem(
                f"steps[{first}].op",
                f"the {spec.source.type!r} source is read by Python in this process "
                "(from_generator), which tf.data service workers cannot run: use a "
                "tfrecord, image_folder, csv, numpy or synthetic source, or remove the "
                "distribute step",
                "distribute",
            )
        )
    step = spec.steps[first]
    if step.service == LOCAL and step.worker_metrics:
        problems.append(
            Problem(
                f"steps[{first}].worker_metrics",
                "local workers are read without it: remove worker_metrics, or set service "
                'to the remote dispatcher ("grpc://HOST:PORT") whose workers these are',
                step.worker_metrics[0],
            )
        )
    for i, before in enumerate(spec.steps[:first]):
        if not isinstance(before, MapStep):
            continue
        for j, aug in enumerate(before.augmentations):
            if AUGMENTATIONS[aug.name].python:
                problems.append(
                    Problem(
                        f"steps[{i}].augmentations[{j}]",
                        f"{aug.name!r} runs a Python callable, which tf.data service "
                        f"workers cannot run, and steps[{first}] distributes this map: use "
                        'a sleep step ({"op": "sleep", "ms": ...}, a wait inside the graph) '
                        "or move this map below the distribute step",
                        aug.name,
                    )
                )
    return problems


def _semantic_problems(spec: PipelineSpec) -> list[Problem]:
    """Checks across fields: interleave placement, element vs batch augmentations, cache
    files, what a distribute step ships."""
    problems = _generator_template_problems(spec) + _distribute_problems(spec)
    batched = False
    cache_files: dict[str, int] = {}
    for i, step in enumerate(spec.steps):
        if isinstance(step, CacheStep) and step.filename:
            if step.filename in cache_files:
                problems.append(
                    Problem(
                        f"steps[{i}].filename",
                        f"steps[{cache_files[step.filename]}] already caches to "
                        f"{step.filename!r}; two caches cannot share a file: give this one "
                        "another filename, or leave it empty to cache in memory",
                        step.filename,
                    )
                )
            cache_files.setdefault(step.filename, i)
        elif isinstance(step, InterleaveStep):
            if spec.source.type not in FILE_SOURCES:
                problems.append(
                    Problem(
                        f"steps[{i}].op",
                        f"interleave reads files, so it needs a file source "
                        f"({', '.join(sorted(FILE_SOURCES))}); the source is "
                        f"{spec.source.type!r}: remove the step or change the source",
                        "interleave",
                    )
                )
            elif i != 0:
                problems.append(
                    Problem(
                        f"steps[{i}].op",
                        "interleave controls how files are read, so it must be the first step; "
                        "move it to the top",
                        "interleave",
                    )
                )
        elif isinstance(step, BatchStep):
            batched = True
        elif isinstance(step, MapStep):
            for j, aug in enumerate(step.augmentations):
                entry = AUGMENTATIONS[aug.name]
                where = f"steps[{i}].augmentations[{j}]"
                if batched and not entry.batch_ok:
                    problems.append(
                        Problem(
                            where,
                            f"{aug.name!r} works on single elements only; move this map "
                            "before the batch step",
                            aug.name,
                        )
                    )
                if not batched and not entry.element_ok:
                    problems.append(
                        Problem(
                            where,
                            f"{aug.name!r} works on batches only; add a batch step before this map",
                            aug.name,
                        )
                    )
    return problems


def load_spec(obj: dict[str, Any] | str | bytes | Path | PipelineSpec) -> PipelineSpec:
    """Validate a spec from a dict, JSON text/bytes or a JSON file path.

    Raises:
        SpecError: listing every problem with its field path.
    """
    if isinstance(obj, PipelineSpec):
        return obj
    if isinstance(obj, Path):
        try:
            if obj.stat().st_size > MAX_SPEC_BYTES:
                raise SpecError([_too_large(obj.stat().st_size)])
            obj = obj.read_bytes()
        except OSError as exc:
            raise SpecError(
                [Problem("", f"cannot read spec file {str(obj)!r}: {exc.strerror}")]
            ) from None
    if isinstance(obj, str | bytes):
        if len(obj) > MAX_SPEC_BYTES:
            raise SpecError([_too_large(len(obj))])
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise SpecError(
                [Problem("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
            ) from None
        except UnicodeDecodeError:
            raise SpecError(
                [
                    Problem(
                        "",
                        "not a JSON text file (its bytes are not UTF-8): choose the spec's .json file",
                    )
                ]
            ) from None
        except RecursionError:
            raise SpecError(
                [Problem("", f"nested deeper than {MAX_DEPTH} levels; no spec field needs that")]
            ) from None
    if not isinstance(obj, dict):
        raise SpecError(
            [Problem("", f"a spec must be a JSON object, received {type(obj).__name__}")]
        )
    bounds = _bounds_problems(obj)
    if bounds:
        raise SpecError(bounds)
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise SpecError(
            [
                Problem(
                    "schema_version",
                    f"this version of Pipeline Lab reads schema_version {SCHEMA_VERSION}, "
                    f"received {_fmt(version)}",
                    version,
                )
            ]
        )
    try:
        spec = PipelineSpec.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A list whose items failed also reports "too short": keep only the item errors.
        deeper = [tuple(e["loc"]) for e in errors]
        errors = [
            e
            for e in errors
            if e["type"] != "too_short"
            or not any(
                len(d) > len(e["loc"]) and d[: len(e["loc"])] == tuple(e["loc"]) for d in deeper
            )
        ]
        raise SpecError([_problem(e, obj) for e in errors]) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def _too_large(size: int) -> Problem:
    return Problem(
        "",
        f"the spec is {size:,} bytes; specs are limited to {MAX_SPEC_BYTES:,} bytes "
        "(a real pipeline needs a few kB): choose the right file",
    )


def default_spec() -> PipelineSpec:
    """The embedded default: synthetic images, flip + brightness, batch, prefetch."""
    return load_spec(
        {
            "name": "synthetic baseline",
            "source": {"type": "synthetic", "num_examples": 2048, "shape": [32, 32, 3]},
            "steps": [
                {"op": "shuffle", "buffer_size": 1024, "seed": 0},
                {
                    "op": "map",
                    "augmentations": [
                        {"name": "random_flip_left_right"},
                        {"name": "random_brightness", "max_delta": 0.2},
                    ],
                    "num_parallel_calls": "autotune",
                },
                {"op": "batch", "batch_size": 32},
                {"op": "prefetch", "buffer_size": "autotune"},
            ],
        }
    )


def new_step(op: str) -> dict[str, Any]:
    """Default JSON data for a new step of kind `op` (for the UI's "add step")."""
    if op == "map":  # parallel like the default design's map, not sequential
        return {
            "op": "map",
            "augmentations": [{"name": next(iter(AUGMENTATIONS))}],
            "num_parallel_calls": "autotune",
        }
    return STEPS[op].model().model_dump(mode="json")


def new_source(source_type: str, **fields: Any) -> dict[str, Any]:
    """Default JSON data for a source of `source_type`, with `fields` set."""
    model = SOURCE_MODELS[source_type]
    data = {"type": source_type}
    for name, info in model.model_fields.items():
        if name != "type" and not info.is_required():
            data[name] = info.get_default(call_default_factory=True)
    data.update(fields)
    return json.loads(json.dumps(data))
