"""AppTest: settings stay when the user visits another page and comes back (issue 11):
Streamlit drops the value of a widget a page run does not draw; `_state.kept` keeps it."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import app  # noqa: E402


def _visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_profile_settings_survive_a_visit_to_another_page():
    at = _visit(app(), "pages/profile.py")
    at.number_input(key="profile.batches").set_value(150).run()
    at.selectbox(key="profile.step").set_value("fixed time (ms)").run()
    at.number_input(key="profile.step_ms").set_value(30.0).run()
    at.number_input(key="profile.memory_mb").set_value(4096).run()
    _visit(at, "pages/runs.py")
    _visit(at, "pages/profile.py")
    assert at.number_input(key="profile.batches").value == 150
    assert at.selectbox(key="profile.step").value == "fixed time (ms)"
    assert at.number_input(key="profile.step_ms").value == 30.0
    assert at.number_input(key="profile.memory_mb").value == 4096
    assert not at.warning, [w.value for w in at.warning]  # no "value set twice" warning
    at.radio(key="profile.limit").set_value("seconds").run()
    at.number_input(key="profile.seconds").set_value(25.0).run()
    _visit(at, "pages/runs.py")
    _visit(at, "pages/profile.py")
    assert at.radio(key="profile.limit").value == "seconds"
    assert at.number_input(key="profile.seconds").value == 25.0


def test_analyze_and_preview_settings_survive_a_visit_to_another_page():
    at = _visit(app(), "pages/analyze.py")
    at.slider(key="analyze.seconds").set_value(1.5).run()
    at.number_input(key="analyze.rounds").set_value(3).run()
    at.checkbox(key="analyze.batch").check().run()
    _visit(at, "pages/runs.py")
    _visit(at, "pages/analyze.py")
    assert at.slider(key="analyze.seconds").value == 1.5
    assert at.number_input(key="analyze.rounds").value == 3
    assert at.checkbox(key="analyze.batch").value is True


def test_a_value_changed_just_before_a_page_change_is_kept():
    """The value typed last arrives with the other page's run, which never draws it."""
    at = _visit(app(), "pages/profile.py")
    at.selectbox(key="profile.step").set_value("fixed time (ms)").run()
    at.number_input(key="profile.step_ms").set_value(30.0)
    at.number_input(key="profile.batches").set_value(150)
    _visit(at, "pages/runs.py")  # no run of the Profile page in between
    _visit(at, "pages/profile.py")
    assert at.number_input(key="profile.step_ms").value == 30.0
    assert at.number_input(key="profile.batches").value == 150


def test_a_setting_outside_its_bounds_is_put_back_with_the_reason_under_it():
    at = _visit(app(), "pages/profile.py")
    at.number_input(key="profile.batches").set_value(150).run()
    at.number_input(key="profile.batches").set_value(-5).run()
    assert at.number_input(key="profile.batches").value == 150
    captions = [c.value for c in at.caption]
    assert any("Batches must be at least 1: -5 was put back to 150" in c for c in captions)
    at.run()  # said once
    assert not any("put back" in c.value for c in at.caption)
    at = _visit(app(), "pages/preview.py")
    at.number_input(key="preview.n").set_value(99).run()
    assert at.number_input(key="preview.n").value == 8
    assert any("between 1 and 32: 99 was put back to 8" in c.value for c in at.caption)
