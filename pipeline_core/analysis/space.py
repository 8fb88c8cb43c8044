"""The tuner's candidate space: which knobs a spec offers and how settings become a spec.

Knobs (each only where the spec has the step it needs):

- ``map[i].parallel``: `num_parallel_calls` of map step i (null, cores, 2×cores, autotune);
- ``map[i].vectorize``: move map step i to just after the batch step (only
  when all its augmentations work on batches and no other map sits between);
- ``interleave.parallel``: `num_parallel_calls` of the interleave step;
- ``batch_size``: only when the user allows it;
- ``cache``: none, or a memory cache after the source / after step k, only
  among the leading deterministic steps (caching after a random augmentation
  would freeze it), never before an interleave (it must stay the first step)
  and only where the cached data fits in memory;
- ``prefetch``: the buffer of a final prefetch step (none, 1, autotune);
- ``deterministic``: `options.deterministic` (only when reordering is allowed).

Settings are a plain dict knob -> value; `SearchSpace.realize(settings)` turns
them into a validated `PipelineSpec`, always starting from the spec as written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.analysis.search import grid_size
from pipeline_core.augment import AUGMENTATIONS
from pipeline_core.spec import (
    BatchStep,
    CacheStep,
    InterleaveStep,
    MapStep,
    PipelineSpec,
    PrefetchStep,
    RepeatStep,
)

# Augmentations whose output depends only on the input (safe to cache after).
DETERMINISTIC_AUGMENTATIONS = frozenset(
    {"central_crop", "resize", "normalize", "convert_dtype", "sleep", "cpu_work"}
) & frozenset(AUGMENTATIONS)

NO_CACHE = "none"
NO_PREFETCH = "none"


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


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


def vectorizable_maps(spec: PipelineSpec) -> list[int]:
    """Map steps that may move to just after the next batch step."""
    out = []
    steps = spec.steps
    for i, step in enumerate(steps):
        if not isinstance(step, MapStep):
            continue
        later = steps[i + 1 :]
        batch_at = next((j for j, s in enumerate(later) if isinstance(s, BatchStep)), None)
        if batch_at is None:
            continue
        between = later[:batch_at]
        if any(isinstance(s, MapStep) for s in between):
            continue
        if all(AUGMENTATIONS[a.name].batch_ok for a in step.augmentations):
            out.append(i)
    return out


def cache_label(value: Any, spec: PipelineSpec) -> str:
    """Readable form of a cache setting."""
    if value == NO_CACHE:
        return "no cache"
    if value == -1:
        return "after source"
    return f"after steps[{value}] {spec.steps[value].op}"


def _cache_position(spec: PipelineSpec) -> Any:
    caches = [i for i, s in enumerate(spec.steps) if isinstance(s, CacheStep)]
    return caches[0] - 1 if caches else NO_CACHE


def _final_prefetch(spec: PipelineSpec) -> Any:
    if spec.steps and isinstance(spec.steps[-1], PrefetchStep):
        return spec.steps[-1].buffer_size
    return NO_PREFETCH


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
        import itertools  # noqa: PLC0415

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
    if value is None:
        return "sequential" if name.endswith("parallel") else "null"
    return str(value)


def baseline_settings(spec: PipelineSpec, names) -> dict[str, Any]:
    """Current value in `spec` of every knob in `names`."""
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("map[") and name.endswith(".parallel"):
            out[name] = spec.steps[_index(name)].num_parallel_calls
        elif name.endswith(".vectorize"):
            out[name] = False
        elif name == "interleave.parallel":
            out[name] = spec.steps[0].num_parallel_calls
        elif name == "batch_size":
            out[name] = next(s for s in spec.steps if isinstance(s, BatchStep)).batch_size
        elif name == "cache":
            out[name] = _cache_position(spec)
        elif name == "prefetch":
            out[name] = _final_prefetch(spec)
        elif name == "deterministic":
            out[name] = spec.options.deterministic
        else:
            raise ValueError(f"unknown knob {name!r}")
    return out


def _index(name: str) -> int:
    return int(name[name.index("[") + 1 : name.index("]")])


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
    if cache_fits is None:
        from pipeline_core.analysis.memory import cache_fits as _fits  # noqa: PLC0415

        cache_fits = _fits
    cores = cores or available_cores()
    base = baseline_settings
    knobs: list[Knob] = []
    parallel = (None, cores, 2 * cores, "autotune")
    for i, step in enumerate(spec.steps):
        if isinstance(step, MapStep):
            name = f"map[{i}].parallel"
            values = _dedupe((base(spec, [name])[name], *parallel))
            knobs.append(Knob(name, values, f"num_parallel_calls of steps[{i}] map"))
    for i in vectorizable_maps(spec):
        knobs.append(Knob(f"map[{i}].vectorize", (False, True), f"run steps[{i}] map after batch"))
    cache_knob = _cache_knob(spec, cache_fits)
    if cache_knob is not None:
        knobs.append(cache_knob)
    if spec.steps and isinstance(spec.steps[0], InterleaveStep):
        values = _dedupe((spec.steps[0].num_parallel_calls, None, cores, "autotune"))
        knobs.append(Knob("interleave.parallel", values, "num_parallel_calls of interleave"))
    batches = [s for s in spec.steps if isinstance(s, BatchStep)]
    if tune_batch_size and len(batches) == 1:
        b = batches[0].batch_size
        values = _dedupe((b, *(v for v in (b // 2, 2 * b, 4 * b) if v >= 1)))
        knobs.append(Knob("batch_size", values, "batch_size of the batch step"))
    knobs.append(
        Knob("prefetch", _dedupe((_final_prefetch(spec), NO_PREFETCH, 1, "autotune")), "prefetch")
    )
    if allow_reorder and spec.options.deterministic is not False:
        knobs.append(
            Knob("deterministic", (spec.options.deterministic, False), "options.deterministic")
        )
    return SearchSpace(spec=spec, knobs=tuple(knobs))


def _cache_knob(spec: PipelineSpec, cache_fits) -> Knob | None:
    caches = [i for i, s in enumerate(spec.steps) if isinstance(s, CacheStep)]
    if len(caches) > 1 or (caches and spec.steps[caches[0]].filename):
        return None  # several caches or a file cache: leave the user's choice alone
    current = _cache_position(spec)
    # interleave must stay the first step, so nothing (a cache included) may go before it
    first = [] if spec.steps and isinstance(spec.steps[0], InterleaveStep) else [-1]
    positions = [*first, *(i for i in leading_deterministic(spec) if not _is_cache(spec, i))]
    fitting = [p for p in positions if p == current or cache_fits(spec, p)]
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
    cache_at = settings.get("cache", NO_CACHE)
    if cache_at != NO_CACHE:
        slot = 0 if cache_at == -1 else 1 + [i for i, _ in steps].index(cache_at)
        steps.insert(slot, ("cache", CacheStep()))
    for i in sorted(_vectorized(settings), reverse=True):
        steps = _move_after_batch(steps, i)
    prefetch = settings.get("prefetch", NO_PREFETCH)
    if prefetch != NO_PREFETCH:
        steps.append(("prefetch", PrefetchStep(buffer_size=prefetch)))
    changes: dict[str, Any] = {"steps": [s for _, s in steps]}
    if "deterministic" in settings:
        changes["options"] = spec.options.model_copy(
            update={"deterministic": settings["deterministic"]}
        )
    return spec.replace(**changes)


def _vectorized(settings: Mapping[str, Any]) -> list[int]:
    return [_index(k) for k, v in settings.items() if k.endswith(".vectorize") and v]


def _tuned_step(i: int, step, settings: Mapping[str, Any]):
    update: dict[str, Any] = {}
    if isinstance(step, MapStep) and f"map[{i}].parallel" in settings:
        update["num_parallel_calls"] = settings[f"map[{i}].parallel"]
    elif isinstance(step, InterleaveStep) and "interleave.parallel" in settings:
        update["num_parallel_calls"] = settings["interleave.parallel"]
    elif isinstance(step, BatchStep) and "batch_size" in settings:
        update["batch_size"] = settings["batch_size"]
    return step.model_copy(update=update) if update else step


def _move_after_batch(steps, original_index: int):
    at = [i for i, _ in steps].index(original_index)
    item = steps.pop(at)
    batch_at = next(j for j in range(at, len(steps)) if isinstance(steps[j][1], BatchStep))
    steps.insert(batch_at + 1, item)
    return steps
