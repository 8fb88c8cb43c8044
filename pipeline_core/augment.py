"""The augmentation registry: name -> parameter model + one function on tensors.

Each augmentation is a frozen pydantic parameter model (its fields carry type,
range, default and a one-line description; the UI generates widgets from them)
registered with `@augmentation(...)`. `pipeline_core.augment_code` writes
each map step's augmentations as one function of TensorFlow ops (helpers in
`pipeline_core.augment_ops` where TF has no native op); the same function
serves the pipeline, the preview and the exported code. This module imports no TensorFlow at import
time, so `pipeline_core.spec` can build its validation from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline_core.params import ParamField, fields_of


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
        op: short name of the operation (the pipeline's code is written by
            `pipeline_core.augment_code`).
        element_ok: works on a single element `[H, W, C]`.
        batch_ok: works on a batch `[N, H, W, C]` (a vectorized map after batch).
        python: runs a Python callable (`tf.py_function`), so it cannot travel to
            tf.data service workers (a `distribute` step after it is refused).
    """

    name: str
    description: str
    params: type[AugParams]
    op: str
    element_ok: bool = True
    batch_ok: bool = True
    python: bool = False


AUGMENTATIONS: dict[str, Augmentation] = {}


def augmentation(
    *,
    op: str,
    description: str,
    element_ok: bool = True,
    batch_ok: bool = True,
    python: bool = False,
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
            python=python,
        )
        return cls

    return register


# --- registered augmentations -------------------------------------------------

Fill = Literal["constant", "reflect", "wrap", "nearest"]
Interpolation = Literal["bilinear", "nearest"]


@augmentation(op="flip_left_right", description="Mirror the image horizontally at random.")
class RandomFlipLeftRight(AugParams):
    name: Literal["random_flip_left_right"] = "random_flip_left_right"
    probability: float = Field(0.5, ge=0.0, le=1.0, description="Chance of flipping.")


@augmentation(op="flip_up_down", description="Mirror the image vertically at random.")
class RandomFlipUpDown(AugParams):
    name: Literal["random_flip_up_down"] = "random_flip_up_down"
    probability: float = Field(0.5, ge=0.0, le=1.0, description="Chance of flipping.")


@augmentation(op="brightness", description="Add a random delta to every pixel.")
class RandomBrightness(AugParams):
    name: Literal["random_brightness"] = "random_brightness"
    max_delta: float = Field(
        0.2, ge=0.0, le=1.0, description="Largest brightness change, on a 0-1 scale."
    )


@augmentation(op="contrast", description="Stretch or squeeze values around the image mean.")
class RandomContrast(AugParams):
    name: Literal["random_contrast"] = "random_contrast"
    factor: float = Field(
        0.2, ge=0.0, le=1.0, description="Contrast scale drawn from [1 - factor, 1 + factor]."
    )


@augmentation(op="saturation", description="Make colors more or less vivid (RGB images).")
class RandomSaturation(AugParams):
    name: Literal["random_saturation"] = "random_saturation"
    factor: float = Field(
        0.3, ge=0.0, le=1.0, description="Saturation scale drawn from [1 - factor, 1 + factor]."
    )


@augmentation(op="hue", description="Shift the hue of colors (RGB images).")
class RandomHue(AugParams):
    name: Literal["random_hue"] = "random_hue"
    max_delta: float = Field(
        0.05, ge=0.0, le=0.5, description="Largest hue shift, in turns of the color wheel."
    )


@augmentation(op="crop", description="Cut a window at a random position; the output shape changes.")
class RandomCrop(AugParams):
    name: Literal["random_crop"] = "random_crop"
    height: int = Field(24, ge=1, le=4096, description="Height of the cut window, pixels.")
    width: int = Field(24, ge=1, le=4096, description="Width of the cut window, pixels.")


@augmentation(op="central_crop", description="Keep the center of the image (deterministic).")
class CentralCrop(AugParams):
    name: Literal["central_crop"] = "central_crop"
    fraction: float = Field(
        0.875, gt=0.0, le=1.0, description="Share of each side kept around the center."
    )


@augmentation(op="resize", description="Resize to a fixed height and width (deterministic).")
class Resize(AugParams):
    name: Literal["resize"] = "resize"
    height: int = Field(32, ge=1, le=4096, description="Output height, pixels.")
    width: int = Field(32, ge=1, le=4096, description="Output width, pixels.")
    method: Literal["bilinear", "nearest", "bicubic", "area", "lanczos3"] = Field(
        "bilinear", description="Interpolation method."
    )
    antialias: bool = Field(False, description="Filter when shrinking (smoother, slower).")


@augmentation(op="rotation", description="Rotate by a random angle about the center.")
class RandomRotation(AugParams):
    name: Literal["random_rotation"] = "random_rotation"
    max_degrees: float = Field(
        15.0, ge=0.0, le=180.0, description="Largest rotation either way, degrees."
    )
    fill_mode: Fill = Field("constant", description="How to fill pixels from outside.")
    interpolation: Interpolation = Field("bilinear", description="Resampling method.")


@augmentation(op="zoom", description="Zoom in or out by a random factor about the center.")
class RandomZoom(AugParams):
    name: Literal["random_zoom"] = "random_zoom"
    max_zoom: float = Field(
        0.2, ge=0.0, le=0.9, description="Scale drawn from [1 - max_zoom, 1 + max_zoom]."
    )
    fill_mode: Fill = Field("constant", description="How to fill pixels from outside.")
    interpolation: Interpolation = Field("bilinear", description="Resampling method.")


@augmentation(op="gaussian_noise", description="Add Gaussian noise to every value.")
class GaussianNoise(AugParams):
    name: Literal["gaussian_noise"] = "gaussian_noise"
    stddev: float = Field(0.05, ge=0.0, le=1.0, description="Standard deviation, on a 0-1 scale.")
    clip: bool = Field(True, description="Clip float results to 0-1 (integers always saturate).")


@augmentation(op="erasing", description="Blank random boxes (cutout / random erasing).")
class RandomErasing(AugParams):
    name: Literal["random_erasing"] = "random_erasing"
    size: float = Field(0.25, gt=0.0, le=1.0, description="Box side as a share of the image side.")
    count: int = Field(1, ge=1, le=10, description="Number of boxes per image.")
    fill_value: float = Field(0.0, ge=0.0, le=1.0, description="Fill value, on a 0-1 scale.")


@augmentation(
    op="jpeg_quality",
    description="Re-encode as JPEG at a random quality (single images only).",
    batch_ok=False,
)
class JpegQuality(AugParams):
    name: Literal["jpeg_quality"] = "jpeg_quality"
    min_quality: int = Field(50, ge=0, le=100, description="Lowest JPEG quality.")
    max_quality: int = Field(95, ge=0, le=100, description="Highest JPEG quality.")

    @model_validator(mode="after")
    def _ordered(self) -> JpegQuality:
        if self.min_quality > self.max_quality:
            raise ValueError(
                f"min_quality ({self.min_quality}) must be <= max_quality "
                f"({self.max_quality}); swap them or raise max_quality"
            )
        return self


PositiveFloat = Annotated[float, Field(gt=0.0)]


@augmentation(op="normalize", description="To float32: scale to 0-1, or (x - mean) / std.")
class Normalize(AugParams):
    name: Literal["normalize"] = "normalize"
    mode: Literal["scale", "mean_std"] = Field(
        "scale", description='"scale": integers / 255; "mean_std": then (x - mean) / std.'
    )
    mean: tuple[float, ...] = Field(
        (0.485, 0.456, 0.406), min_length=1, description="Per-channel mean (0-1 scale)."
    )
    std: tuple[PositiveFloat, ...] = Field(
        (0.229, 0.224, 0.225), min_length=1, description="Per-channel std (0-1 scale)."
    )


@augmentation(
    op="convert_dtype",
    description="Change dtype like tf.image.convert_image_dtype (rescales the values).",
)
class ConvertDtype(AugParams):
    name: Literal["convert_dtype"] = "convert_dtype"
    dtype: Literal["float32", "float16", "float64", "uint8"] = Field(
        "float32", description="Target dtype."
    )


@augmentation(
    op="mixup",
    description="Blend pairs of images and their labels (batches only; soft labels).",
    element_ok=False,
)
class MixUp(AugParams):
    name: Literal["mixup"] = "mixup"
    alpha: float = Field(0.2, gt=0.0, le=10.0, description="Beta(alpha, alpha) mixing weight.")
    num_classes: int = Field(10, ge=1, le=100_000, description="Classes of the one-hot labels.")


@augmentation(
    op="cutmix",
    description="Paste a box of another image; labels mixed by area (batches only).",
    element_ok=False,
)
class CutMix(AugParams):
    name: Literal["cutmix"] = "cutmix"
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="Beta(alpha, alpha) box-area weight.")
    num_classes: int = Field(10, ge=1, le=100_000, description="Classes of the one-hot labels.")


@augmentation(
    op="sleep",
    description="Wait a fixed time per call, GIL released (simulates I/O; once per batch).",
    python=True,
)
class Sleep(AugParams):
    name: Literal["sleep"] = "sleep"
    ms: float = Field(
        10.0, ge=0.0, le=10_000.0, description="Milliseconds per call (per batch after batch)."
    )


@augmentation(
    op="cpu_work",
    description="Burn CPU with a chain of matrix products per call (simulates compute).",
)
class CpuWork(AugParams):
    name: Literal["cpu_work"] = "cpu_work"
    iterations: int = Field(50, ge=1, le=100_000, description="Matrix products per call.")
    size: int = Field(64, ge=2, le=2048, description="Side of the square matrices.")


# --- helpers for the spec, the UI and the builder -----------------------------

# One entry of a map step's `augmentations`: the registered models, tagged by `name`.
AugmentationParams = Annotated[
    Union[tuple(a.params for a in AUGMENTATIONS.values())],  # noqa: UP007
    Field(discriminator="name"),
]

__all__ = [
    "AUGMENTATIONS",
    "AugParams",
    "Augmentation",
    "AugmentationParams",
    "ParamField",
    "augmentation",
    "param_fields",
]


def param_fields(name: str) -> list[ParamField]:
    """The editable parameters of augmentation `name` (everything but `name`)."""
    return fields_of(AUGMENTATIONS[name].params, skip=("name",))
