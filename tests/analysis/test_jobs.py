"""Analysis job functions: progress per stage / trial, results that survive pickling.

The functions are called in this process here (the child-process path is
covered by tests/profile/test_isolate.py and the page's AppTest).
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from pipeline_core.analysis import JOBS, run_analysis, start_analysis
from pipeline_core.analysis.jobs import Progress, recommend_job, stages_job, tune_job
from pipeline_core.spec import load_spec

PLANTED = load_spec(
    {
        "name": "planted sleep",
        "source": {"type": "synthetic", "num_examples": 32, "shape": [4, 4, 1]},
        "steps": [
            {"op": "map", "augmentations": [{"name": "random_flip_left_right"}]},
            {"op": "map", "augmentations": [{"name": "sleep", "ms": 10}]},
            {"op": "batch", "batch_size": 8},
        ],
    }
)


def test_stages_job_reports_each_stage_then_the_machine_limit(tf):
    seen: list[Progress] = []
    found = stages_job(PLANTED.to_json(), seconds=0.15, progress=seen.append)
    rows = [p.row["stage"] for p in seen if p.row]
    assert rows == [s.label for s in found.report.rows] and len(rows) == 5
    assert rows[-1].startswith("consumer")
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 5, 6] and seen[-1].fraction == 1.0
    assert found.report.bottleneck().step_index == 1
    back = pickle.loads(pickle.dumps(found))
    assert back.report.to_dict() == found.report.to_dict()
    assert back.limit == found.limit


def test_recommendations_cross_processes_without_their_fix_function(tf):
    stages = stages_job(PLANTED.to_json(), seconds=0.05, progress=lambda p: None).report
    seen: list[Progress] = []
    recs = recommend_job(
        PLANTED.to_json(), seconds=0.1, rounds=1, stages=stages, progress=seen.append
    )
    assert recs and seen and all(r.transform is None for r in recs)
    back = pickle.loads(pickle.dumps(recs))
    assert [r.apply() for r in back] == [r.spec for r in recs]
    speed = next(r for r in back if r.kind == "speed")
    assert speed.apply(PLANTED) == speed.spec  # re-applied through its tuner settings
    quality = replace(speed, settings=None)  # a fix that is no point of the tuner's space
    with pytest.raises(ValueError, match="run recommend"):
        quality.apply(PLANTED)


def test_tune_job_streams_one_row_per_trial(tf):
    seen: list[Progress] = []
    result = tune_job(PLANTED.to_json(), budget_s=1.0, trial_seconds=0.05, progress=seen.append)
    searched = [p.row["trial"] for p in seen if p.row["phase"] != "verify"]
    assert searched == [t.index for t in result.search.trials]
    assert seen[0].row["phase"] == "baseline" and "map[1].parallel" in seen[0].row
    assert pickle.loads(pickle.dumps(result)).apply() == result.apply()


def test_every_job_kind_names_its_work_and_has_a_timeout():
    assert set(JOBS) == {"stages", "recommend", "tune", "trace", "memory"}
    for kind in JOBS.values():
        assert kind.what and kind.timeout_s(PLANTED, {}) > 60


def test_an_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="should be one of stages, recommend"):
        start_analysis("profile", PLANTED)


def test_a_failing_pipeline_fails_the_job_with_its_message(tmp_path):
    from pipeline_core.isolate import JobFailed

    missing = load_spec({"source": {"type": "csv", "path": str(tmp_path / "no.csv")}})
    with pytest.raises(JobFailed, match="the short memory run failed: .*no.csv"):
        run_analysis("memory", missing, max_batches=2)
