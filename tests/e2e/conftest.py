"""End-to-end set-up: one `streamlit run app.py` server for the session, system Chromium.

The server binds 127.0.0.1 on a free port with its own data dir (a temp
`PIPELINE_LAB_HOME`). Chromium is Debian's `/usr/bin/chromium`: without it the
browser tests are skipped with the reason, unless `PIPELINE_LAB_REQUIRE_BROWSER=1`
(CI), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import REPO

CHROMIUM = os.environ.get("PIPELINE_LAB_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("PIPELINE_LAB_REQUIRE_BROWSER") == "1"
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT_S = 120


def _browser_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
        import pytest_playwright  # noqa: F401
    except ImportError as exc:
        return f"playwright/pytest-playwright not installed ({exc.name})"
    return None


def pytest_collection_modifyitems(config, items):
    problem = _browser_problem()
    for item in items:
        if "tests/e2e/" not in str(item.fspath).replace(os.sep, "/"):
            continue
        item.add_marker(pytest.mark.e2e)
        if problem and not REQUIRE:
            item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {problem}"))


@pytest.fixture(scope="session", autouse=True)
def _browser_present():
    problem = _browser_problem()
    if problem and REQUIRE:
        pytest.fail(f"PIPELINE_LAB_REQUIRE_BROWSER=1 but {problem}")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"],
    }  # fmt: skip


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": VIEWPORT}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(prefix: str = "pipeline-lab-e2e-") -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """Start `streamlit run app.py` with its own data dir; yield (URL, data dir, process).

    Fails the test when the server does not start, or when it died before the end.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    port = _free_port()
    env = {**os.environ, "PIPELINE_LAB_HOME": str(home), "PIPELINE_LAB_DB": str(home / "runs.sqlite"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "PIPELINE_LAB_WARM_SPARE": "1"}  # fmt: skip
    log = open(home / "server.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(url):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            log.close()
            tail = (home / "server.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the dashboard server did not start on {url}:\n{tail}")
        time.sleep(0.3)
    try:
        yield url, home, server
    finally:  # a failing test inside `with serve()` must not leave the server running
        died = server.poll()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    tail = (home / "server.log").read_text(errors="replace")[-3000:]
    with contextlib.suppress(OSError):  # kept to read after a failing browser test
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        shutil.copy(home / "server.log", REPO / "test-artifacts" / f"{prefix}server.log")
    shutil.rmtree(home, ignore_errors=True)
    if died is not None:  # every session's server going down is the worst failure there is
        pytest.fail(f"the dashboard server died during the e2e session (exit {died}):\n{tail}")


@pytest.fixture(scope="session")
def lab_server():
    """(base URL, data dir) of a dashboard server shared by the whole e2e session."""
    with serve() as (url, home, _server):
        yield url, home


@pytest.fixture(scope="session")
def screenshots(artifacts_dir) -> Path:
    path = artifacts_dir / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def app(lab_server, page):
    """A page opened on the dashboard, with generous timeouts (TensorFlow loads slowly here)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    page.set_default_timeout(60_000)
    page.goto(lab_server[0])
    expect(page.get_by_test_id("stApp")).to_be_visible()
    return page
