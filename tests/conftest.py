"""Shared test set-up: an isolated data dir, quiet TensorFlow, a TF fixture."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests import REPO

# Before anything imports pipeline_core or TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Idempotent: a second import of this file (e.g. as `tests.conftest`) must not
# point the session at another directory.
_HOME = Path(
    os.environ.get("PIPELINE_LAB_TEST_HOME") or tempfile.mkdtemp(prefix="pipeline-lab-tests-")
)
os.environ["PIPELINE_LAB_TEST_HOME"] = str(_HOME)
os.environ["PIPELINE_LAB_HOME"] = str(_HOME)
os.environ["PIPELINE_LAB_DB"] = str(_HOME / "runs.sqlite")
# No warm spare child in the test process (app.py under AppTest would keep one, each
# importing TensorFlow between tests); the e2e servers and the spare's own tests turn it on.
os.environ.setdefault("PIPELINE_LAB_WARM_SPARE", "0")

ARTIFACTS = REPO / "test-artifacts"
# Set by app.py (`paths.confine_to_data_roots`) for a browser session; see the fixture below.
_CONFINE = "PIPELINE_LAB_CONFINE"


@pytest.fixture(autouse=True)
def _no_live_run_left():
    """Forget the Profile page's live run after each test: AppTest sessions share the
    session-scoped resource that holds it, so one test's run showed in the next."""
    yield
    import sys

    state = sys.modules.get("pages._state")
    if state is not None:
        state.forget_live_runs()


_MAIN = sys.modules.get("__main__")  # pytest's own, before any page ran


@pytest.fixture(autouse=True)
def _main_module_restored():
    """Put pytest's `sys.modules["__main__"]` back after each test: AppTest runs a page
    script as `__main__` and leaves it there, and a later "spawn" child would then run
    that page. The module is the one seen when this file was imported, not at the start
    of each test: a module-scoped AppTest fixture runs before the first test's autouse
    fixtures."""
    yield
    if _MAIN is not None:
        sys.modules["__main__"] = _MAIN


@pytest.fixture(autouse=True)
def _confinement_restored():
    """Restore the confinement variable after each test: a test that runs app.py through
    AppTest confines this process, and later tests must keep full (CLI) access."""
    saved = os.environ.get(_CONFINE)
    yield
    if saved is None:
        os.environ.pop(_CONFINE, None)
    else:
        os.environ[_CONFINE] = saved


@pytest.fixture(scope="session")
def tf():
    """The TensorFlow module, imported once with its logs quieted."""
    from pipeline_core._tf import tf as _tf

    return _tf()


@pytest.fixture(scope="session")
def lab_home() -> Path:
    """The isolated data dir every test in this session shares."""
    return _HOME


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (screenshots, reports)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def data_service(tf) -> str:
    """A tf.data service dispatcher and one worker in this process, for the session:
    `grpc://127.0.0.1:PORT` (the worker's grpc threads need no process of their own)."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
    yield dispatcher.target
    worker._stop()
    dispatcher._stop()
