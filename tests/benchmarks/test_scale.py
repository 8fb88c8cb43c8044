"""The scale-out benchmark's pipelines are what it says: each distributes after its
expensive part, and the overhead pair differs by the distribute step alone."""

from __future__ import annotations

from benchmarks import bench_scale
from pipeline_core.profile.scale import with_workers
from pipeline_core.spec import load_spec


def test_each_case_distributes_after_its_expensive_part():
    for name, steps in bench_scale.CASES.items():
        spec = load_spec(bench_scale._spec(name, steps))
        ops = [step.op for step in spec.steps]
        assert ops[-2:] == ["distribute", "batch"], name
        assert ops.index("distribute") == len(steps), name
        assert load_spec(with_workers(spec, 4)).steps[-2].workers == 4


def test_the_overhead_pair_differs_by_the_distribute_step_alone():
    steps = bench_scale.CASES[bench_scale.WAIT]
    served = load_spec(bench_scale._spec("a", steps)).to_dict()["steps"]
    here = load_spec(bench_scale._spec("a", steps, bench_scale.TAIL[1:])).to_dict()["steps"]
    assert [s for s in served if s["op"] != "distribute"] == here
