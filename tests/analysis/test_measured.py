"""Analysis on real pipelines with planted costs: a `sleep` step dominates, so noise cannot
flip the verdicts (every margin below is several times what a busy machine changes); and
planted augmentations cheaper than Python's cost of pulling one element, which stage
analysis must still name (it times prefixes drained, not through a Python loop)."""

from __future__ import annotations

import json

import pytest

from pipeline_core.analysis import (
    analyze_stages,
    capture_trace,
    copies_dataset,
    format_stage_table,
    machine_limit,
    measure_dataset,
    measure_spec,
    recommend,
    single_core_spec,
    tune,
)
from pipeline_core.analysis.machine import MachineLimit, copies_that_fit
from pipeline_core.analysis.tuner import _candidates
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
    assert report.consumer is not None and report.rows[-1] is report.consumer
    worst = report.bottleneck()
    assert worst.step_index == 1 and "sleep" in worst.label
    assert report.share(worst) > 0.6
    # one sequential 3 ms sleep per example: at most ~333 examples/s from that stage on
    assert report.step(1).examples_per_s < 400
    assert report.delivered.examples_per_s < 400
    assert report.to_dict()["bottleneck_step"] == 1
    assert [s["kind"] for s in report.to_dict()["stages"]] == [
        "source", "step", "step", "step", "step", "consumer"
    ]  # fmt: skip


def _images_with(augmentation):
    """NumPy 128x128 RGB images (cheap to read) -> one planted map -> batch 32."""
    return load_spec(
        {
            "source": {"type": "numpy", "num_examples": 512, "shape": [128, 128, 3],
                       "dtype": "uint8"},
            "steps": [{"op": "map", "augmentations": [augmentation]},
                      {"op": "batch", "batch_size": 32}],
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    "augmentation",
    [{"name": "jpeg_quality"}, {"name": "random_rotation"}],
    ids=["jpeg_quality", "random_rotation"],
)
def test_a_planted_cost_below_the_consumers_is_named_not_the_source(augmentation):
    """jpeg_quality (~130 µs) and random_rotation (~400 µs) cost less per image than a
    Python loop's next() (~100-250 µs here); timed through such a loop, the source was
    charged that cost and named the bottleneck about half the time."""
    spec = _images_with(augmentation)
    report = analyze_stages(spec, seconds=0.3, rounds=3)
    worst = report.bottleneck()
    assert worst.step_index == 0, format_stage_table(report)
    source = report.step(None)
    assert source.added_us_per_example < worst.added_us_per_example / 3, format_stage_table(report)


def test_examples_not_batches_are_counted(planted):
    batched = measure_spec(planted, seconds=0.2)
    assert batched.mode == "consumer" and batched.examples == 8 * batched.elements
    drained = measure_spec(planted, seconds=0.2, mode="drained")
    assert drained.examples == 8 * drained.elements


def test_short_last_batches_count_what_they_hold():
    spec = load_spec(
        {
            "source": {"type": "synthetic", "num_examples": 100, "shape": [2]},
            "steps": [{"op": "batch", "batch_size": 32}],
        }
    )
    drained = measure_spec(spec, seconds=0.1, warmup_s=0.05, mode="drained")
    # a pull drains 4 batches = one epoch of 32 + 32 + 32 + 4 examples
    assert drained.examples == 25 * drained.elements
    single = measure_spec(spec.replace(steps=[]), seconds=0.1, warmup_s=0.05, mode="drained")
    assert single.examples == single.elements and single.examples % 16 == 0


def test_machine_limit_uses_one_thread_and_scales_by_cores(planted):
    single = single_core_spec(planted)
    assert single.options.private_threadpool_size == 1
    assert single.options.max_intra_op_parallelism == 1
    limit = machine_limit(planted, seconds=0.2, cores=2, examples_per_s=200.0)
    assert 150 < limit.single_core_examples_per_s < 400
    assert limit.cores_limit_examples_per_s == pytest.approx(2 * limit.single_core_examples_per_s)
    assert limit.bound_by() == "cores"  # a Python loop pulls ready elements far faster
    assert limit.limit_examples_per_s == limit.cores_limit_examples_per_s
    assert limit.fraction() == pytest.approx(200.0 / limit.limit_examples_per_s)
    assert "of what 2 cores can do" in limit.verdict()


def test_the_cores_copies_run_side_by_side_on_one_thread_each(planted):
    """A 3 ms sequential sleep an example: one copy makes at most ~333 examples/s, so
    two copies that ran in turn (or shared one thread) could not pass ~333 together."""
    one = copies_dataset(planted, 1)
    two = copies_dataset(planted, 2)
    assert one.options().threading.private_threadpool_size == 1
    assert two.options().threading.private_threadpool_size == 2
    assert two.options().threading.max_intra_op_parallelism == 1
    alone = measure_dataset(one, batched=True, seconds=0.5).examples_per_s
    together = measure_dataset(two, batched=True, seconds=0.5).examples_per_s
    assert 150 < alone < 400
    assert together > 1.6 * alone
    # a finite spec (256 examples, one pass) is repeated, so a window never runs out
    assert measure_dataset(two, batched=True, seconds=1.2).exhausted is False


def test_fewer_copies_run_side_by_side_when_their_buffers_would_not_fit(planted):
    from types import SimpleNamespace

    def estimate(per_copy_mb: float, available_mb: float):
        return SimpleNamespace(
            total_bytes=per_copy_mb * 2**20, available_bytes=available_mb * 2**20
        )

    assert copies_that_fit(planted, 2, estimate=estimate(100, 1000)) == 2
    assert copies_that_fit(planted, 4, estimate=estimate(300, 1000)) == 1  # 500 MB of room
    assert copies_that_fit(planted, 4, estimate=estimate(200, 1000)) == 2
    assert copies_that_fit(planted, 2, estimate=estimate(900, 1000)) == 1  # never fewer than one
    assert copies_that_fit(planted, 2, estimate=estimate(0, 1000)) == 2
    assert copies_that_fit(planted, 2, estimate=estimate(float("inf"), 1000)) == 1
    # the planted spec holds a few KB: every core gets its copy
    assert copies_that_fit(planted, 2) == 2


def test_a_cheap_pipeline_is_limited_by_its_consumer_not_the_cores():
    """NumPy rows cost a few µs; pulling each in Python costs ~100 µs on one thread."""
    spec = load_spec({"source": {"type": "numpy", "num_examples": 256, "shape": [2]}})
    # Quiet, the copies read 0.91-1.07 of the loop's rate (0.2-0.5 s windows); a CI run
    # once read under 0.8 while the other core was busy. The claim is what the machine
    # can do, so the best of three measurements holds it.
    for _ in range(3):
        limit = machine_limit(spec, seconds=0.3, cores=2)
        if limit.bound_by() == "consumer":
            break
    assert limit.bound_by() == "consumer"
    # the cores' copies are pulled by one loop too, so their rate comes near the loop's own
    assert limit.cores_limit_examples_per_s >= 0.8 * limit.consumer_examples_per_s
    assert limit.limit_examples_per_s == min(
        limit.cores_limit_examples_per_s, limit.consumer_examples_per_s
    )
    assert "of what one Python loop can pull" in limit.verdict()


def test_a_limit_is_named_the_consumers_when_the_cores_copies_come_near_the_loops_rate():
    def limit(cores_rate: float) -> MachineLimit:
        return MachineLimit(
            single_core_examples_per_s=cores_rate / 2,
            cores=2,
            examples_per_s=500.0,
            consumer_examples_per_s=1000.0,
        )

    assert limit(500.0).bound_by() == "cores"
    assert limit(500.0).limit_examples_per_s == 500.0
    assert limit(850.0).bound_by() == "consumer"
    assert limit(850.0).limit_examples_per_s == 850.0
    assert "850 examples/s" in limit(850.0).verdict()
    assert limit(1200.0).bound_by() == "consumer"
    assert limit(1200.0).limit_examples_per_s == 1000.0


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
    result = tune(spec, budget_s=12, trial_seconds=0.25, verify=(1, 2))
    tuned = result.apply()
    assert load_spec(tuned.to_dict()) == tuned and tuned != spec
    assert result.improved() and result.speedup() > 2.0
    assert result.search.trials[0].phase == "baseline"
    assert len(result.trials_table()) == len(result.search.trials) >= 3
    # as written, the fastest trial, and the simplest near it when that is another trial
    assert [r.trial for r in result.verified] == _candidates(result.search, 1)
    assert {len(r.figures) for r in result.verified} == {2} and len(result.verified) in (2, 3)
    assert result.story()[0].startswith("Tuned: ")
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
    assert data["story"] and data["story"][-1].startswith(f"{data['trials']} trials of a")
    printed = capsys.readouterr().out
    assert data["story"][0] in printed and "re-measured" in printed
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": [{"op": "bogus"}]}')
    assert main(["analyze", str(bad)]) == 2
    assert "unknown op" in capsys.readouterr().err


def test_a_cached_pipeline_warms_up_over_one_pass_even_when_it_repeats():
    from pipeline_core.analysis.measure import cache_pass_examples

    source = {"type": "synthetic", "num_examples": 40, "shape": [2]}
    cached = load_spec(
        {
            "source": source,
            "steps": [
                {"op": "map", "augmentations": [{"name": "sleep", "ms": 5}]},
                {"op": "cache"},
                {"op": "repeat"},
                {"op": "batch", "batch_size": 8},
            ],
        }
    )
    assert cache_pass_examples(cached) == 40
    batched_first = cached.replace(steps=[{"op": "batch", "batch_size": 8}, {"op": "cache"}])
    assert cache_pass_examples(batched_first) == 40
    assert cache_pass_examples(cached.replace(steps=[])) == 1
    # the window reads the cache: far above one 5 ms sleep per example (200 examples/s)
    assert measure_spec(cached, seconds=0.2).examples_per_s > 2000
