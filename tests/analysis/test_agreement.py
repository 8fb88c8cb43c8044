"""One pipeline, one number: the figures of stage analysis, tuner, recommendations and a
profile run side by side, and the reasons named when they differ (no TensorFlow)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline_core.analysis.agreement import (
    agreement,
    latest_profile_run,
    recommendation_checks,
    seeds_of,
)
from pipeline_core.analysis.recommend import Recommendation
from pipeline_core.analysis.space import search_space
from pipeline_core.analysis.stages import CONSUMER_LABEL, Stage, StageReport
from pipeline_core.analysis.tuner import tune
from pipeline_core.spec import load_spec
from pipeline_core.store import RunStore

SPEC = load_spec(
    {
        "name": "one number",
        "source": {"type": "synthetic", "num_examples": 64, "shape": [4, 4, 1]},
        "steps": [{"op": "map", "augmentations": [{"name": "sleep", "ms": 1}]}],
    }
)


def stages(delivered: float) -> StageReport:
    us = 1e6 / delivered
    rows = (
        Stage(None, "source (synthetic)", 1e6 / 10, 10.0, 10.0, "source"),
        Stage(0, "steps[0] map sleep", 1e6 / (us - 20), us - 20, us - 30, "step"),
    )
    consumer = Stage(None, CONSUMER_LABEL, delivered, us, 20.0, "consumer")
    return StageReport(spec=SPEC, stages=rows, consumer=consumer)


def tuned(baseline: float, parallel: float):
    """A real `tune` over a fake measurement: parallel map at `parallel`, else `baseline`."""

    def measure(candidate, seconds):
        return parallel if candidate.steps[0].num_parallel_calls == "autotune" else baseline

    space = search_space(SPEC, cores=2, cache_fits=lambda s, p: False)
    return tune(SPEC, space=space, budget_s=60, measure=measure, verify=(1, 2))


def rec(gain: float, baseline: float, settings=None) -> Recommendation:
    settings = settings or {"map[0].parallel": "autotune"}
    return Recommendation(
        rule="parallel_map",
        title="Run steps[0] map in parallel",
        reason="r",
        kind="speed",
        benefit="b",
        baseline_examples_per_s=baseline,
        examples_per_s=gain * baseline,
        spec=SPEC,
        settings=settings,
        rounds=((baseline, gain * baseline), (baseline, gain * baseline)),
    )


def test_agreeing_means_highest_and_lowest_within_the_tolerance():
    assert agreement(stages=stages(170.0), tune=tuned(141.0, 141.0)).spread() > 0.2
    assert not agreement(stages=stages(170.0), tune=tuned(141.0, 141.0)).agree()
    assert agreement(stages=stages(150.0), tune=tuned(141.0, 141.0)).agree()


def test_figures_measured_alike_agree_and_say_so():
    found = agreement(
        stages=stages(1000.0), tune=tuned(1040.0, 3000.0), recommendations=[rec(2.9, 980.0)]
    )
    assert found.agree() and found.explanations() == []
    assert [r["measured by"] for r in found.rows()] == [
        "stage analysis",
        "tuner, as written",
        "recommendations, as written",
    ]
    assert found.summary().startswith("The figures agree within 10%")
    assert "median of 2 windows of 2 s alternating" in found.rows()[1]["how"]
    assert found.rows()[1]["caveats"] == ""  # 2 s windows are long enough to compare


def test_short_windows_are_a_named_caveat():
    result = tuned(1000.0, 1000.0)
    short = replace(result, trial_seconds=0.1)
    (figure,) = agreement(tune=short).figures
    assert "median of 2 windows of 0.2 s" in figure.how
    assert figure.caveats and "short windows (0.2 s)" in figure.caveats[0]


def test_a_figure_off_the_others_is_named_with_a_reason():
    found = agreement(stages=stages(2459.0), tune=tuned(1307.0, 3000.0))
    assert not found.agree()
    assert "differ by 88% (more than 10%)" in found.summary()
    lines = found.explanations()
    assert len(lines) == 2 and all(
        "measured at another time on a shared machine" in x for x in lines
    )


def _store_run(store: RunStore, spec, summary) -> int:
    run = store.create_run(name=spec.name, spec=spec.to_dict())
    store.finish_run(run, status="completed", summary=summary)
    return run


def test_a_short_profile_run_is_explained(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    other = SPEC.replace(steps=[])
    _store_run(store, other, {"examples_per_s": 5.0, "batches": 7})
    run_id = _store_run(
        store,
        SPEC,
        {"examples_per_s": 789.0, "batches": 7, "elapsed_s": 0.3, "step": "none",
         "end_reason": "end of data"},
    )  # fmt: skip
    record = latest_profile_run(SPEC, store)
    assert record is not None and record.id == run_id
    found = agreement(stages=stages(2459.0), profile_run=record, spec=SPEC)
    assert not found.agree()
    (line,) = found.explanations()
    assert line.startswith(f"profile run #{run_id} is ")
    assert "only 6 batches (0.3 s) from a fresh process" in line
    assert "ended with end of data: without a repeat step a profile run covers one pass" in line


def test_a_simulated_step_is_named(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    _store_run(
        store,
        SPEC,
        {"examples_per_s": 300.0, "batches": 400, "elapsed_s": 20.0, "step": "5 ms"},
    )
    found = agreement(
        tune=tuned(1000.0, 1000.0), profile_run=latest_profile_run(SPEC, store), spec=SPEC
    )
    assert any("simulated training step (5 ms)" in x for x in found.explanations())


def test_no_profile_run_of_this_spec():
    class Empty:
        def list_runs(self):
            return []

    assert latest_profile_run(SPEC, Empty()) is None


def test_recommendations_and_tuner_tell_one_story_or_the_page_is_told_why():
    result = tuned(1000.0, 3000.0)
    assert result.improved() and result.speedup() == pytest.approx(3.0)
    assert recommendation_checks([rec(2.9, 1000.0)], result) == []
    (line,) = recommendation_checks([rec(1.68, 1000.0)], result)
    assert "measured 1.68×" in line and "at 3.00× re-measured 2×" in line
    assert "it is the tuned result" in line


def test_a_recommendation_above_the_tuned_result_is_flagged():
    flat = tuned(1000.0, 1000.0)
    assert not flat.improved()
    (line,) = recommendation_checks([rec(1.68, 1000.0)], flat)
    assert "measured 1.68×" in line and "at 1.00×" in line
    assert "the tuned result is the figure to trust" in line
    never = rec(1.5, 1000.0, settings={"cache": -1})  # not a knob of this space
    (line,) = recommendation_checks([never], flat)
    assert "did not try that change" in line


def test_seeds_are_the_speed_fixes_settings():
    quality = Recommendation("shuffle_buffer", "t", "r", "quality", "b", 1.0, 1.0, SPEC)
    assert seeds_of([rec(2.0, 100.0), quality]) == [{"map[0].parallel": "autotune"}]
