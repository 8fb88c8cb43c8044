"""AppTest of the Analyze & tune page: stages, recommendations, tuner and apply.

Every measurement runs as a job in a child process. AppTest cannot fire the
page's `run_every` timer, so `_finish` re-runs the script until the job's
Cancel button is gone (the job ended and the page drew its results).
"""

from __future__ import annotations

import logging
import os
import signal
import time

import pandas as pd
import pytest

from pipeline_core.analysis import JOBS
from pipeline_core.analysis.jobs import JobKind
from pipeline_core.spec import load_spec
from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import pending, settle  # noqa: E402

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


def crash_job(spec_json, *, progress, **options):
    """A job whose pipeline segfaults (module-level: the child imports it by name)."""
    progress(None)
    os.kill(os.getpid(), signal.SIGSEGV)


def _running(at: AppTest) -> bool:
    """An analysis job runs, or the memory estimate is still being made."""
    return any(b.key == "analyze.cancel" for b in at.button) or pending(at)


def _finish(at: AppTest, limit_s: float = TIMEOUT) -> AppTest:
    """Re-run the page until the running job has ended and its outcome is drawn."""
    deadline = time.monotonic() + limit_s
    while _running(at):
        assert time.monotonic() < deadline, "the analysis job did not end"
        time.sleep(0.3)
        at.run()
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _text(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


@pytest.fixture(scope="module")
def analyze_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = PLANTED
    settle(at.run())
    _ok(at)
    return at


def test_default_load_shows_memory_estimate_and_prompts():
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT).run()
    settle(at)  # the estimate is made in a child process
    _ok(at)
    assert at.title[0].value == "Analyze & tune"
    assert any("held by buffers" in s.value for s in at.success)
    assert at.dataframe, "the memory parts are listed"


def test_stage_analysis_names_the_planted_bottleneck(analyze_page):
    analyze_page.slider(key="analyze.seconds").set_value(0.1)
    analyze_page.button(key="analyze.run_stages").click().run()
    _ok(analyze_page)
    assert _running(analyze_page), "the job runs in a child; the page shows its progress"
    assert analyze_page.button(key="analyze.run_tune").disabled  # one job at a time
    _finish(analyze_page)
    _ok(analyze_page)
    assert "Slowest stage: steps[1] map sleep" in _text(analyze_page)
    assert "Machine limit:" in _text(analyze_page)
    assert {c.proto.id for c in analyze_page.get("plotly_chart")}  # waterfall and gauge drawn
    assert len(analyze_page.get("plotly_chart")) == 2


def test_recommendations_apply_changes_the_design(analyze_page):
    analyze_page.button(key="analyze.run_recommend").click().run()
    _finish(analyze_page)
    _ok(analyze_page)
    assert "Run steps[1] map in parallel" in _text(analyze_page)
    analyze_page.button(key="analyze.apply_rec_0").click().run()
    _ok(analyze_page)
    spec = analyze_page.session_state["lab.spec"]
    assert spec != PLANTED and load_spec(spec.to_dict()) == spec
    assert any("Applied" in s.value for s in analyze_page.success)
    analyze_page.session_state["lab.spec"] = PLANTED


def _frame(at: AppTest, column: str):
    """The dataframe on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _ex_per_s(text: str) -> float:
    return float(text.split(" ")[0].replace(",", ""))


def _same(table: float, shown: float) -> bool:
    """A table figure (one decimal) and the same figure shown without decimals."""
    return abs(table - shown) <= 0.5 + 1e-6


def assert_one_story(at: AppTest) -> None:
    """The tuner's headline, metrics, table and the recommendations agree (or say why not)."""
    trials = _frame(at, "outcome")
    as_written, tuned = at.metric[0], at.metric[1]
    base, best = _ex_per_s(as_written.value), _ex_per_s(tuned.value)
    outcome = dict(zip(trials["outcome"], trials["re-measured ex/s"], strict=True))
    remeasured = trials["re-measured ex/s"].dropna()
    if "tuned" in outcome:
        headline = next(s.value for s in at.success if s.value.startswith("Tuned: "))
        # the headline, the metrics and the table show the same re-measured figures
        # (the table shows one decimal, the metrics none: 270.5 in the table may be 271)
        assert _same(outcome["tuned"], best) and _same(outcome["as written"], base)
        assert f"{best:,.0f} examples/s, {tuned.delta}" in headline
        assert f"({base:,.0f} examples/s)" in headline
        assert _same(max(remeasured), best)  # nothing re-measured faster
    else:
        headline = next(i.value for i in at.info if "as written stays" in i.value)
        assert best == base and _same(outcome["kept (as written)"], best)
        assert f"({base:,.0f} examples/s" in headline
        assert all(x <= base * 1.03 + 1 for x in remeasured)  # none beat it by the margin
    fastest = int(trials.loc[trials["examples_per_s"].idxmax(), "trial"])
    winner = trials.loc[trials["outcome"].isin(["tuned", "kept (as written)"]), "trial"]
    if fastest != int(winner.iloc[0]) and not pd.isna(
        trials.loc[trials["trial"] == fastest, "re-measured ex/s"].iloc[0]
    ):
        assert any(f"Trial #{fastest} had the fastest single window" in w.value for w in at.warning)
    # a recommendation that claims more than the tuned speedup is explained on the page
    speedup = best / base
    text = _text(at)
    for line in text.splitlines():
        if line.startswith("**") and "× examples/s" in line:
            title = line.split("**")[1]
            gain = float(line.split("— ")[1].split("×")[0])
            if gain > speedup * 1.1 * 1.01:  # 1%: both figures are rounded on the page
                assert f"“{title}” measured {gain:.2f}×" in text, (title, gain, speedup)


def test_tuner_headline_table_and_recommendations_tell_one_story(analyze_page):
    analyze_page.session_state["lab.spec"] = PLANTED
    analyze_page.run()
    for job in ("stages", "recommend"):  # stage costs feed the rules
        analyze_page.button(key=f"analyze.run_{job}").click().run()
        _finish(analyze_page)
        _ok(analyze_page)
    assert "Run steps[1] map in parallel" in _text(analyze_page)
    analyze_page.slider(key="analyze.budget").set_value(16)
    analyze_page.slider(key="analyze.trial_s").set_value(0.2)
    analyze_page.button(key="analyze.run_tune").click().run()
    _finish(analyze_page)
    _ok(analyze_page)
    assert analyze_page.metric[1].label == "Tuned (re-measured)"
    trials = _frame(analyze_page, "outcome")
    assert len(trials) >= 3 and trials["phase"].iloc[1] == "seed"  # starts from the fixes
    assert trials["re-measured ex/s"].notna().sum() >= 2  # baseline + candidates verified
    assert len(analyze_page.get("plotly_chart")) >= 2
    assert_one_story(analyze_page)
    # one pipeline, one number: the figures of this spec side by side
    figures = _frame(analyze_page, "measured by")
    assert list(figures["measured by"])[:3] == [
        "stage analysis",
        "tuner, as written",
        "recommendations, as written",
    ]
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
    _finish(at)
    assert not at.exception
    assert any("Stage analysis failed" in e.value for e in at.error)


def test_a_crashing_pipeline_is_a_failure_and_the_page_keeps_working(monkeypatch):
    monkeypatch.setitem(JOBS, "stages", JobKind(crash_job, "stage analysis", lambda s, o: 60))
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = PLANTED
    at.run()
    at.button(key="analyze.run_stages").click().run()
    _finish(at)
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The pipeline crashed (signal 11 SIGSEGV) during stage analysis"
    ]
    assert not at.button(key="analyze.run_stages").disabled  # the page still works
    assert any("held by buffers" in s.value for s in at.success)  # later sections drawn


def test_cancel_ends_the_job_and_says_so():
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = PLANTED
    settle(at.run())
    at.slider(key="analyze.budget").set_value(300)
    at.button(key="analyze.run_tune").click().run()
    assert _running(at)
    at.button(key="analyze.cancel").click().run()
    assert not _running(at) and not at.exception and not at.error
    assert any("Tuning was cancelled" in i.value for i in at.info)
    assert not at.button(key="analyze.run_tune").disabled


def test_a_bug_says_it_is_one_and_a_user_mistake_shows_its_message(monkeypatch, caplog, tmp_path):
    def start_analysis(kind, spec, **options):
        raise TypeError("start() got an unexpected keyword argument 'x'")

    monkeypatch.setattr("pipeline_core.analysis.start_analysis", start_analysis)
    missing = tmp_path / "missing.csv"  # the user's mistake: the memory estimate says so
    spec = load_spec({"name": "a missing csv", "source": {"type": "csv", "path": str(missing)}})
    at = AppTest.from_file(str(REPO / "pages" / "analyze.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = spec
    settle(at.run())  # the estimate is made in a child process
    with caplog.at_level(logging.ERROR, logger="pipeline_lab.pages"):
        at.button(key="analyze.run_stages").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("Memory estimate failed: ") and str(missing) in e for e in errors), (
        errors
    )
    assert any(
        e.startswith("Starting stage analysis failed through a bug in Pipeline Lab")
        and "TypeError: start() got an unexpected keyword argument 'x'" in e
        for e in errors
    ), errors
    assert "Traceback (most recent call last)" in caplog.text
    assert not at.button(key="analyze.run_stages").disabled  # the page still works
