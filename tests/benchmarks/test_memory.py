"""The memory benchmark compares like with like: each buffer case's two pipelines differ by
the buffer alone, and the estimate tells them apart. Times and measures nothing."""

from __future__ import annotations

import numpy as np

from benchmarks import bench_memory
from pipeline_core.spec import load_spec


def test_each_case_differs_by_its_buffer_alone(tmp_path):
    cases = bench_memory.cases(str(tmp_path))
    assert len({c["kind"] for c in cases}) == len(cases)
    for case in cases:
        with_, without = load_spec(case["with"]), load_spec(case["without"])
        assert with_.options == without.options, case["kind"]
        if with_.source == without.source:  # a step added or changed ...
            assert len(with_.steps) - len(without.steps) in (0, 1), case["kind"]
        else:  # ... or a source of another size
            assert with_.steps == without.steps, case["kind"]


def test_the_estimate_tells_shared_buffers_from_copies(tmp_path):
    by_kind = {c["kind"]: c for c in bench_memory.cases(str(tmp_path))}
    for kind, shared in [
        ("memory cache over a numpy source (shared)", True),
        ("shuffle of a whole numpy source (shared)", True),
        ("memory cache after a map over numpy (copied)", False),
    ]:
        with_mb, notes = bench_memory._estimate(by_kind[kind]["with"])
        without_mb, _ = bench_memory._estimate(by_kind[kind]["without"])
        assert (with_mb - without_mb < 1) == shared, kind
        assert any("shares the source's memory" in n for n in notes) == shared, kind


def test_npy_files_are_written_or_left_sparse(tmp_path):
    written, sparse = tmp_path / "w.npy", tmp_path / "s.npy"
    bench_memory._write_npy(written, 3, sparse=False)
    bench_memory._write_npy(sparse, 3, sparse=True)
    assert np.load(written, mmap_mode="r").shape == (3, 64, 64, 3)
    assert np.load(written).std() > 0.1 and not np.load(sparse).any()
    assert sparse.stat().st_blocks * 512 < written.stat().st_size  # holes: no blocks on disk
