"""Memory guard: bytes that sources, cache, shuffle, prefetch and maps will hold.

Estimated before a run from the element spec after each step (shapes ×
dtype sizes; the batch dimension from the batch step) and the element count
at that point (the source's size carried through batch/take/repeat).
`memory_estimate(spec)` sizes each holder and `check_memory(spec)` decides whether
to warn or to block until confirmed. Sizing reads the user's files, so the
dashboard makes the estimate in a child process (`memory_estimate_job`) and judges
it in the server against the memory available then (`memory_verdict`).

Calibrated against the private memory a profile run holds above TensorFlow's
own (`benchmarks/bench_memory.py`, each buffer with and without it):

- a memory cache, a shuffle buffer and a prefetch buffer hold one copy of each
  element they keep; a parallel map holds `num_parallel_calls` results, a
  sequential one about one (its input and output are alive together; TensorFlow
  may also parallelize it itself);
- an in-memory `numpy` source holds its arrays twice once iterated (the arrays
  and TensorFlow's copy of them); the `synthetic` source caches its generated
  chunks (up to 1 GiB), once;
- TensorFlow shares memory with a `from_tensor_slices` source instead of
  copying it: until a map or a batch makes new tensors, a cache, shuffle or
  prefetch buffer over a `numpy` source holds views of its arrays (when an
  element's features are a multiple of 64 bytes, TensorFlow's alignment; other
  slices are copied). Those parts count 0 bytes and say so;
- `npy`/`npz` sources are memory-mapped: file-backed pages, not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import psutil

from pipeline_core._tf import tf as _tf
from pipeline_core.analysis.examples import stage_counts
from pipeline_core.build import build
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import available_cores
from pipeline_core.spec import (
    GeneratorSource,
    NpySource,
    NpzSource,
    NumpySource,
    PipelineSpec,
    SyntheticSource,
    load_spec,
)
from pipeline_core.steps import (
    BatchStep,
    CacheStep,
    DistributeStep,
    MapStep,
    PrefetchStep,
    RepeatStep,
    ShuffleStep,
    TakeStep,
)

AUTOTUNE_PREFETCH_ELEMENTS = 16  # what an autotuned prefetch buffer is assumed to grow to
SYNTHETIC_CACHE_BYTES = 1 << 30  # sources.synthetic_dataset caches its chunks up to this
NUMPY_COPIES = 2  # the arrays and TensorFlow's copy (measured 2.07x with 4,000 examples)
TF_ALIGNMENT = 64  # bytes: a slice of a source tensor at this alignment is a view, not a copy
_LABEL_BYTES = 8  # the int64 label of every in-memory source
# Steps that pass a from_tensor_slices element on without making a new tensor.
_PASS_THROUGH = (CacheStep, ShuffleStep, PrefetchStep, RepeatStep, TakeStep)
WARN_SHARE = 0.5  # warn above this share of available memory
CACHE_SHARE = 0.5  # the tuner offers a memory cache only below this share
_PROBE_EXAMPLES = 4


@dataclass(frozen=True)
class MemoryPart:
    """One holder of elements: what, where, how many elements of what size."""

    what: str
    step_index: int | None
    elements: float | None  # None = unknown count; inf = unbounded
    bytes_per_element: int | None
    note: str = ""
    copies: float = 1.0  # 0: shares memory it does not own (the source's, a mapped file's)

    @property
    def bytes(self) -> float | None:
        if self.copies == 0:  # a view holds no data, but an endless cache of views grows
            return math.inf if self.elements == math.inf else 0.0
        if self.elements is None or self.bytes_per_element is None:
            return None
        return self.elements * self.bytes_per_element * self.copies


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimate for one spec, against the memory available when it was made."""

    parts: tuple[MemoryPart, ...]
    available_bytes: int
    unknown: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> float:
        """Sum of the parts whose size is known (inf when one is unbounded)."""
        return float(sum(p.bytes for p in self.parts if p.bytes is not None))

    def exceeds_available(self) -> bool:
        """The known parts alone need more than the memory available now."""
        return self.total_bytes > self.available_bytes

    def share_of_available(self) -> float:
        return self.total_bytes / self.available_bytes if self.available_bytes else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_bytes": _json_num(self.total_bytes),
            "available_bytes": self.available_bytes,
            "exceeds_available": self.exceeds_available(),
            "unknown": list(self.unknown),
            "parts": [
                {
                    "what": p.what,
                    "step_index": p.step_index,
                    "elements": _json_num(p.elements),
                    "bytes_per_element": p.bytes_per_element,
                    "bytes": _json_num(p.bytes),
                    "copies": p.copies,
                    "note": p.note,
                }
                for p in self.parts
            ],
        }


@dataclass(frozen=True)
class MemoryVerdict:
    """`level` is "ok", "warn" or "block" (block: run only when the user confirms)."""

    level: str
    message: str
    estimate: MemoryEstimate


def _json_num(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "inf" if math.isinf(value) else value


def format_bytes(value: float | None) -> str:
    """`1536` -> "1.5 KiB"; None -> "unknown"; inf -> "unbounded"."""
    if value is None:
        return "unknown"
    if math.isinf(value):
        return "unbounded"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


# --- element sizes and counts -------------------------------------------------


def _probe(spec: PipelineSpec) -> PipelineSpec:
    """The spec with a tiny generated source (same element spec, nothing big in memory)."""
    source = spec.source
    small = isinstance(source, SyntheticSource | GeneratorSource) or (
        isinstance(source, NumpySource) and source.path is None
    )
    if small and source.num_examples > _PROBE_EXAMPLES:
        return spec.replace(source=source.model_copy(update={"num_examples": _PROBE_EXAMPLES}))
    return spec


def _tensor_bytes(tensor_spec, batch_sizes: list[int]) -> int | None:
    dims = tensor_spec.shape.as_list() if tensor_spec.shape.rank is not None else None
    if dims is None or tensor_spec.dtype.name == "string":
        return None
    outer = list(reversed(batch_sizes))
    total = tensor_spec.dtype.size
    for j, d in enumerate(dims):
        if d is None:
            if j >= len(outer):
                return None
            d = outer[j]
        total *= d
    return total


def _sample_bytes(dataset) -> int | None:
    tf = _tf()
    for element in dataset.take(1):
        return int(
            sum(
                sum(len(b) for b in t.numpy().ravel()) if t.dtype == tf.string else t.numpy().nbytes
                for t in tf.nest.flatten(element)
            )
        )
    return None


@lru_cache(maxsize=32)
def _stage_bytes(spec_json: str) -> tuple[int | None, ...]:
    """Bytes of one element after the source (index 0) and after each step."""
    spec = _probe(load_spec(spec_json))
    out: list[int | None] = []
    batch_sizes: list[int] = []
    for k in range(len(spec.steps) + 1):
        if k and isinstance(spec.steps[k - 1], BatchStep):
            batch_sizes.append(spec.steps[k - 1].batch_size)
        # a distribute step passes its elements on as they are: left out, so no tf.data
        # service is needed to size them
        prefix = [s for s in spec.steps[:k] if not isinstance(s, DistributeStep)]
        dataset = build(spec.replace(steps=prefix))
        sizes = [_tensor_bytes(t, batch_sizes) for t in _tf().nest.flatten(dataset.element_spec)]
        out.append(sum(sizes) if None not in sizes else _sample_bytes(dataset))
    return tuple(out)


def stage_bytes(spec: PipelineSpec) -> tuple[int | None, ...]:
    """Bytes of one element after the source (index 0) and after each step k (index k+1)."""
    return _stage_bytes(spec.to_json(indent=None))


# --- the estimate ---------------------------------------------------------------


def available_bytes() -> int:
    """Memory available to new allocations now (psutil)."""
    return int(psutil.virtual_memory().available)


def _synthetic_cached(sizes, counts) -> bool:
    """Whether a synthetic source of these sizes holds its chunks (sources.synthetic_dataset)."""
    count, size = counts[0], sizes[0]
    return count is not None and size is not None and count * size <= SYNTHETIC_CACHE_BYTES


def _source_parts(source, sizes, counts) -> list[MemoryPart]:
    if isinstance(source, NumpySource):
        note = "the arrays and TensorFlow's copy of them, once the pipeline is iterated"
        return [MemoryPart("in-memory source arrays", None, counts[0], sizes[0], note,
                           NUMPY_COPIES)]  # fmt: skip
    if isinstance(source, SyntheticSource):
        if not _synthetic_cached(sizes, counts):
            return []  # generated chunk by chunk, never held whole
        note = "generated data cached in memory (up to 1 GiB), like in-memory arrays"
        return [MemoryPart("synthetic source data", None, counts[0], sizes[0], note)]
    if isinstance(source, NpySource | NpzSource):
        note = "memory-mapped: file-backed pages the system can reclaim, not counted"
        return [MemoryPart("memory-mapped file", None, counts[0], sizes[0], note, 0.0)]
    return []


def _shares_source(spec: PipelineSpec, index: int, sizes, counts) -> bool:
    """Whether elements reaching step `index` are still views of the source's in-memory
    arrays (a numpy source's, or a cached synthetic source's chunks)."""
    if sizes[0] is None:
        return False
    if not isinstance(spec.source, NumpySource) and not (
        isinstance(spec.source, SyntheticSource) and _synthetic_cached(sizes, counts)
    ):
        return False
    if not all(isinstance(step, _PASS_THROUGH) for step in spec.steps[:index]):
        return False
    return (sizes[0] - _LABEL_BYTES) % TF_ALIGNMENT == 0


_SHARED = "shares the source's memory: TensorFlow slices in-memory arrays without copying"


def _map_part(step: MapStep, index: int, size, cores: int) -> MemoryPart:
    n = step.num_parallel_calls
    if n is None:
        note = "input and output alive together (TensorFlow may also run it in parallel)"
        return MemoryPart("map output", index, 1, size, note)
    note = ""
    if n == "autotune":
        n, note = cores, f"autotune: assumed {cores} calls in flight (one per core)"
    return MemoryPart("parallel map in flight", index, n, size, note)


def _parts(spec: PipelineSpec, sizes, counts, cores: int) -> list[MemoryPart]:
    parts = _source_parts(spec.source, sizes, counts)
    for i, step in enumerate(spec.steps):
        before, after = counts[i], sizes[i]
        shared = (0.0, _SHARED) if _shares_source(spec, i, sizes, counts) else (1.0, "")
        if isinstance(step, CacheStep) and not step.filename:
            note = shared[1] or "the whole dataset so far"
            parts.append(MemoryPart("memory cache", i, before, after, note, shared[0]))
        elif isinstance(step, ShuffleStep):
            held = step.buffer_size if before is None else min(step.buffer_size, before)
            parts.append(MemoryPart("shuffle buffer", i, held, after, shared[1], shared[0]))
        elif isinstance(step, PrefetchStep):
            n = step.buffer_size
            note = shared[1]
            if n == "autotune":
                n = AUTOTUNE_PREFETCH_ELEMENTS
                note = note or "autotune: up to 16 elements assumed (an upper bound)"
            parts.append(MemoryPart("prefetch buffer", i, n, sizes[i + 1], note, shared[0]))
        elif isinstance(step, MapStep):
            parts.append(_map_part(step, i, sizes[i + 1], cores))
    return parts


def memory_estimate(spec: PipelineSpec, *, available: int | None = None) -> MemoryEstimate:
    """Estimate what the source, cache, shuffle, prefetch and maps of `spec` will hold.

    Args:
        spec: the pipeline.
        available: bytes to compare against (default: available memory now).

    Returns:
        A `MemoryEstimate` with `.total_bytes`, `.parts` and `.exceeds_available()`.
    """
    sizes = stage_bytes(spec)
    counts = stage_counts(spec)
    parts = _parts(spec, sizes, counts, available_cores())
    unknown = tuple(f"{p.what} (steps[{p.step_index}])" for p in parts if p.bytes is None)
    return MemoryEstimate(
        parts=tuple(parts),
        available_bytes=available_bytes() if available is None else available,
        unknown=unknown,
    )


def check_memory(spec: PipelineSpec, *, available: int | None = None) -> MemoryVerdict:
    """ok / warn (above half the available memory) / block (above all of it)."""
    return memory_verdict(memory_estimate(spec, available=available))


def memory_verdict(estimate: MemoryEstimate, *, available: int | None = None) -> MemoryVerdict:
    """Judge `estimate`: ok / warn (above half the available memory) / block (above all of it).

    Args:
        estimate: a `memory_estimate`, possibly made earlier or in another process.
        available: bytes to judge against (default: the estimate's own `available_bytes`).
    """
    if available is not None:
        estimate = replace(estimate, available_bytes=available)
    total, avail = estimate.total_bytes, estimate.available_bytes
    summary = f"estimated {format_bytes(total)} held by buffers, {format_bytes(avail)} available"
    if estimate.exceeds_available():
        biggest = max(estimate.parts, key=lambda p: p.bytes or 0)
        where = "source" if biggest.step_index is None else f"steps[{biggest.step_index}]"
        return MemoryVerdict(
            "block",
            f"{summary}: the run would exhaust memory. The largest holder is the "
            f"{biggest.what} at {where} ({format_bytes(biggest.bytes)}); cache to a file, "
            "shrink the buffer or use fewer examples, or confirm to run anyway.",
            estimate,
        )
    if total > WARN_SHARE * avail:
        return MemoryVerdict("warn", f"{summary}: more than half of what is free.", estimate)
    return MemoryVerdict("ok", summary, estimate)


def memory_estimate_job(spec_json: str, *, progress: Any = None) -> dict[str, Any]:
    """`memory_estimate` as an isolated job (`pipeline_core.isolate`), for the dashboard.

    Sizing a source reads the user's files (array headers, image folders, a TFRecord's
    records) and builds the pipeline, so a page runs this in a child process and judges
    the estimate in the server with `memory_verdict` against the memory available then.

    Returns:
        {"estimate": MemoryEstimate, "error": None}, or {"estimate": None, "error": message}
        when the spec is invalid or its source cannot be sized (a `PipelineLabError`: the
        user's mistake, its message names the fix). Anything else raises (the job fails).
    """
    if progress is not None:
        progress("estimating memory")
    try:
        return {"estimate": memory_estimate(load_spec(spec_json)), "error": None}
    except PipelineLabError as exc:
        return {"estimate": None, "error": str(exc)}


def cache_bytes(spec: PipelineSpec, position: int) -> float | None:
    """Bytes a memory cache placed after step `position` (-1 = after the source) would hold."""
    sizes = stage_bytes(spec)
    counts = stage_counts(spec)
    count, size = counts[position + 1], sizes[position + 1]
    return None if count is None or size is None else count * size


def cache_fits(spec: PipelineSpec, position: int) -> bool:
    """A memory cache after `position` would take under half the available memory."""
    need = cache_bytes(spec, position)
    return need is not None and not math.isinf(need) and need < CACHE_SHARE * available_bytes()
