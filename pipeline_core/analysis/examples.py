"""How many examples an element holds: the one home of "is this element a batch".

A spec's elements are batches exactly when a batch step is in it (no step
unbatches), so batching is read from the spec, not guessed from shapes (an
image `[H, W, C]` and a batch of vectors `[N, D]` look alike). A batch counts
the leading dimension of its label (every element is `(features, label)`,
docs/ARCHITECTURE.md), so the short last batch of an epoch counts what it
holds. Measurement, stage analysis and the trace all count through here.
"""

from __future__ import annotations

from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.spec import BatchStep, PipelineSpec


def is_batched(spec: PipelineSpec) -> bool:
    """The spec's elements are batches (a batch step is present)."""
    return any(isinstance(step, BatchStep) for step in spec.steps)


def _leading(tensor: Any) -> Any:
    return tensor.shape[0] if tensor.shape.rank else 1


def examples_in(element: Any, *, batched: bool) -> int:
    """Examples in one element read in Python (1, or a batch's leading dimension)."""
    if not batched:
        return 1
    return int(_leading(_tf().nest.flatten(element)[-1]))


def examples_tensor(element: Any, *, batched: bool) -> Any:
    """The same count as an int64 tensor, for use inside a `Dataset.map` function."""
    tf = _tf()
    if not batched:
        return tf.constant(1, tf.int64)
    label = tf.nest.flatten(element)[-1]
    if label.shape.rank == 0:
        return tf.constant(1, tf.int64)
    return tf.cast(tf.shape(label)[0], tf.int64)
