"""The tuner's candidate space: which knobs a spec offers and how settings become a spec.

Knobs (each only where the spec has what it needs), the moves an expert tries:

- ``map[i].parallel``: `num_parallel_calls` of map step i (null, cores, 2×cores, autotune);
- ``map[i].vectorize``: how many of map step i's trailing augmentations run
  after the next batch step instead, as one call per batch (0 = none). Only
  augmentations that work on batches may move, only a trailing run of them
  (order is kept), and only when no other map sits between the map and the batch;
- ``cache``: none, or a memory cache after the source / after step k, only
  among the leading deterministic steps (caching after a random augmentation
  would freeze it), never before an interleave, and only where the cached data
  fits in memory — after the expensive deterministic part (decode, resize).
  Where an endless or counted ``repeat`` comes right before the batch step, the
  cache may also hold whole batches: batch, cache, then repeat (`batches_cache`),
  the same elements in the same order, and no batch is copied together again
  after the first pass. When one pass does not hold a whole number of batches,
  the cache holds the fewest passes that do (`repeat(k)`, batch, cache, then the
  rest of the repeat): 20,000 rows in batches of 256 make 625 batches of 8 passes;
- ``prefetch``: the buffer of a final prefetch step (none, 1, 4, autotune);
- ``batch.parallel``: `num_parallel_calls` of the batch step (copying large
  examples into a batch in parallel);
- ``interleave.parallel``: `num_parallel_calls` of the leading interleave; for
  TFRecord and CSV sources with several files and no interleave, "none" (as
  written) or an interleave added with that parallelism;
- ``source.parallel``: parallel decode of a file source (`num_parallel_calls`
  of the image_folder/tfrecord/csv source models), offered for any source
  model that has that field (`machine.SOURCE_PARALLEL_FIELD`);
- ``options.max_intra_op_parallelism`` (1: one thread per op, the TF guide's
  advice for many small ops), ``options.private_threadpool_size`` (2×cores),
  ``options.autotune`` (off: AUTOTUNE values fall back to fixed defaults) and
  ``deterministic`` (`options.deterministic` false, only when reordering is allowed);
- ``batch_size``: only when the user allows it.

`options.autotune_ram_budget_mb` is not a knob: it caps the memory the
autotuner may give buffers, so it can only hold throughput back; the memory
guard (`memory`) is where buffers' memory is judged.

Settings are a plain dict knob -> value; `SearchSpace.realize(settings)` turns
them into a validated `PipelineSpec`, always starting from the spec as written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.examples import stage_counts
from pipeline_core.analysis.machine import SOURCE_PARALLEL_FIELD
from pipeline_core.analysis.memory import cache_fits as default_cache_fits
from pipeline_core.analysis.search import grid_size
from pipeline_core.augment import AUGMENTATIONS
from pipeline_core.errors import PipelineLabError
from pipeline_core.metrics import available_cores
from pipeline_core.paths import glob_files
from pipeline_core.spec import CsvSource, PipelineSpec, SpecError, TFRecordSource
from pipeline_core.steps import (
    BatchStep,
    CacheStep,
    InterleaveStep,
    MapStep,
    PrefetchStep,
    RepeatStep,
)

# Augmentations whose output depends only on the input (safe to cache after).
DETERMINISTIC_AUGMENTATIONS = frozenset(
    {"central_crop", "resize", "normalize", "convert_dtype", "sleep", "cpu_work"}
) & frozenset(AUGMENTATIONS)

NO_CACHE = "none"
WHOLE_BATCHES = "whole batches"  # cache value: batch, cache, then the repeat (`batches_cache`)
# The most passes one cache of whole batches may hold: each is read before the cache is
# full, and every trial's warm-up fills it.
MAX_CACHED_PASSES = 16
NO_PREFETCH = "none"
NO_INTERLEAVE = "none"
SHARDED_SOURCES = (TFRecordSource, CsvSource)


@dataclass(frozen=True)
class Knob:
    """One tunable setting: its name, allowed values and a sentence for the UI."""

    name: str
    values: tuple[Any, ...]
    description: str


def _dedupe(values) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return tuple(out)


def is_deterministic_step(step) -> bool:
    """The step's output depends only on its input (no randomness, no reordering)."""
    if isinstance(step, MapStep):
        return all(a.name in DETERMINISTIC_AUGMENTATIONS for a in step.augmentations)
    return isinstance(step, (BatchStep, InterleaveStep, CacheStep, PrefetchStep))


def leading_deterministic(spec: PipelineSpec) -> list[int]:
    """Indexes of the steps before the first random or reordering one (cache candidates)."""
    out = []
    for i, step in enumerate(spec.steps):
        if isinstance(step, RepeatStep) or not is_deterministic_step(step):
            break
        out.append(i)
    return out


def movable_suffix(spec: PipelineSpec, index: int) -> int:
    """How many trailing augmentations of map step `index` may run after the next batch."""
    step = spec.steps[index]
    if not isinstance(step, MapStep):
        return 0
    later = spec.steps[index + 1 :]
    batch_at = next((j for j, s in enumerate(later) if isinstance(s, BatchStep)), None)
    if batch_at is None or any(isinstance(s, MapStep) for s in later[:batch_at]):
        return 0
    count = 0
    for aug in reversed(step.augmentations):
        if not AUGMENTATIONS[aug.name].batch_ok:
            break
        count += 1
    return count


def vectorizable_maps(spec: PipelineSpec) -> list[int]:
    """Map steps whose augmentations may all move to just after the next batch step."""
    return [
        i
        for i, s in enumerate(spec.steps)
        if isinstance(s, MapStep) and movable_suffix(spec, i) == len(s.augmentations)
    ]


def cache_label(value: Any, spec: PipelineSpec) -> str:
    """Readable form of a cache setting."""
    if value == NO_CACHE:
        return "no cache"
    if value == -1:
        return "after source"
    passes = whole_batches_passes(value)
    if passes is not None:
        at = _repeat_then_batch(spec)
        where = "" if at is None else f" after steps[{at + 1}] batch"
        held = "" if passes == 1 else f" of {passes} passes"
        return f"whole batches{held}{where}, repeat after the cache"
    return f"after steps[{value}] {spec.steps[value].op}"


def _repeat_then_batch(spec: PipelineSpec) -> int | None:
    """The index of the first `repeat` when a batch step comes right after it."""
    at = next((i for i, s in enumerate(spec.steps) if isinstance(s, RepeatStep)), None)
    if at is None or at + 1 >= len(spec.steps) or not isinstance(spec.steps[at + 1], BatchStep):
        return None
    return at


def whole_batches(passes: int) -> str:
    """The cache value of whole batches that hold `passes` passes."""
    return WHOLE_BATCHES if passes == 1 else f"{WHOLE_BATCHES} of {passes} passes"


def whole_batches_passes(value: Any) -> int | None:
    """Passes a cache value of whole batches holds (None: not such a value)."""
    if value == WHOLE_BATCHES:
        return 1
    head, tail = f"{WHOLE_BATCHES} of ", " passes"
    if isinstance(value, str) and value.startswith(head) and value.endswith(tail):
        passes = value[len(head) : -len(tail)]
        return int(passes) if passes.isdigit() and int(passes) > 1 else None
    return None


def batches_cache(spec: PipelineSpec) -> tuple[int, int] | None:
    """Where a memory cache may hold whole batches (`whole_batches` cache values): the
    index of the `repeat` it would move after the batch step and the passes the cache
    holds, or None.

    That needs a batch step right after a `repeat`, only deterministic steps before
    the repeat and a known pass. The cache holds the fewest passes `k` that make a
    whole number of batches (1 when a pass does; at most `MAX_CACHED_PASSES`); a
    counted repeat must be a multiple of `k`. Then `repeat, batch` and
    `repeat(k), batch, cache, repeat` yield the same elements in the same order, and
    the second copies each batch together only once. Knowing the pass may read the
    data (a TFRecord's records and a CSV's rows are counted), so this runs where the
    space is made (a child process), never where a setting is only described.
    """
    at = _repeat_then_batch(spec)
    if at is None or leading_deterministic(spec) != list(range(at)):
        return None
    per_pass = stage_counts(spec)[at]
    if per_pass is None or not 0 < per_pass < math.inf:
        return None
    batch_size = spec.steps[at + 1].batch_size
    passes = batch_size // math.gcd(int(per_pass), batch_size)
    count = spec.steps[at].count
    if passes > MAX_CACHED_PASSES or (count is not None and count % passes):
        return None
    return at, passes


def _cache_position(spec: PipelineSpec) -> Any:
    caches = [i for i, s in enumerate(spec.steps) if isinstance(s, CacheStep)]
    return caches[0] - 1 if caches else NO_CACHE


def _final_prefetch(spec: PipelineSpec) -> Any:
    if spec.steps and isinstance(spec.steps[-1], PrefetchStep):
        return spec.steps[-1].buffer_size
    return NO_PREFETCH


def _leading_interleave(spec: PipelineSpec) -> InterleaveStep | None:
    first = spec.steps[0] if spec.steps else None
    return first if isinstance(first, InterleaveStep) else None


def _batch(spec: PipelineSpec) -> BatchStep | None:
    batches = [s for s in spec.steps if isinstance(s, BatchStep)]
    return batches[0] if len(batches) == 1 else None


@dataclass(frozen=True)
class SearchSpace:
    """The knobs of one spec, its baseline settings, and `realize` to a spec."""

    spec: PipelineSpec
    knobs: tuple[Knob, ...]

    def values(self) -> dict[str, tuple[Any, ...]]:
        return {k.name: k.values for k in self.knobs}

    def baseline(self) -> dict[str, Any]:
        """The settings of the spec as written."""
        return baseline_settings(self.spec, [k.name for k in self.knobs])

    def size(self) -> int:
        return grid_size(self.values())

    def grid(self) -> Iterator[dict[str, Any]]:
        names = [k.name for k in self.knobs]
        for combo in itertools.product(*(k.values for k in self.knobs)):
            yield dict(zip(names, combo, strict=True))

    def realize(self, settings: Mapping[str, Any]) -> PipelineSpec:
        """The spec with `settings` applied (validated; raises SpecError if impossible)."""
        return realize(self.spec, settings)

    def describe(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """Settings as short readable strings (for tables and charts)."""
        return {name: describe_value(self.spec, name, v) for name, v in settings.items()}


def describe_value(spec: PipelineSpec, name: str, value: Any) -> str:
    if name == "cache":
        return cache_label(value, spec)
    if name.endswith(".vectorize"):
        total = len(spec.steps[_index(name)].augmentations)
        if not value:
            return "no"
        return "all after batch" if value == total else f"last {value} after batch"
    if name == "interleave.parallel" and value == NO_INTERLEAVE:
        return "no interleave"
    if value is None:
        return "sequential" if name.endswith("parallel") else "null"
    return str(value)


def baseline_settings(spec: PipelineSpec, names) -> dict[str, Any]:
    """Current value in `spec` of every knob in `names`."""
    options = spec.options
    current: dict[str, Callable[[], Any]] = {
        "cache": lambda: _cache_position(spec),
        "prefetch": lambda: _final_prefetch(spec),
        "deterministic": lambda: options.deterministic,
        "batch_size": lambda: _batch(spec).batch_size,
        "batch.parallel": lambda: _batch(spec).num_parallel_calls,
        "interleave.parallel": lambda: (
            _leading_interleave(spec).num_parallel_calls
            if _leading_interleave(spec) is not None
            else NO_INTERLEAVE
        ),
        "source.parallel": lambda: getattr(spec.source, SOURCE_PARALLEL_FIELD),
        "options.max_intra_op_parallelism": lambda: options.max_intra_op_parallelism,
        "options.private_threadpool_size": lambda: options.private_threadpool_size,
        "options.autotune": lambda: options.autotune,
    }
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("map[") and name.endswith(".parallel"):
            out[name] = spec.steps[_index(name)].num_parallel_calls
        elif name.startswith("map[") and name.endswith(".vectorize"):
            out[name] = 0
        elif name in current:
            out[name] = current[name]()
        else:
            raise ValueError(f"unknown knob {name!r}")
    return out


def _index(name: str) -> int:
    return int(name[name.index("[") + 1 : name.index("]")])


def _has_autotune(spec: PipelineSpec) -> bool:
    text = spec.to_json(indent=None)
    return '"autotune"' in text


def _shard_count(spec: PipelineSpec) -> int:
    """Files a TFRecord/CSV source reads (0 for other sources or a bad pattern)."""
    source = spec.source
    if not isinstance(source, SHARDED_SOURCES):
        return 0
    pattern = source.files if isinstance(source, TFRecordSource) else source.path
    try:
        return len(glob_files(pattern)[1])
    except PipelineLabError:  # confined, and the pattern leads outside the data dir
        return 0


def search_space(
    spec: PipelineSpec,
    *,
    cores: int | None = None,
    tune_batch_size: bool = False,
    allow_reorder: bool = False,
    cache_fits: Callable[[PipelineSpec, int], bool] | None = None,
) -> SearchSpace:
    """The knobs `spec` offers.

    Args:
        spec: the pipeline as written.
        cores: CPU cores to plan parallelism for (default: this machine's).
        tune_batch_size: also search batch sizes (changes what training sees).
        allow_reorder: also try `options.deterministic = false`.
        cache_fits: `(spec, position) -> bool`; cache positions where it is
            false are not offered (default: `memory.cache_fits`).
    """
    cache_fits = cache_fits or default_cache_fits
    cores = cores or available_cores()
    base = baseline_settings
    knobs: list[Knob] = []
    parallel = (None, cores, 2 * cores, "autotune")

    def add(name: str, values, description: str) -> None:
        values = _dedupe((base(spec, [name])[name], *values))
        if len(values) > 1:
            knobs.append(Knob(name, values, description))

    # The order is the coordinate descent's: the moves that change what work is done
    # (cache, vectorize) first, then the parallelism that work gets, then the rest.
    cache_knob = _cache_knob(spec, cache_fits, tune_batch_size=tune_batch_size)
    if cache_knob is not None:
        knobs.append(cache_knob)
    for i in range(len(spec.steps)):
        movable = movable_suffix(spec, i)
        if movable:
            add(f"map[{i}].vectorize", (movable,), f"run steps[{i}] map's tail after batch")
    if hasattr(spec.source, SOURCE_PARALLEL_FIELD):
        add("source.parallel", parallel, "parallel decode of the source files")
    interleave = _leading_interleave(spec)
    if interleave is not None:
        add("interleave.parallel", (None, cores, "autotune"), "num_parallel_calls of interleave")
    elif _shard_count(spec) > 1:
        add("interleave.parallel", ("autotune", cores), "read the source's files in parallel")
    for i, step in enumerate(spec.steps):
        if isinstance(step, MapStep):
            add(f"map[{i}].parallel", parallel, f"num_parallel_calls of steps[{i}] map")
    batch = _batch(spec)
    if batch is not None:
        add("batch.parallel", ("autotune",), "num_parallel_calls of the batch step")
    if tune_batch_size and batch is not None:
        b = batch.batch_size
        add("batch_size", (v for v in (b // 2, 2 * b, 4 * b) if v >= 1), "batch_size")
    add("prefetch", (NO_PREFETCH, 1, 4, "autotune"), "prefetch buffer at the end")
    add("options.max_intra_op_parallelism", (1,), "threads one op may use")
    add("options.private_threadpool_size", (2 * cores,), "threads of a private pool")
    if _has_autotune(spec) or any(k.name.endswith("parallel") for k in knobs):
        add("options.autotune", (False,), "tf.data autotuning")
    if allow_reorder and spec.options.deterministic is not False:
        add("deterministic", (False,), "options.deterministic")
    return SearchSpace(spec=spec, knobs=tuple(knobs))


def _cache_knob(spec: PipelineSpec, cache_fits, *, tune_batch_size: bool) -> Knob | None:
    caches = [i for i, s in enumerate(spec.steps) if isinstance(s, CacheStep)]
    if len(caches) > 1 or (caches and spec.steps[caches[0]].filename):
        return None  # several caches or a file cache: leave the user's choice alone
    current = _cache_position(spec)
    # interleave must stay the first step, so nothing (a cache included) may go before it
    first = [] if _leading_interleave(spec) is not None else [-1]
    positions = [*first, *(i for i in leading_deterministic(spec) if not _is_cache(spec, i))]
    fitting = [p for p in positions if p == current or cache_fits(spec, p)]
    # whole batches: only with the batch size as written (another may not divide a pass)
    whole = None if tune_batch_size else batches_cache(spec)
    if whole is not None:
        repeat, passes = whole
        steps = list(spec.steps)
        held = [RepeatStep(count=passes)] if passes > 1 else []
        steps[repeat : repeat + 2] = [*held, steps[repeat + 1], steps[repeat]]
        at = repeat + len(held)  # the batch step, once the repeat moved after it
        if cache_fits(spec.replace(steps=steps), at):
            fitting.append(whole_batches(passes))
    values = _dedupe((current, NO_CACHE, *fitting))
    return Knob("cache", values, "memory cache placement") if len(values) > 1 else None


def _is_cache(spec: PipelineSpec, i: int) -> bool:
    return isinstance(spec.steps[i], CacheStep)


def realize(spec: PipelineSpec, settings: Mapping[str, Any]) -> PipelineSpec:
    """Apply knob settings to `spec` (see the module docstring for the knobs)."""
    steps: list[tuple[int | str, Any]] = list(enumerate(spec.steps))
    if "cache" in settings:
        steps = [(i, s) for i, s in steps if not isinstance(s, CacheStep)]
    if "prefetch" in settings and spec.steps and isinstance(spec.steps[-1], PrefetchStep):
        steps = steps[:-1]
    steps = [(i, _tuned_step(i, s, settings)) for i, s in steps]
    interleave = settings.get("interleave.parallel", NO_INTERLEAVE)
    if _leading_interleave(spec) is None and interleave != NO_INTERLEAVE:
        steps.insert(0, ("interleave", InterleaveStep(num_parallel_calls=interleave)))
    cache_at = settings.get("cache", NO_CACHE)
    passes = whole_batches_passes(cache_at)
    if passes is not None:  # repeat(passes), batch, cache, then the rest of the repeat
        steps = _cache_whole_batches(spec, steps, passes)
    elif cache_at != NO_CACHE:
        if cache_at == -1:
            slot = 1 if steps and isinstance(steps[0][1], InterleaveStep) else 0
        else:
            slot = 1 + [i for i, _ in steps].index(cache_at)
        steps.insert(slot, ("cache", CacheStep()))
    for name, count in sorted(_vectorized(settings), reverse=True):
        steps = _move_after_batch(steps, name, count)
    prefetch = settings.get("prefetch", NO_PREFETCH)
    if prefetch != NO_PREFETCH:
        steps.append(("prefetch", PrefetchStep(buffer_size=prefetch)))
    changes: dict[str, Any] = {"steps": [s for _, s in steps]}
    options = _tuned_options(spec, settings)
    if options != spec.options:
        changes["options"] = options
    if "source.parallel" in settings:
        changes["source"] = spec.source.model_copy(
            update={SOURCE_PARALLEL_FIELD: settings["source.parallel"]}
        )
    return spec.replace(**changes)


def _cache_whole_batches(spec: PipelineSpec, steps: list, passes: int) -> list:
    repeat = _repeat_then_batch(spec)
    if repeat is None:
        raise SpecError("a cache of whole batches needs a batch step right after a repeat")
    count = spec.steps[repeat].count
    if count is not None and count % passes:
        raise SpecError(f"a cache of {passes} passes needs a repeat count that {passes} divides")
    keys = [i for i, _ in steps]
    key, step = steps.pop(keys.index(repeat))
    slot = [i for i, _ in steps].index(repeat + 1)
    rest = None if count is None else count // passes
    after = [] if rest == 1 else [(key, step.model_copy(update={"count": rest}))]
    steps[slot + 1 : slot + 1] = [("cache", CacheStep()), *after]
    if passes > 1:
        steps.insert(slot, ("passes", RepeatStep(count=passes)))
    return steps


def _tuned_options(spec: PipelineSpec, settings: Mapping[str, Any]):
    update = {
        field: settings[f"options.{field}"]
        for field in ("max_intra_op_parallelism", "private_threadpool_size", "autotune")
        if f"options.{field}" in settings
    }
    if "deterministic" in settings:
        update["deterministic"] = settings["deterministic"]
    return spec.options.model_copy(update=update) if update else spec.options


def _vectorized(settings: Mapping[str, Any]) -> list[tuple[int, int]]:
    return [
        (_index(k), int(v))
        for k, v in settings.items()
        if k.startswith("map[") and k.endswith(".vectorize") and v
    ]


def _tuned_step(i: int, step, settings: Mapping[str, Any]):
    update: dict[str, Any] = {}
    if isinstance(step, MapStep) and f"map[{i}].parallel" in settings:
        update["num_parallel_calls"] = settings[f"map[{i}].parallel"]
    elif isinstance(step, InterleaveStep) and "interleave.parallel" in settings:
        update["num_parallel_calls"] = settings["interleave.parallel"]
    elif isinstance(step, BatchStep):
        if "batch_size" in settings:
            update["batch_size"] = settings["batch_size"]
        if "batch.parallel" in settings:
            update["num_parallel_calls"] = settings["batch.parallel"]
    return step.model_copy(update=update) if update else step


def _move_after_batch(steps, original_index: int, count: int):
    """Move the last `count` augmentations of map `original_index` to just after the batch."""
    at = [i for i, _ in steps].index(original_index)
    key, step = steps[at]
    head, tail = step.augmentations[:-count], step.augmentations[-count:]
    moved = step.model_copy(update={"augmentations": tail})
    if head:
        steps[at] = (key, step.model_copy(update={"augmentations": head}))
    else:
        steps.pop(at)
    batch_at = next(j for j in range(at, len(steps)) if isinstance(steps[j][1], BatchStep))
    steps.insert(batch_at + 1, (f"vectorized {key}", moved))
    return steps
