"""Recommendations: rules over measured facts, each checked by measuring its fix.

A rule is a pure function `(spec, facts) -> Proposal | None`: it looks at the
spec and the measured facts (stage costs, element counts, memory) and, when
its pattern is present, proposes a change as a function `spec -> spec`. Every
speed fix is a point of the tuner's space (`Proposal.settings`, applied with
`space.realize`), so the tuner can start from the recommendations and the
page can put a recommendation's figure beside the tuner's for the same spec.
`recommend` then measures the pipeline as written and each proposed spec in
rounds, alternately (a slow spell of a shared machine touches all alike), and
keeps the fixes whose median gain reaches `min_gain` — so every
recommendation carries the gain it was seen to bring, its baseline is
measured as the tuner's is (a consumer pulling the whole pipeline), and a
pipeline that is already tuned gets none. Quality rules (the shuffle buffer)
are kept when they cost little throughput; their benefit is stated, their
cost measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline_core.analysis.examples import stage_counts
from pipeline_core.analysis.measure import WINDOW_S, measure_spec
from pipeline_core.analysis.memory import available_bytes, cache_bytes, format_bytes
from pipeline_core.analysis.space import leading_deterministic, movable_suffix, realize
from pipeline_core.analysis.stages import StageReport
from pipeline_core.spec import PipelineSpec
from pipeline_core.steps import CacheStep, InterleaveStep, MapStep, PrefetchStep, ShuffleStep

Transform = Callable[[PipelineSpec], PipelineSpec]


@dataclass(frozen=True)
class Facts:
    """Measured numbers the rules read."""

    stages: StageReport | None = None
    dataset_count: float | None = None  # examples one pass of the source yields
    cache_bytes: dict[int, float | None] | None = None  # position -> bytes a cache would hold
    available_bytes: float = math.inf

    def step_share(self, index: int | None) -> float:
        """Share of per-example cost added by a step (0 when not measured)."""
        if self.stages is None:
            return 0.0
        return self.stages.share(self.stages.step(index))


@dataclass(frozen=True)
class Proposal:
    """What a rule found and the change it proposes (a speed fix also as tuner settings)."""

    rule: str
    title: str
    reason: str
    transform: Transform
    kind: str = "speed"  # "speed" or "quality"
    benefit: str = ""
    settings: Mapping[str, Any] | None = None


def _knob_proposal(rule: str, title: str, reason: str, settings: dict[str, Any]) -> Proposal:
    """A speed fix that is a point of the tuner's space."""
    return Proposal(rule, title, reason, lambda s: realize(s, settings), settings=settings)


@dataclass(frozen=True)
class Recommendation:
    """A proposal with its measured effect; `apply()` is the one-click fix."""

    rule: str
    title: str
    reason: str
    kind: str
    benefit: str
    baseline_examples_per_s: float
    examples_per_s: float
    spec: PipelineSpec
    transform: Transform | None = None
    settings: Mapping[str, Any] | None = None
    rounds: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def gain(self) -> float:
        """Measured examples/s with the fix ÷ without it."""
        base = self.baseline_examples_per_s
        return self.examples_per_s / base if base > 0 else 0.0

    def apply(self, spec: PipelineSpec | None = None) -> PipelineSpec:
        """The fixed spec (of the analyzed spec, or the fix re-applied to `spec`).

        A detached speed fix is re-applied from its tuner settings.

        Raises:
            ValueError: `spec` is given but this recommendation was `detached()` and has
                no tuner settings (a quality fix).
        """
        if spec is None:
            return self.spec
        if self.transform is None and self.settings:
            return realize(spec, self.settings)
        if self.transform is None:
            raise ValueError(
                "this recommendation was sent from another process without its fix function; "
                "apply it to the analyzed spec (apply()) or run recommend() on the new spec"
            )
        return self.transform(spec)

    def detached(self) -> Recommendation:
        """A copy without the fix function (a closure), so it can be pickled to another
        process; `apply()` still returns the fixed spec, and a speed fix still applies to
        another spec through its settings."""
        return replace(self, transform=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "title": self.title,
            "reason": self.reason,
            "kind": self.kind,
            "benefit": self.benefit,
            "gain": self.gain(),
            "baseline_examples_per_s": self.baseline_examples_per_s,
            "examples_per_s": self.examples_per_s,
            "settings": None if self.settings is None else dict(self.settings),
            "rounds": [list(r) for r in self.rounds],
            "spec": self.spec.to_dict(),
        }


# --- rules ---------------------------------------------------------------------------

MIN_SHARE = 0.10  # a step must add at least this share of the cost to be worth a rule
SLOW_SOURCE_SHARE = 0.20
SHUFFLE_COVERAGE = 0.10


def _set_step(index: int, **update: Any) -> Transform:
    def transform(spec: PipelineSpec) -> PipelineSpec:
        steps = list(spec.steps)
        steps[index] = steps[index].model_copy(update=update)
        return spec.replace(steps=steps)

    return transform


def parallel_map(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """A sequential map that costs a real share of the time -> num_parallel_calls autotune."""
    candidates = [
        (facts.step_share(i), i)
        for i, s in enumerate(spec.steps)
        if isinstance(s, MapStep) and s.num_parallel_calls in (None, 1)
    ]
    candidates = [(share, i) for share, i in candidates if share >= MIN_SHARE]
    if not candidates:
        return None
    share, i = max(candidates)
    return _knob_proposal(
        "parallel_map",
        f"Run steps[{i}] map in parallel",
        f"steps[{i}] map runs sequentially and adds {share:.0%} of the time per example",
        {f"map[{i}].parallel": "autotune"},
    )


def vectorize_map(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """A per-element map ending in augmentations that work on batches -> run those after batch."""
    eligible = [(i, movable_suffix(spec, i)) for i in range(len(spec.steps))]
    eligible = [(i, n) for i, n in eligible if n]
    if not eligible:
        return None
    i, count = eligible[-1]
    total = len(spec.steps[i].augmentations)
    what = "it" if count == total else f"its last {count} augmentation{'s' * (count > 1)}"
    which = "all its augmentations work" if count == total else "those work"
    return _knob_proposal(
        "vectorize_map",
        f"Vectorize steps[{i}] map: run {what} after batch",
        f"steps[{i}] map runs once per example, and {which} on whole batches; one call "
        "per batch saves the per-call overhead",
        {f"map[{i}].vectorize": count},
    )


def cache_after_decode(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """No cache, the deterministic front is slow, and its output fits in RAM -> cache it."""
    if any(isinstance(s, CacheStep) for s in spec.steps):
        return None
    front = leading_deterministic(spec)
    position = front[-1] if front else -1
    share = facts.step_share(None) + sum(facts.step_share(i) for i in front)
    need = (facts.cache_bytes or {}).get(position)
    if share < SLOW_SOURCE_SHARE or need is None or math.isinf(need):
        return None
    if need > 0.5 * facts.available_bytes:
        return None
    where = "the source" if position == -1 else f"steps[{position}]"
    return _knob_proposal(
        "cache_after_decode",
        f"Cache in memory after {where}",
        f"reading/decoding up to {where} takes {share:.0%} of the time, and its output "
        f"({format_bytes(need)}) fits in memory; later epochs read the cache",
        {"cache": position},
    )


def prefetch_at_end(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """No prefetch at the end -> prefetch(autotune) overlaps producer and consumer."""
    if spec.steps and isinstance(spec.steps[-1], PrefetchStep):
        return None
    return _knob_proposal(
        "prefetch_at_end",
        "Prefetch at the end",
        "the last step is not a prefetch, so the consumer waits for every batch to be made",
        {"prefetch": "autotune"},
    )


def shuffle_buffer(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """A shuffle buffer that covers under 10% of the data it shuffles -> enlarge it."""
    counts = stage_counts(spec) if facts.dataset_count is None else None
    for i, step in enumerate(spec.steps):
        if not isinstance(step, ShuffleStep):
            continue
        n = counts[i] if counts is not None else facts.dataset_count
        if n is None or math.isinf(n) or step.buffer_size >= SHUFFLE_COVERAGE * n:
            continue
        size = int(min(n, max(step.buffer_size * 4, math.ceil(0.25 * n))))
        return Proposal(
            "shuffle_buffer",
            f"Enlarge the shuffle buffer of steps[{i}] to {size}",
            f"buffer_size {step.buffer_size} covers {step.buffer_size / n:.1%} of the "
            f"{int(n)} elements it shuffles: neighbours in the output come from nearby "
            "input, so batches are poorly mixed",
            _set_step(i, buffer_size=size),
            kind="quality",
            benefit=f"buffer covers {size / n:.0%} of the data instead of "
            f"{step.buffer_size / n:.1%}",
        )
    return None


def nondeterministic(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """Parallel steps kept in order -> allow reordering (options.deterministic = false)."""
    if spec.options.deterministic is False:
        return None
    parallel = [
        i
        for i, s in enumerate(spec.steps)
        if isinstance(s, MapStep | InterleaveStep)
        and s.num_parallel_calls not in (None, 1)
        and s.deterministic is not True
    ]
    if not parallel:
        return None
    return _knob_proposal(
        "nondeterministic",
        "Allow out-of-order elements (deterministic = false)",
        f"parallel steps {parallel} keep element order, so one slow element holds back "
        "the ones finished after it",
        {"deterministic": False},
    )


def parallel_interleave(spec: PipelineSpec, facts: Facts) -> Proposal | None:
    """A sequential interleave over files -> read them in parallel."""
    if not spec.steps or not isinstance(spec.steps[0], InterleaveStep):
        return None
    if spec.steps[0].num_parallel_calls not in (None, 1):
        return None
    return _knob_proposal(
        "parallel_interleave",
        "Read files in parallel (interleave num_parallel_calls = autotune)",
        f"interleave reads {spec.steps[0].cycle_length or 'several'} files one call at a time",
        {"interleave.parallel": "autotune"},
    )


RULES: dict[str, Callable[[PipelineSpec, Facts], Proposal | None]] = {
    "parallel_map": parallel_map,
    "vectorize_map": vectorize_map,
    "cache_after_decode": cache_after_decode,
    "prefetch_at_end": prefetch_at_end,
    "shuffle_buffer": shuffle_buffer,
    "nondeterministic": nondeterministic,
    "parallel_interleave": parallel_interleave,
}


def proposals(spec: PipelineSpec, facts: Facts) -> list[Proposal]:
    """Every rule's proposal for `spec` (unmeasured)."""
    out = []
    for rule in RULES.values():
        found = rule(spec, facts)
        if found is not None:
            out.append(found)
    return out


def gather_facts(
    spec: PipelineSpec, *, stages: StageReport | None = None, available: float | None = None
) -> Facts:
    """Facts for the rules: stage costs (as given), counts and cache sizes from the spec."""
    front = leading_deterministic(spec)
    position = front[-1] if front else -1
    return Facts(
        stages=stages,
        dataset_count=None,
        cache_bytes={position: cache_bytes(spec, position)},
        available_bytes=available_bytes() if available is None else available,
    )


def recommend(
    spec: PipelineSpec,
    *,
    stages: StageReport | None = None,
    seconds: float = WINDOW_S,
    rounds: int = 2,
    min_gain: float = 1.10,
    max_quality_cost: float = 0.9,
    measure: Callable[[PipelineSpec], float] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[Recommendation]:
    """Measured recommendations for `spec`, best gain first.

    Args:
        spec: the pipeline.
        stages: a stage report of `spec` (from `analyze_stages`); without it the
            rules that need stage costs stay silent.
        seconds: timed window of each measurement.
        rounds: the pipeline as written and every fix are measured this many
            times, alternately; gains are ratios of the medians.
        min_gain: a speed recommendation is kept when fix ÷ baseline reaches this.
        max_quality_cost: a quality recommendation is kept when it keeps at least
            this share of the throughput.
        measure: spec -> examples/s (default: `measure_spec`, a consumer's loop).
        on_progress: callback `(what was measured, done, total)`.
    """
    if measure is None:

        def measure(s: PipelineSpec) -> float:
            return measure_spec(s, seconds=seconds).examples_per_s

    found = proposals(spec, gather_facts(spec, stages=stages))
    if not found:
        return []
    specs = [spec, *(p.transform(spec) for p in found)]
    names = ["as written", *(p.rule for p in found)]
    figures: list[list[float]] = [[] for _ in specs]
    total, done = rounds * len(specs), 0
    for round_ in range(rounds):
        order = range(len(specs)) if round_ % 2 == 0 else reversed(range(len(specs)))
        for k in order:
            figures[k].append(measure(specs[k]))
            done += 1
            if on_progress is not None:
                on_progress(names[k], done, total)
    baseline = statistics.median(figures[0])
    out = []
    for proposal, fixed, seen in zip(found, specs[1:], figures[1:], strict=True):
        rate = statistics.median(seen)
        ratio = rate / baseline if baseline > 0 else 0.0
        keep = ratio >= min_gain if proposal.kind == "speed" else ratio >= max_quality_cost
        if keep:
            out.append(
                Recommendation(
                    rule=proposal.rule,
                    title=proposal.title,
                    reason=proposal.reason,
                    kind=proposal.kind,
                    benefit=proposal.benefit or f"{ratio:.2f}× examples/s (measured)",
                    baseline_examples_per_s=baseline,
                    examples_per_s=rate,
                    spec=fixed,
                    transform=proposal.transform,
                    settings=proposal.settings,
                    rounds=tuple(zip(figures[0], seen, strict=True)),
                )
            )
    return sorted(out, key=lambda r: (r.kind != "speed", -r.gain()))
