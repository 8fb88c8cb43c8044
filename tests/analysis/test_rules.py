"""Recommendation rules as pure functions over measured facts, and the gain filter."""

from __future__ import annotations

import pytest

from pipeline_core.analysis.recommend import RULES, Facts, gather_facts, proposals, recommend
from pipeline_core.analysis.stages import Stage, StageReport
from pipeline_core.spec import load_spec

SLEEP = {"name": "sleep", "ms": 2}
FLIP = {"name": "random_flip_left_right"}


def make(steps, *, options=None, num_examples=1000):
    data = {
        "source": {"type": "synthetic", "num_examples": num_examples, "shape": [8, 8, 3]},
        "steps": steps,
        "options": options or {},
    }
    return load_spec(data)


def report(spec, added_us):
    """A stage report whose stages add `added_us` (source first) µs per example."""
    stages, total = [], 0.0
    for index, added in zip([None, *range(len(spec.steps))], added_us, strict=True):
        total += added
        stages.append(Stage(index, f"stage {index}", 1e6 / total, total, added))
    return StageReport(spec=spec, stages=tuple(stages))


def facts(spec, added_us, *, cache=10**6, available=10**9):
    return Facts(
        stages=report(spec, added_us), cache_bytes={-1: cache, 0: cache}, available_bytes=available
    )


# One pipeline per rule that shows its pattern, with the stage costs measured on it.
SEQUENTIAL_SLEEP = make([{"op": "map", "augmentations": [SLEEP]}, {"op": "batch"}])
CHEAP_ELEMENT_MAP = make(
    [
        {"op": "map", "augmentations": [FLIP], "num_parallel_calls": 2},
        {"op": "batch"},
        {"op": "prefetch"},
    ],
    options={"deterministic": False},
)
SLOW_DECODE = make(
    [
        {"op": "map", "augmentations": [SLEEP], "num_parallel_calls": 2},
        {"op": "shuffle", "buffer_size": 500},
        {"op": "batch"},
        {"op": "prefetch"},
    ],
    options={"deterministic": False},
)
NO_PREFETCH = make([{"op": "batch"}])
SMALL_SHUFFLE = make([{"op": "shuffle", "buffer_size": 8}, {"op": "batch"}, {"op": "prefetch"}])
ORDERED_PARALLEL = make(
    [
        {"op": "batch"},
        {"op": "map", "augmentations": [FLIP], "num_parallel_calls": 4},
        {"op": "prefetch"},
    ]
)
CASES = {
    "parallel_map": (SEQUENTIAL_SLEEP, [10, 2000, 5]),
    "vectorize_map": (CHEAP_ELEMENT_MAP, [10, 20, 1, 1]),
    "cache_after_decode": (SLOW_DECODE, [10, 2000, 5, 5, 1]),
    "prefetch_at_end": (NO_PREFETCH, [10, 5]),
    "shuffle_buffer": (SMALL_SHUFFLE, [10, 5, 5, 1]),
    "nondeterministic": (ORDERED_PARALLEL, [10, 5, 30, 1]),
}
TUNED = make(
    [
        {"op": "batch", "batch_size": 32},
        {"op": "map", "augmentations": [SLEEP], "num_parallel_calls": "autotune"},
        {"op": "cache"},
        {"op": "prefetch"},
    ],
    options={"deterministic": False},
)


def test_every_rule_has_a_case():
    missing = set(RULES) - set(CASES) - {"parallel_interleave"}
    assert not missing, f"rules without a test case: {missing}"


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_fires_on_the_pipeline_it_describes(rule):
    spec, added = CASES[rule]
    found = RULES[rule](spec, facts(spec, added))
    assert found is not None and found.rule == rule
    fixed = found.transform(spec)
    assert fixed != spec and load_spec(fixed.to_dict()) == fixed


def test_rules_are_silent_on_a_tuned_pipeline():
    assert proposals(TUNED, facts(TUNED, [10, 1, 20, 1, 1])) == []


def test_parallel_map_needs_a_measured_share():
    assert RULES["parallel_map"](SEQUENTIAL_SLEEP, facts(SEQUENTIAL_SLEEP, [100, 5, 100])) is None


def test_cache_is_not_proposed_when_it_does_not_fit():
    spec, added = CASES["cache_after_decode"]
    assert (
        RULES["cache_after_decode"](spec, facts(spec, added, cache=10**9, available=10**9)) is None
    )


def test_shuffle_fix_covers_a_quarter_of_the_data():
    found = RULES["shuffle_buffer"](SMALL_SHUFFLE, facts(SMALL_SHUFFLE, [10, 5, 5, 1]))
    assert found.transform(SMALL_SHUFFLE).steps[0].buffer_size == 250
    assert found.kind == "quality" and "25%" in found.benefit


def rates(table):
    """A fake measurement: examples/s by a feature of the spec."""

    def measure(spec):
        for predicate, rate in table:
            if predicate(spec):
                return rate
        return 100.0

    return measure


def test_recommend_keeps_only_fixes_whose_measured_gain_is_enough():
    spec, added = CASES["parallel_map"]
    measure = rates(
        [
            (lambda s: s.steps[0].op == "map" and s.steps[0].num_parallel_calls, 190.0),
            (lambda s: s.steps[-1].op == "prefetch", 104.0),  # below the 10% bar
        ]
    )
    found = recommend(spec, stages=report(spec, added), measure=measure)
    assert [r.rule for r in found] == ["parallel_map"]
    (rec,) = found
    assert rec.gain() == pytest.approx(1.9)
    assert rec.apply().steps[0].num_parallel_calls == "autotune"
    assert rec.apply(spec) == rec.spec
    assert rec.to_dict()["gain"] == pytest.approx(1.9)


def test_recommend_is_silent_when_nothing_measured_helps():
    spec, added = CASES["parallel_map"]
    assert recommend(spec, stages=report(spec, added), measure=lambda s: 100.0) == []


@pytest.mark.parametrize("rule", [r for r in CASES if r != "shuffle_buffer"])
def test_every_speed_fix_is_a_point_of_the_tuners_space(rule):
    """So the tuner can start from it and the page can compare both figures."""
    from pipeline_core.analysis.space import realize

    spec, added = CASES[rule]
    found = RULES[rule](spec, facts(spec, added))
    assert found.kind == "speed" and found.settings
    assert realize(spec, found.settings) == found.transform(spec)


def test_vectorize_moves_only_the_trailing_batch_augmentations():
    spec = make(
        [
            {"op": "map", "augmentations": [{"name": "jpeg_quality"}, FLIP]},
            {"op": "batch"},
        ]
    )
    found = RULES["vectorize_map"](spec, facts(spec, [10, 20, 1]))
    assert found.settings == {"map[0].vectorize": 1}
    assert "its last 1 augmentation after batch" in found.title
    fixed = found.transform(spec)
    assert [s.op for s in fixed.steps] == ["map", "batch", "map"]


def test_recommend_measures_baseline_and_fixes_alternately_and_keeps_medians():
    spec, added = CASES["parallel_map"]
    real = gather_facts(spec, stages=report(spec, added))
    proposed = [spec, *(p.transform(spec) for p in proposals(spec, real))]
    series = {0: iter([100.0, 130.0, 102.0]), 1: iter([190.0, 150.0, 200.0])}
    calls = []

    def measure(candidate):
        calls.append(candidate)
        k = proposed.index(candidate)
        return next(series[k]) if k in series else 100.0

    found = recommend(spec, stages=report(spec, added), measure=measure, rounds=3)
    n = len(proposed)
    assert len(calls) == 3 * n
    assert calls[:n] == proposed and calls[n : 2 * n] == proposed[::-1]  # alternating
    (rec,) = [r for r in found if r.rule == "parallel_map"]
    assert rec.baseline_examples_per_s == 102.0  # median of 100, 130, 102
    assert rec.examples_per_s == 190.0 and len(rec.rounds) == 3
    assert rec.to_dict()["settings"] == {"map[0].parallel": "autotune"}
