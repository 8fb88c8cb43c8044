"""Field types the spec's models share: a frozen base model, parallelism, buffer sizes.

The source models (`pipeline_core.spec`) and the step models
(`pipeline_core.steps`) are built from these. Imports no TensorFlow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)


class Frozen(BaseModel):
    """Base of the spec's models: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _parallelism(value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() == "autotune":
        return "autotune"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError('must be null (sequential), an integer >= 1 or "autotune"')


def _buffer(value: Any) -> int | str:
    if isinstance(value, str) and value.lower() == "autotune":
        return "autotune"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError('must be an integer >= 0 or "autotune"')


Parallelism = Annotated[
    int | Literal["autotune"] | None,
    PlainValidator(_parallelism),
    PlainSerializer(lambda v: v),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "autotune"}, {"type": "null"}]}
    ),
    Field(json_schema_extra={"kind": "parallelism"}),
]
BufferSize = Annotated[
    int | Literal["autotune"],
    PlainValidator(_buffer),
    PlainSerializer(lambda v: v),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"const": "autotune"}]}),
    Field(json_schema_extra={"kind": "buffer"}),
]
Dim = Annotated[int, Field(ge=1)]
DType = Literal["float32", "float64", "float16", "uint8", "int32", "int64"]
