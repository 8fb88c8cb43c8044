"""AppTest of the Analyze & tune page: stages, recommendations, tuner and apply."""

from __future__ import annotations

import pytest

from pipeline_core.spec import load_spec
from tests.conftest import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 120
PLANTED = load_spec(
    {
        "name": "planted sleep",
        "source": {"type": "synthetic", "num_examples": 64, "shape": [4, 4, 1]},
        "steps": [
            {"op": "map", "augmentations": [{"name": "random_flip_left_right"}]},
            {"op": "map", "augmentations": [{"name": "sleep", "ms": 3}]},
            {"op": "batch", "batch_size": 8},
        ],
    }
)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _text(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


@pytest.fixture(scope="module")
def analyze_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = PLANTED
    at.run()
    _ok(at)
    return at


def test_default_load_shows_memory_estimate_and_prompts():
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT).run()
    _ok(at)
    assert at.title[0].value == "Analyze & tune"
    assert any("held by buffers" in s.value for s in at.success)
    assert at.dataframe, "the memory parts are listed"


def test_stage_analysis_names_the_planted_bottleneck(analyze_page):
    analyze_page.slider(key="analyze.seconds").set_value(0.1)
    analyze_page.button(key="analyze.run_stages").click().run()
    _ok(analyze_page)
    assert "Slowest stage: steps[1] map sleep" in _text(analyze_page)
    assert "Machine limit:" in _text(analyze_page)
    assert {c.proto.id for c in analyze_page.get("plotly_chart")}  # waterfall and gauge drawn
    assert len(analyze_page.get("plotly_chart")) == 2


def test_recommendations_apply_changes_the_design(analyze_page):
    analyze_page.button(key="analyze.run_recs").click().run()
    _ok(analyze_page)
    assert "Run steps[1] map in parallel" in _text(analyze_page)
    analyze_page.button(key="analyze.apply_rec_0").click().run()
    _ok(analyze_page)
    spec = analyze_page.session_state["lab.spec"]
    assert spec != PLANTED and load_spec(spec.to_dict()) == spec
    assert any("Applied" in s.value for s in analyze_page.success)
    analyze_page.session_state["lab.spec"] = PLANTED


def test_tuner_shows_trials_and_applies_the_best(analyze_page):
    analyze_page.session_state["lab.spec"] = PLANTED
    analyze_page.slider(key="analyze.budget").set_value(3)
    analyze_page.slider(key="analyze.trial_s").set_value(0.1)
    analyze_page.button(key="analyze.run_tune").click().run()
    _ok(analyze_page)
    assert analyze_page.metric[1].label == "Tuned"
    trials = analyze_page.dataframe[0].value
    assert len(trials) >= 2 and "examples_per_s" in trials
    assert len(analyze_page.get("plotly_chart")) >= 2
    analyze_page.button(key="analyze.apply_best").click().run()
    _ok(analyze_page)
    tuned = analyze_page.session_state["lab.spec"]
    assert tuned != PLANTED and load_spec(tuned.to_dict()) == tuned


def test_bad_spec_error_is_shown_without_traceback(tmp_path):
    missing = load_spec(
        {"source": {"type": "csv", "path": str(tmp_path / "missing.csv")}, "steps": []}
    )
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = missing
    at.run()
    assert not at.exception
    at.button(key="analyze.run_stages").click().run()
    assert not at.exception
    assert any("failed" in e.value for e in at.error)
