"""Analysis on real pipelines with planted costs: a `sleep` step dominates, so noise cannot
flip the verdicts (every margin below is several times what a busy machine changes)."""

from __future__ import annotations

import json

import pytest

from pipeline_core.analysis import (
    analyze_stages,
    capture_trace,
    machine_limit,
    measure_spec,
    recommend,
    single_core_spec,
    tune,
)
from pipeline_core.cli import main
from pipeline_core.spec import load_spec

FAST = [{"name": "random_flip_left_right"}]
PLANTED = {
    "source": {"type": "synthetic", "num_examples": 256, "shape": [4, 4, 1]},
    "steps": [
        {"op": "map", "augmentations": FAST},
        {"op": "map", "augmentations": [{"name": "sleep", "ms": 3}]},
        {"op": "map", "augmentations": [{"name": "random_brightness"}]},
        {"op": "batch", "batch_size": 8},
    ],
}


@pytest.fixture(scope="module")
def planted():
    return load_spec(PLANTED)


def test_stage_analysis_finds_the_planted_sleep(planted):
    report = analyze_stages(planted, seconds=0.2)
    assert [s.step_index for s in report.stages] == [None, 0, 1, 2, 3]
    worst = report.bottleneck()
    assert worst.step_index == 1 and "sleep" in worst.label
    assert report.share(worst) > 0.6
    # one sequential 3 ms sleep per example: at most ~333 examples/s from that stage on
    assert report.step(1).examples_per_s < 400
    assert report.to_dict()["bottleneck_step"] == 1


def test_examples_not_batches_are_counted(planted):
    batched = measure_spec(planted, seconds=0.2)
    assert batched.examples == 8 * batched.elements


def test_machine_limit_uses_one_thread_and_scales_by_cores(planted):
    single = single_core_spec(planted)
    assert single.options.private_threadpool_size == 1
    assert single.options.max_intra_op_parallelism == 1
    limit = machine_limit(planted, seconds=0.2, cores=2, examples_per_s=200.0)
    assert 150 < limit.single_core_examples_per_s < 400
    assert limit.limit_examples_per_s == pytest.approx(2 * limit.single_core_examples_per_s)
    assert limit.fraction() == pytest.approx(200.0 / limit.limit_examples_per_s)
    assert "of what 2 cores can do" in limit.verdict()


def test_recommendations_fire_on_a_sequential_slow_map_and_keep_a_valid_fix():
    spec = load_spec(
        {
            "source": {"type": "synthetic", "num_examples": 64, "shape": [4, 4, 1]},
            "steps": [
                {"op": "map", "augmentations": [{"name": "sleep", "ms": 3}]},
                {"op": "map", "augmentations": FAST},
                {"op": "batch", "batch_size": 8},
            ],
        }
    )
    found = recommend(spec, stages=analyze_stages(spec, seconds=0.2), seconds=0.3)
    rules = {r.rule: r for r in found}
    assert {"parallel_map", "cache_after_decode"} <= set(rules)
    for rec in found:
        assert load_spec(rec.apply().to_dict()) == rec.apply()
    assert rules["parallel_map"].gain() > 1.3
    assert rules["cache_after_decode"].gain() > 2.0


def test_tuner_apply_gives_a_valid_spec_faster_than_the_baseline():
    spec = load_spec(
        {
            "source": {"type": "synthetic", "num_examples": 64, "shape": [4, 4, 1]},
            "steps": [
                {"op": "map", "augmentations": [{"name": "sleep", "ms": 2}]},
                {"op": "batch", "batch_size": 8},
            ],
        }
    )
    result = tune(spec, budget_s=6, trial_seconds=0.25, confirm_seconds=0.4)
    tuned = result.apply()
    assert load_spec(tuned.to_dict()) == tuned and tuned != spec
    assert result.speedup() > 2.0
    assert result.search.trials[0].phase == "baseline"
    assert len(result.trials_table()) == len(result.search.trials) >= 3
    before = measure_spec(spec, seconds=0.3).examples_per_s
    after = measure_spec(tuned, seconds=0.3).examples_per_s
    assert after > 2.0 * before


def test_trace_capture_writes_a_profile_tensorboard_opens(tmp_path, planted):
    trace = capture_trace(planted, logdir=tmp_path / "trace", max_elements=3)
    assert trace.files and trace.files[0].name.endswith(".xplane.pb")
    assert trace.examples == 24
    assert f"tensorboard --logdir {tmp_path / 'trace'}" in trace.hint()


def test_cli_analyze_writes_json_naming_the_bottleneck(tmp_path, capsys):
    path = tmp_path / "planted.json"
    path.write_text(json.dumps(PLANTED))
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(path), "--json", str(out), "--seconds", "0.15"]) == 0
    data = json.loads(out.read_text())
    assert data["stages"]["bottleneck_step"] == 1
    assert set(data) == {"stages", "machine_limit", "memory"}
    assert "<- bottleneck" in capsys.readouterr().out


def test_cli_tune_and_bad_input(tmp_path, capsys):
    path = tmp_path / "planted.json"
    path.write_text(json.dumps(PLANTED))
    out = tmp_path / "tune.json"
    code = main(
        ["tune", str(path), "--budget-s", "2", "--trial-seconds", "0.15", "--json", str(out)]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["trials"] == len(data["trials_table"]) >= 1
    assert load_spec(data["best_spec"])
    assert "speedup" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": [{"op": "bogus"}]}')
    assert main(["analyze", str(bad)]) == 2
    assert "unknown op" in capsys.readouterr().err
