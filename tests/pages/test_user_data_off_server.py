"""The server process never touches user data: element specs and memory estimates come
from a child process (`pages/_jobs.py`), and a hostile file cannot grow the server.

AppTest runs a page's script in this test process, as the Streamlit server would, so
what the page computes in-process is patched here to fail; what a child computes is
not (the child imports the real functions).
"""

from __future__ import annotations

import zipfile

import numpy as np
import psutil
import pytest

from pipeline_core.spec import default_spec, load_spec
from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import pending, settle  # noqa: E402

TIMEOUT = 90
MB = 1024 * 1024
HUGE_MB = 512  # decoded size of the hostile archive's features (about 0.5 MB on disk)
SERVER_GROWTH_MB = 150  # what rendering may add to the server's memory (decoding: >= 512)


@pytest.fixture()
def data_folder(tmp_path_factory):
    """A folder inside the data dir: a browser session (app.py) reads nothing outside it."""
    import tempfile
    from pathlib import Path

    from pipeline_core.paths import data_dir

    return Path(tempfile.mkdtemp(prefix="off-server-", dir=data_dir()))


def _in_the_server(*args, **kwargs):
    raise AssertionError("the server process read the user's data")


def _page(name: str, spec) -> AppTest:
    """The page through app.py (its links to other pages need the app's navigation)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = spec
    at.run()
    return at.switch_page(f"pages/{name}.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


def _no_server_reads(monkeypatch) -> None:
    """What the pages called in the server before: now it fails if called there."""
    import pipeline_core.analysis as analysis
    import pipeline_core.analysis.memory as memory
    import pipeline_core.build as build
    import pipeline_core.export as export

    monkeypatch.setattr(build, "element_specs", _in_the_server)
    monkeypatch.setattr(export, "export_code", _in_the_server)
    for name in ("memory_estimate", "check_memory", "stage_bytes"):
        monkeypatch.setattr(memory, name, _in_the_server)
    monkeypatch.setattr(analysis, "check_memory", _in_the_server)
    monkeypatch.setattr(analysis, "memory_estimate", _in_the_server)


def test_design_element_specs_come_from_a_child_and_the_page_waits_without_blocking(
    monkeypatch,
):
    _no_server_reads(monkeypatch)
    spec = default_spec().replace(name="element specs made in a child")
    at = _page("design", spec)
    _ok(at)
    assert pending(at), "the first run shows the job, not an empty table"
    assert any("Building the pipeline in a child process" in i.value for i in at.info)
    assert not at.dataframe
    assert any(c.language == "json" for c in at.code), "the rest of the page is drawn"
    assert not any(c.language == "python" for c in at.code), "the code comes with the specs"
    settle(at)
    _ok(at)
    assert not _errors(at), _errors(at)
    stages = at.dataframe[0].value
    assert len(stages) == len(spec.steps) + 1
    assert list(stages["after"])[0] == "source (synthetic)"
    assert any(c.language == "python" and "tf.data" in c.value for c in at.code)
    again = _page("design", spec)  # a second visit: the kept result, at once
    assert not pending(again) and len(again.dataframe[0].value) == len(stages)


def test_profile_and_analyze_memory_estimates_come_from_a_child(monkeypatch):
    _no_server_reads(monkeypatch)
    spec = default_spec().replace(name="memory estimated in a child")
    at = _page("profile", spec)
    _ok(at)
    assert pending(at)
    assert at.button(key="profile.start").disabled is False, "Start works meanwhile"
    settle(at)
    _ok(at)
    assert "Memory estimate: **30.0 MiB**" in _captions(at)
    analyze = settle(_page("analyze", spec))
    _ok(analyze)
    assert any("held by buffers" in s.value for s in analyze.success)
    assert analyze.dataframe, "the memory parts are listed"


def test_a_crashed_child_shows_its_reason_and_try_again_works(monkeypatch):
    import pipeline_core.child as child

    monkeypatch.setattr(child, "default_memory_limit_mb", lambda: 1)
    spec = default_spec().replace(name="element specs at a 1 MB ceiling")
    at = settle(_page("design", spec))
    _ok(at)
    assert any(
        e.startswith("Stopped: memory ceiling 1 MB exceeded during reading the element specs")
        for e in _errors(at)
    ), _errors(at)
    monkeypatch.undo()
    settle(at.button(key="design.element_specs.retry").click().run())
    _ok(at)
    assert not _errors(at) and len(at.dataframe[0].value) == len(spec.steps) + 1


def _huge_npz(path) -> str:
    """An .npz whose features decode to `HUGE_MB` MB of float32 zeros; tiny on disk."""
    features = np.zeros((HUGE_MB * MB // (64 * 64 * 3 * 4), 64, 64, 3), np.float32)
    np.savez_compressed(path, x=features, y=np.zeros(len(features), np.int64))
    return str(path)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


def test_a_huge_compressed_archive_never_grows_the_server(data_folder):
    path = _huge_npz(data_folder / "huge.npz")
    assert (data_folder / "huge.npz").stat().st_size < 8 * MB
    steps = [{"op": "batch", "batch_size": 32}]  # no map: the exported code plans, no build
    hostile = load_spec({"name": "huge", "source": {"type": "numpy", "path": path}, "steps": steps})
    small = default_spec().replace(name="warm-up before measuring")
    for name in ("design", "profile"):  # load what the pages import before measuring
        settle(_page(name, small))
    before = _rss_mb()
    design = settle(_page("design", hostile))
    profile = settle(_page("profile", hostile))
    grown = _rss_mb() - before
    _ok(design)
    _ok(profile)
    assert grown < SERVER_GROWTH_MB, f"the server grew by {grown:.0f} MB"
    assert design.dataframe[0].value["features"].iloc[-1] == "float32 (None, 64, 64, 3)"
    assert "Memory estimate: **" in _captions(profile), _captions(profile)


def test_a_corrupt_archive_is_a_reason_on_both_pages(data_folder):
    path = data_folder / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 64)
    assert not zipfile.is_zipfile(path)
    spec = load_spec({"name": "corrupt", "source": {"type": "numpy", "path": str(path)}})
    design = settle(_page("design", spec))
    _ok(design)
    assert any(
        e.startswith("The pipeline cannot be built: source (numpy): ") and str(path) in e
        for e in _errors(design)
    ), _errors(design)
    assert not design.dataframe
    profile = settle(_page("profile", spec))
    _ok(profile)
    assert "Memory estimate unavailable (" in _captions(profile)
    assert str(path) in _captions(profile)
    # the design cannot be built, so Start is off, with the reason
    assert profile.button(key="profile.start").disabled is True
    assert any(e.startswith("Start is off: the design cannot be built") for e in _errors(profile))
