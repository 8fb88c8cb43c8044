"""Counting: how many examples an element holds, and how many elements each stage yields.

The one home of "is this element a batch". A spec's elements are batches
exactly when a batch step is in it (no step unbatches), so batching is read
from the spec, not guessed from shapes (an image `[H, W, C]` and a batch of
vectors `[N, D]` look alike). A batch counts the leading dimension of its
label (every element is `(features, label)`, docs/ARCHITECTURE.md), so the
short last batch of an epoch counts what it holds. Measurement, stage
analysis and the trace count examples here; the memory estimate, the
recommendations and the cache warm-up count elements per pass here
(`stage_counts`), and the examples a whole element of a stage holds
(`examples_per_element`).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

from pipeline_core._tf import tf as _tf
from pipeline_core.build import build
from pipeline_core.paths import glob_files, resolve_path
from pipeline_core.sources import list_image_folder
from pipeline_core.spec import (
    CsvSource,
    GeneratorSource,
    ImageFolderSource,
    NumpySource,
    PipelineSpec,
    SyntheticSource,
    TFRecordSource,
    load_spec,
)
from pipeline_core.steps import BatchStep, RepeatStep, TakeStep, cardinality

_COUNT_LIMIT_BYTES = 1 << 30
# CSV rows are counted by parsing one column of every line, slower per byte than a
# TFRecord's framing: a smaller ceiling keeps the count to a few seconds.
_CSV_COUNT_LIMIT_BYTES = 1 << 28


def is_batched(spec: PipelineSpec) -> bool:
    """The spec's elements are batches (a batch step is present)."""
    return any(isinstance(step, BatchStep) for step in spec.steps)


def is_batched_element(element_spec: Any) -> bool:
    """For a dataset not made from a spec (a factory's, a graph's): by the
    `(features, label)` contract, its elements are batches when the label (the last
    component) has a leading dimension. One-hot labels of single examples read as
    batches here; a spec never needs this guess (`is_batched`)."""
    label = _tf().nest.flatten(element_spec)[-1]
    return label.shape.rank != 0


def _leading(tensor: Any) -> Any:
    return tensor.shape[0] if tensor.shape.rank else 1


def examples_in(element: Any, *, batched: bool) -> int:
    """Examples in one element read in Python (1, or a batch's leading dimension)."""
    if not batched:
        return 1
    return int(_leading(_tf().nest.flatten(element)[-1]))


def examples_per_element(spec: PipelineSpec, stage: int) -> int:
    """Examples in one whole element of `stage` (0 = the source, k+1 = after steps[k]):
    the product of the batch sizes before it (a short last batch holds fewer)."""
    return math.prod(s.batch_size for s in spec.steps[:stage] if isinstance(s, BatchStep))


def examples_tensor(element: Any, *, batched: bool) -> Any:
    """The same count as an int64 tensor, for use inside a `Dataset.map` function."""
    tf = _tf()
    if not batched:
        return tf.constant(1, tf.int64)
    label = tf.nest.flatten(element)[-1]
    if label.shape.rank == 0:
        return tf.constant(1, tf.int64)
    return tf.cast(tf.shape(label)[0], tf.int64)


# --- elements per pass ------------------------------------------------------------


@lru_cache(maxsize=32)
def _source_count(spec_json: str) -> int | None:
    spec = load_spec(spec_json)
    source = spec.source
    if isinstance(source, SyntheticSource | GeneratorSource) or (
        isinstance(source, NumpySource) and source.path is None
    ):
        return source.num_examples
    known = cardinality(build(spec.replace(steps=[])))
    if known is not None:
        return known
    if isinstance(source, ImageFolderSource):
        return len(list_image_folder(str(resolve_path(source.path, what="image folder")))[1])
    if isinstance(source, TFRecordSource):
        return _count_records(source)
    if isinstance(source, CsvSource):
        return _count_rows(source)
    return None


def _count_records(source: TFRecordSource) -> int | None:
    """Records in the TFRecord files (read without parsing), if they total under 1 GiB."""
    _, files = glob_files(source.files)
    if not files or sum(os.path.getsize(f) for f in files) > _COUNT_LIMIT_BYTES:
        return None
    records = _tf().data.TFRecordDataset(files, compression_type=source.compression or None)
    return int(records.reduce(0, lambda n, _: n + 1))


def _count_rows(source: CsvSource) -> int | None:
    """Rows in the CSV files, as `CsvDataset` reads them (header skipped, quoted line
    breaks inside one row), if they total under 256 MiB. Only the first column is parsed,
    as text, so a number that does not parse is not an error here; a file the reader
    cannot read leaves the count unknown."""
    _, files = glob_files(source.path)
    if not files or sum(os.path.getsize(f) for f in files) > _CSV_COUNT_LIMIT_BYTES:
        return None
    rows = _tf().data.experimental.CsvDataset(
        files,
        [_tf().string],
        header=source.header,
        field_delim=source.field_delim,
        select_cols=[0],
    )
    try:
        return int(rows.reduce(_tf().constant(0, _tf().int64), lambda n, _: n + 1))
    except _tf().errors.OpError:  # a malformed file: the pipeline's own build names the row
        return None


def stage_counts(spec: PipelineSpec) -> tuple[float | None, ...]:
    """Elements the source yields (index 0) and each step yields (index k+1) per pass.

    inf means unbounded (an endless repeat), None unknown.
    """
    count: float | None = _source_count(spec.replace(steps=[]).to_json(indent=None))
    out = [count]
    for step in spec.steps:
        if isinstance(step, BatchStep) and count is not None and not math.isinf(count):
            count = (
                count // step.batch_size
                if step.drop_remainder
                else math.ceil(count / step.batch_size)
            )
        elif isinstance(step, TakeStep):
            count = step.count if count is None else min(count, step.count)
        elif isinstance(step, RepeatStep):
            if step.count is None:
                count = math.inf if count != 0 else 0
            elif count is not None:
                count = count * step.count
        out.append(count)
    return tuple(out)
