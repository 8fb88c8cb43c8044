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


def _tune_with_fake_measure(*, winner_confirms: float | None):
    """`tune` on a one-map spec whose rate depends only on its parallelism (no TensorFlow)."""
    from pipeline_core.analysis.space import search_space  # noqa: PLC0415
    from pipeline_core.analysis.tuner import tune  # noqa: PLC0415
    from pipeline_core.spec import load_spec  # noqa: PLC0415

    spec = load_spec(
        {
            "source": {"type": "synthetic", "num_examples": 64, "shape": [4, 4, 1]},
            "steps": [{"op": "map", "augmentations": [{"name": "sleep", "ms": 1}]}],
        }
    )
    calls = []

    def measure(candidate, seconds):
        calls.append((candidate.steps[0].num_parallel_calls, seconds))
        parallel = candidate.steps[0].num_parallel_calls is not None
        if seconds == 1.0 and winner_confirms is not None:
            return winner_confirms
        return 300.0 if parallel and winner_confirms is not None else 100.0

    space = search_space(spec, cores=2, cache_fits=lambda s, p: False)
    result = tune(spec, space=space, trial_seconds=0.2, confirm_seconds=1.0, measure=measure)
    return result, calls


def test_tuner_reuses_the_baseline_trial_and_re_measures_only_the_winner():
    result, calls = _tune_with_fake_measure(winner_confirms=250.0)
    confirmations = [c for c in calls if c[1] == 1.0]
    assert len(confirmations) == 1 and confirmations[0][0] is not None
    assert result.baseline_examples_per_s == result.search.trials[0].score == 100.0
    assert result.best_examples_per_s == 250.0 and result.speedup() == 2.5
    assert len(calls) == len(result.search.trials) + 1


def test_tuner_keeps_the_baseline_when_nothing_beats_it_or_the_winner_does_not_hold():
    flat, calls = _tune_with_fake_measure(winner_confirms=None)
    assert all(seconds == 0.2 for _, seconds in calls)  # no confirmation needed
    assert flat.best_settings == flat.space.baseline() and flat.speedup() == 1.0
    lucky, _ = _tune_with_fake_measure(winner_confirms=90.0)
    assert lucky.best_settings == lucky.space.baseline()
    assert lucky.best_examples_per_s == lucky.baseline_examples_per_s == 100.0
