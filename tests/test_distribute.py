"""The `sleep` and `distribute` steps (issue 13): a wait inside the graph that can travel
to tf.data service workers, and the step that hands the steps above it to them."""

from __future__ import annotations

import time

import pytest

from pipeline_core.build import BuildError, build, element_specs
from pipeline_core.export import export_code
from pipeline_core.spec import SpecError, load_spec
from pipeline_core.steps import serving_locally

SOURCE = {"type": "synthetic", "num_examples": 60, "shape": [4, 4, 3], "dtype": "uint8"}


def _spec(*steps, source=SOURCE):
    return {"source": source, "steps": list(steps)}


def _messages(spec) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def _sums(ds) -> list[float]:
    return sorted(float(x.numpy().astype("float64").sum()) for x, _ in ds)


def test_the_sleep_step_waits_per_element_and_leaves_elements_alone():
    plain = build(_spec())
    slow = build(_spec({"op": "sleep", "ms": 10}))
    start = time.perf_counter()
    got = _sums(slow)
    waited = time.perf_counter() - start
    assert got == _sums(plain)
    assert waited >= 60 * 0.010 * 0.95  # 60 elements, 10 ms before each


def test_distribute_reads_every_element_exactly_once(data_service):
    distributed = build(
        _spec(
            {"op": "map", "augmentations": [{"name": "random_brightness"}]},
            {"op": "distribute", "service": data_service},
            {"op": "batch", "batch_size": 7},
        )
    )
    local = build(
        _spec(
            {"op": "map", "augmentations": [{"name": "random_brightness"}]},
            {"op": "batch", "batch_size": 7},
        )
    )
    assert sum(int(x.shape[0]) for x, _ in distributed) == 60
    assert sum(int(x.shape[0]) for x, _ in local) == 60


def test_local_service_is_the_one_serving_this_run(data_service):
    spec = _spec({"op": "distribute"}, {"op": "batch", "batch_size": 60})
    with pytest.raises(BuildError, match=r"grpc://HOST:PORT"):
        build(spec)
    with serving_locally(data_service):
        ((features, _),) = list(build(spec))
    assert features.shape[0] == 60


def test_element_specs_of_a_distributed_design_need_no_server():
    spec = _spec({"op": "sleep", "ms": 1}, {"op": "distribute", "service": "grpc://10.255.255.1:1"})
    stages = element_specs(spec)  # never asks the (unreachable) dispatcher
    assert [s.stage for s in stages] == [
        "source (synthetic)",
        "steps[0] sleep",
        "steps[1] distribute",
    ]
    assert stages[-1].features == stages[0].features


def test_what_cannot_travel_to_workers_is_refused_with_the_fix():
    generator = {"type": "generator", "template": "random_images", "num_examples": 8}
    problems = _messages(_spec({"op": "distribute"}, source=generator))
    assert any("'generator' source is read by Python" in p and "tfrecord" in p for p in problems)
    problems = _messages(
        _spec({"op": "map", "augmentations": [{"name": "sleep", "ms": 5}]}, {"op": "distribute"})
    )
    assert any(
        p.startswith("steps[0].augmentations[0]") and '"op": "sleep"' in p for p in problems
    ), problems
    # below the distribute step it runs here, which is fine
    load_spec(_spec({"op": "distribute"}, {"op": "map", "augmentations": [{"name": "sleep"}]}))
    problems = _messages(_spec({"op": "distribute"}, {"op": "distribute"}))
    assert any("one distribute step at most" in p for p in problems)
    problems = _messages(_spec({"op": "distribute", "service": "localhost:5050"}))
    assert any(p.startswith("steps[0].service") for p in problems), problems
    problems = _messages(_spec({"op": "distribute", "worker_metrics": ["http://h:6051"]}))
    assert any(
        p.startswith("steps[0].worker_metrics") and "local workers are read without it" in p
        for p in problems
    ), problems
    remote = {"op": "distribute", "service": "grpc://h:5050"}
    problems = _messages(_spec({**remote, "worker_metrics": ["ftp://h"]}))
    assert any(p.startswith("steps[0].worker_metrics") for p in problems), problems
    load_spec(_spec({**remote, "worker_metrics": ["http://h:6051", "http://10.0.0.2:6052/"]}))


def test_export_writes_the_distribute_line_and_how_to_start_local_servers():
    remote = export_code(
        load_spec(
            _spec({"op": "sleep", "ms": 2.5}, {"op": "distribute", "service": "grpc://h:5050"})
        )
    )
    assert "ds = ds.apply(sleep(2500))  # 2.5 ms before each element" in remote
    assert (
        "ds = ds.apply(tf.data.experimental.service.distribute('distributed_epoch', "
        "'grpc://h:5050', compression='AUTO'))" in remote
    )
    local = export_code(load_spec(_spec({"op": "distribute", "workers": 3, "compression": None})))
    assert "#   python -m pipeline_core serve dispatcher --port 5050" in local
    assert "PORT = 5051, 5052, 5053" in local
    assert "'grpc://localhost:5050', compression=None))" in local
