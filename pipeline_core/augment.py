"""The augmentation registry: name -> parameter model + one function on tensors.

Each augmentation is a frozen pydantic parameter model (its fields carry type,
range, default and a one-line description; the UI generates widgets from them)
registered with `@augmentation(...)`, plus a pure TensorFlow function in
`pipeline_core.augment_ops`. The same function serves the pipeline, the
preview and the exported code. This module imports no TensorFlow at import
time, so `pipeline_core.spec` can build its validation from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline_core._params import ParamField, fields_of


class AugParams(BaseModel):
    """Base of every augmentation's parameter model (frozen, unknown fields rejected)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Augmentation:
    """One registered augmentation.

    Attributes:
        name: registry key, also the `name` field of its parameter model.
        description: one line for the UI.
        params: the pydantic parameter model class.
        op: name of the function in `pipeline_core.augment_ops` that applies it.
        element_ok: works on a single element `[H, W, C]`.
        batch_ok: works on a batch `[N, H, W, C]` (a vectorized map after batch).
        mixes_labels: the op takes and returns `(features, label)` (mixup, cutmix).
    """

    name: str
    description: str
    params: type[AugParams]
    op: str
    element_ok: bool = True
    batch_ok: bool = True
    mixes_labels: bool = False


AUGMENTATIONS: dict[str, Augmentation] = {}


def augmentation(
    *,
    op: str,
    description: str,
    element_ok: bool = True,
    batch_ok: bool = True,
    mixes_labels: bool = False,
) -> Callable[[type[AugParams]], type[AugParams]]:
    """Class decorator registering a parameter model under its `name` literal."""

    def register(cls: type[AugParams]) -> type[AugParams]:
        name = cls.model_fields["name"].default
        if not isinstance(name, str) or name in AUGMENTATIONS:
            raise ValueError(f"augmentation name missing or registered twice: {name!r}")
        AUGMENTATIONS[name] = Augmentation(
            name=name,
            description=description,
            params=cls,
            op=op,
            element_ok=element_ok,
            batch_ok=batch_ok,
            mixes_labels=mixes_labels,
        )
        return cls

    return register


# --- registered augmentations -------------------------------------------------


@augmentation(op="flip_left_right", description="Mirror the image horizontally at random.")
class RandomFlipLeftRight(AugParams):
    name: Literal["random_flip_left_right"] = "random_flip_left_right"
    probability: float = Field(0.5, ge=0.0, le=1.0, description="Chance of flipping.")


@augmentation(op="brightness", description="Add a random delta to every pixel.")
class RandomBrightness(AugParams):
    name: Literal["random_brightness"] = "random_brightness"
    max_delta: float = Field(
        0.2, ge=0.0, le=1.0, description="Largest brightness change, on a 0-1 scale."
    )


# --- helpers for the UI and the builder ---------------------------------------


__all__ = [
    "AUGMENTATIONS",
    "AugParams",
    "Augmentation",
    "ParamField",
    "augmentation",
    "param_fields",
]


def param_fields(name: str) -> list[ParamField]:
    """The editable parameters of augmentation `name` (everything but `name`)."""
    return fields_of(AUGMENTATIONS[name].params, skip=("name",))
