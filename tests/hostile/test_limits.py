"""Hostile limits through the CLI (issue 10, case 8): a run stopped at its memory ceiling
is not a success."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import REPO

SPEC = {
    "name": "ceiling",
    "source": {"type": "synthetic", "num_examples": 256, "shape": [16, 16, 3]},
    "steps": [{"op": "batch", "batch_size": 16}],
}


def test_a_run_stopped_at_its_memory_ceiling_exits_3_with_the_reason(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "profile", str(spec), "--memory-mb", "64",
         "--db", str(tmp_path / "runs.sqlite")],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "memory ceiling 64 MB exceeded" in done.stderr
    assert "raise the ceiling" in done.stderr and "Traceback" not in done.stderr
    assert "stored as run" in done.stdout  # the partial run is kept
