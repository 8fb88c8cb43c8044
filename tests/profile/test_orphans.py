"""No orphans: a child ends when its parent is killed (issue 10), whoever the parent is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from tests import REPO

GONE_WITHIN_S = 2.0

PARENT = textwrap.dedent(
    """
    import sys, time
    from pipeline_core.child import spawn
    from tests.profile.test_child import never_ends

    started = []
    child = spawn(never_ends, what="the test", on_end=lambda ending: None,
                  on_message=lambda kind, data: started.append(kind) or False)
    while not started:
        time.sleep(0.01)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def _gone_within(pid: int, seconds: float, alive) -> float | None:
    """Seconds until `pid` is gone (None: still there after `seconds`)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if not alive(pid):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def _kill_tree(pid: int) -> None:
    for proc in psutil.Process(pid).children(recursive=True):
        proc.kill()


def test_a_child_ends_when_its_parent_is_killed(alive):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        child_pid = int(parent.stdout.readline())
        assert alive(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        took = _gone_within(child_pid, GONE_WITHIN_S, alive)
        if took is None:
            os.kill(child_pid, signal.SIGKILL)
        assert took is not None, f"the child outlived its killed parent by {GONE_WITHIN_S} s"
    finally:
        parent.kill()


def test_a_profile_run_ends_when_the_cli_is_killed(tmp_path, alive):
    spec = {
        "name": "endless",
        "source": {"type": "synthetic", "num_examples": 64, "shape": [8]},
        "steps": [{"op": "repeat"}, {"op": "batch", "batch_size": 8}],
    }
    path = tmp_path / "endless.json"
    path.write_text(json.dumps(spec))
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "profile", str(path), "--seconds", "120",
         "--no-store"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while not children and time.monotonic() < deadline and cli.poll() is None:
            children = psutil.Process(cli.pid).children()
            time.sleep(0.1)
        assert children, "the CLI started no child process"
        time.sleep(1.0)  # let the child get going (TensorFlow imported, pipeline running)
        child_pid = children[0].pid
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(timeout=10)
        took = _gone_within(child_pid, GONE_WITHIN_S, alive)
        if took is None:
            os.kill(child_pid, signal.SIGKILL)
        assert took is not None, f"the profile child outlived the killed CLI by {GONE_WITHIN_S} s"
    finally:
        if cli.poll() is None:
            _kill_tree(cli.pid)
            cli.kill()
