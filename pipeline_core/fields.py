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


# TensorFlow allocates a shuffle buffer's slots up front (~30 bytes each: 10**8 took 2.9 GB
# and a minute for 10 elements, 10**12 crashed the process), so buffers are bounded.
MAX_BUFFER = 10_000_000


def _buffer(value: Any) -> int | str:
    if isinstance(value, str) and value.lower() == "autotune":
        return "autotune"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BUFFER:
        return value
    raise ValueError(
        f'must be an integer from 0 to {MAX_BUFFER:,} or "autotune" (TensorFlow sets a '
        "buffer's slots aside up front; to mix a larger data set, shuffle its files too)"
    )


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
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_BUFFER}, {"const": "autotune"}]}
    ),
    Field(json_schema_extra={"kind": "buffer"}),
]
Dim = Annotated[int, Field(ge=1, le=1_000_000)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]  # NumPy's generators take no negative seed
DType = Literal["float32", "float64", "float16", "uint8", "int32", "int64"]
