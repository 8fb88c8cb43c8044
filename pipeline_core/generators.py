"""Generator templates: the closed registry of built-in Python generators a spec may name.

A generator source (`GeneratorSource.template`) names one of these, or
"custom" for a callable passed from Python (`build(spec, generator=...)`):
code typed in a browser is never executed. Each factory is a plain function of
NumPy and the standard library; exported scripts embed it verbatim (via
`inspect.getsource`). Imports no TensorFlow, so `pipeline_core.spec` checks
template names against this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- the factories (embedded verbatim in exported code) ---------------------------


def random_arrays(*, num_examples, shape, dtype, num_classes, seed):
    """Seeded random NumPy arrays, one element at a time."""

    floating = np.issubdtype(np.dtype(dtype), np.floating)

    def generate():
        rng = np.random.default_rng(seed)
        for _ in range(num_examples):
            if floating:
                features = rng.random(shape).astype(dtype)
            else:
                features = rng.integers(0, 256, size=shape).astype(dtype)
            yield features, int(rng.integers(0, num_classes))

    return generate


def slow_reader(*, num_examples, shape, dtype, num_classes, seed, delay_s=0.002):
    """Like `random_arrays`, but sleeps `delay_s` per element to mimic slow I/O."""
    import time

    arrays = random_arrays(
        num_examples=num_examples, shape=shape, dtype=dtype, num_classes=num_classes, seed=seed
    )

    def generate():
        for features, label in arrays():
            time.sleep(delay_s)
            yield features, label

    return generate


def counting(*, num_examples, shape, dtype, num_classes, seed):
    """Element i is filled with the value i (mod 256 for integer dtypes), label i % classes."""

    def generate():
        for index in range(num_examples):
            value = index + seed
            if not np.issubdtype(np.dtype(dtype), np.floating):
                value %= 256
            yield np.full(shape, value, dtype=dtype), index % num_classes

    return generate


# --- the registry ---------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorTemplate:
    """A built-in generator: `factory(num_examples=, shape=, dtype=, num_classes=, seed=)`
    returns a zero-argument callable that yields `(features, label)` pairs."""

    name: str
    description: str
    factory: Callable[..., Callable[[], Iterable[Any]]]


GENERATOR_TEMPLATES: dict[str, GeneratorTemplate] = {}
CUSTOM_TEMPLATE = "custom"


def register_generator(
    name: str, factory: Callable[..., Callable[[], Iterable[Any]]], *, description: str
) -> GeneratorTemplate:
    """Add a generator template (Python API only; the browser picks from this registry)."""
    if name == CUSTOM_TEMPLATE or name in GENERATOR_TEMPLATES:
        raise ValueError(f"generator template {name!r} is already registered; pick another name")
    template = GeneratorTemplate(name=name, description=description, factory=factory)
    GENERATOR_TEMPLATES[name] = template
    return template


register_generator("random_arrays", random_arrays, description="Seeded random NumPy arrays.")
register_generator(
    "slow_reader",
    slow_reader,
    description="Random arrays with a 2 ms sleep per element (slow I/O).",
)
register_generator(
    "counting", counting, description="Element i is filled with i; label i % num_classes."
)
