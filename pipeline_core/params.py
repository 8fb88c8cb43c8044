"""Introspection of pydantic parameter models into widget descriptions.

The UI generates its widgets from these (augmentation parameters, source and
step fields) instead of hand-writing a form per item.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel


@dataclass(frozen=True)
class ParamField:
    """A parameter as the UI needs it to generate a widget.

    `kind` is one of "float", "int", "bool", "choice", "text", "ints", "floats",
    "parallelism" (null / int / "autotune") or "other". `optional` means null is allowed.
    """

    name: str
    kind: str
    default: Any
    minimum: float | None
    maximum: float | None
    choices: tuple[Any, ...] | None
    description: str
    optional: bool = False


def _kind_of(annotation: Any) -> tuple[str, tuple[Any, ...] | None, bool]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _kind_of(args[0])
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        optional = len(non_none) < len(args)
        if len(non_none) == 1:
            kind, choices, _ = _kind_of(non_none[0])
            return kind, choices, optional
        kinds = {_kind_of(a)[0] for a in non_none}
        if kinds == {"int", "choice"}:
            return "parallelism", None, optional
        return "other", None, optional
    if origin is Literal:
        return "choice", tuple(args), False
    if origin in (tuple, list):
        inner = _kind_of(args[0])[0] if args else "other"
        return {"int": "ints", "float": "floats"}.get(inner, "other"), None, False
    if annotation is bool:
        return "bool", None, False
    if annotation is int:
        return "int", None, False
    if annotation is float:
        return "float", None, False
    if annotation is str:
        return "text", None, False
    return "other", None, False


def fields_of(model: type[BaseModel], *, skip: tuple[str, ...] = ()) -> list[ParamField]:
    """Describe the fields of a pydantic model class, in declaration order."""
    out = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind, choices, optional = _kind_of(info.annotation)
        minimum = maximum = None
        for meta in info.metadata:
            if isinstance(meta, Ge | Gt):
                minimum = meta.ge if isinstance(meta, Ge) else meta.gt
            elif isinstance(meta, Le | Lt):
                maximum = meta.le if isinstance(meta, Le) else meta.lt
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if kind == "parallelism" or extra.get("kind"):
            kind = extra.get("kind", kind)
        out.append(
            ParamField(
                name=name,
                kind=kind,
                default=info.get_default(call_default_factory=True),
                minimum=minimum,
                maximum=maximum,
                choices=choices,
                description=info.description or "",
                optional=optional,
            )
        )
    return out
