"""The adaptive search on synthetic landscapes (no TensorFlow): it finds known optima."""

from __future__ import annotations

import itertools

import pytest

from pipeline_core.analysis.search import coordinate_search, grid_search, grid_size

KNOBS = {
    "parallel": (None, 2, 4, 8, "autotune"),
    "prefetch": ("none", 1, "autotune"),
    "cache": ("none", -1, 0),
    "vectorize": (False, True),
}
START = {"parallel": None, "prefetch": "none", "cache": "none", "vectorize": False}


def separable(settings):
    """A landscape whose optimum is parallel=8, prefetch=autotune, cache=0, vectorize."""
    p = {None: 100, 2: 180, 4: 300, 8: 420, "autotune": 400}[settings["parallel"]]
    f = {"none": 1.0, 1: 1.1, "autotune": 1.2}[settings["prefetch"]]
    c = {"none": 1.0, -1: 1.05, 0: 1.5}[settings["cache"]]
    v = 1.3 if settings["vectorize"] else 1.0
    return p * f * c * v


def coupled(settings):
    """Parallelism only pays once the map is vectorized (an interaction between knobs)."""
    base = separable(settings)
    if not settings["vectorize"] and settings["parallel"] not in (None, 2):
        base *= 0.5
    return base


def exhaustive_best(objective):
    names = list(KNOBS)
    return max(
        (dict(zip(names, combo, strict=True)) for combo in itertools.product(*KNOBS.values())),
        key=objective,
    )


@pytest.mark.parametrize("objective", [separable, coupled], ids=["separable", "coupled"])
def test_coordinate_search_finds_the_optimum_in_a_fraction_of_the_grid(objective):
    result = coordinate_search(KNOBS, START, objective, budget_s=None, max_trials=40)
    assert result.best == exhaustive_best(objective)
    assert result.best_score == pytest.approx(objective(exhaustive_best(objective)))
    assert len(result.trials) <= grid_size(KNOBS) // 2
    assert result.trials[0].phase == "baseline"
    assert result.trials[0].settings == START
    assert result.speedup() == pytest.approx(result.best_score / objective(START))


def test_every_evaluated_point_is_a_recorded_trial_and_none_is_repeated():
    seen = []

    def objective(settings):
        seen.append(dict(settings))
        return separable(settings)

    result = coordinate_search(KNOBS, START, objective, budget_s=None)
    assert [t.settings for t in result.trials] == seen
    keys = [tuple(sorted(map(repr, s.items()))) for s in seen]
    assert len(keys) == len(set(keys))


def test_time_budget_stops_the_search_and_keeps_the_best_so_far():
    clock = iter(range(0, 10_000)).__next__  # each reading advances one "second"
    result = coordinate_search(KNOBS, START, separable, budget_s=8, clock=lambda: clock())
    assert result.stopped_by_budget
    assert 1 < len(result.trials) < 8
    assert result.best_score == max(t.score for t in result.trials)


def test_noise_guard_keeps_the_baseline_when_gains_are_below_min_gain():
    result = coordinate_search(
        KNOBS, START, lambda s: 100.0 + (s["parallel"] == 2), budget_s=None, min_gain=0.05
    )
    assert result.best == START


def test_failing_candidates_are_recorded_and_skipped():
    def objective(settings):
        if settings["vectorize"]:
            raise ValueError("cannot vectorize")
        return separable(settings)

    result = coordinate_search(KNOBS, START, objective, budget_s=None)
    failed = [t for t in result.trials if not t.ok]
    assert failed and all("cannot vectorize" in t.error for t in failed)
    assert result.best["vectorize"] is False


def test_grid_search_visits_every_point_and_finds_the_global_best():
    result = grid_search(KNOBS, START, coupled)
    assert len(result.trials) == grid_size(KNOBS)
    assert result.best == exhaustive_best(coupled)


def test_start_must_cover_every_knob():
    with pytest.raises(ValueError, match="lack a value for knobs \\['cache'\\]"):
        coordinate_search(KNOBS, {"parallel": None, "prefetch": 1, "vectorize": 0}, separable)
