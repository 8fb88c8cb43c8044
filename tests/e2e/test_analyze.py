"""Analyze & tune in real headless Chromium: stages, live progress, cancel, apply a fix.

A small synthetic pipeline with a planted slow `sleep` map is loaded on the
Design page; stage analysis (in a child process) must name that step; a short
tuning run must tell one story (the headline's figures are the metrics' re-measured
figures, and the figures of this spec are compared under "One pipeline, one
number"); a long one shows live progress and can be cancelled; and applying the
measured recommendation must show up in the Design page's spec. Screenshots go to
test-artifacts/screenshots/analyze-*.png.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.e2e.helpers import nav, shot, upload_spec  # noqa: E402

pytestmark = pytest.mark.e2e

PLANTED = {
    "name": "e2e planted sleep",
    "source": {"type": "synthetic", "num_examples": 64, "shape": [8, 8, 3]},
    "steps": [
        {"op": "map", "augmentations": [{"name": "random_flip_left_right"}]},
        {"op": "map", "augmentations": [{"name": "sleep", "ms": 5}]},
        {"op": "batch", "batch_size": 8},
    ],
}
PARALLEL = "Run steps[1] map in parallel"


def _spec_json(page: Page):
    page.get_by_role("tab", name="Spec JSON").click()
    return page.get_by_role("tabpanel", name="Spec JSON").get_by_test_id("stCode")


def test_find_the_planted_bottleneck_and_apply_the_fix(app, screenshots):
    upload_spec(app, PLANTED)
    expect(_spec_json(app)).not_to_contain_text('"num_parallel_calls": "autotune"')
    nav(app, "Analyze & tune")

    app.get_by_role("button", name="Analyze stages").click()
    expect(app.get_by_test_id("stProgress").first).to_be_visible()  # live, in a child process
    expect(app.get_by_text(re.compile(r"Slowest stage: steps\[1\] map sleep"))).to_be_visible()
    expect(app.get_by_text("Machine limit:")).to_be_visible()
    expect(app.locator(".js-plotly-plot")).to_have_count(2)  # waterfall and gauge
    expect(app.get_by_test_id("stException")).to_have_count(0)
    shot(app, screenshots, "analyze-stages")

    _tune_briefly_and_check_one_story(app, screenshots)
    _slider(app, "Budget (s)", "End")  # 300 s: long enough to cancel while it runs
    app.get_by_role("button", name="Tune", exact=True).click()
    progress = app.get_by_test_id("stProgress").first
    expect(progress).to_contain_text(re.compile(r"trial \d+"))  # trials stream in
    expect(app.get_by_test_id("stDataFrame").first).to_be_visible()  # the live trials table
    before = progress.inner_text()
    expect(progress).not_to_have_text(before)  # refreshed by the timer, without a click
    shot(app, screenshots, "analyze-tune-live")
    app.get_by_role("button", name="Cancel").click()
    expect(app.get_by_text(re.compile(r"Tuning was cancelled after"))).to_be_visible(timeout=5_000)
    expect(app.get_by_role("button", name="Tune", exact=True)).to_be_enabled()

    app.get_by_role("button", name="Find recommendations").click()
    expect(app.get_by_text(PARALLEL)).to_be_visible()
    row = app.get_by_test_id("stHorizontalBlock").filter(has_text=PARALLEL).last
    row.get_by_role("button", name="Apply").click()
    expect(app.get_by_text(f"Applied: {PARALLEL}.")).to_be_visible()

    nav(app, "Design")
    expect(_spec_json(app)).to_contain_text('"num_parallel_calls": "autotune"')


def _slider(page: Page, label: str, *keys: str) -> None:
    """Move a Streamlit slider with the keyboard (Home/End, arrows)."""
    handle = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    handle.focus()
    for key in keys:
        handle.press(key)
    page.keyboard.press("Tab")  # commit the value


def _number(text: str) -> str:
    return re.search(r"[\d,]+", text).group(0)


def _tune_briefly_and_check_one_story(app: Page, screenshots) -> None:
    """A 15 s tuning run with 0.2 s trials: room for the search and the re-measurement."""
    _slider(app, "Budget (s)", "Home", *["ArrowRight"] * 10)
    _slider(app, "Seconds per trial", "Home")
    app.get_by_role("button", name="Tune", exact=True).click()
    tuned = app.get_by_test_id("stMetric").filter(has_text="Tuned (re-measured)")
    expect(tuned).to_be_visible(timeout=120_000)
    written = app.get_by_test_id("stMetric").filter(has_text="As written (re-measured)")
    best = _number(tuned.get_by_test_id("stMetricValue").inner_text())
    base = _number(written.get_by_test_id("stMetricValue").inner_text())
    alerts = app.get_by_test_id("stAlert")
    headline = alerts.filter(has_text=re.compile(r"Tuned: |The pipeline as written stays"))
    expect(headline).to_have_count(1)
    text = headline.inner_text()
    if "Tuned: " in text:
        delta = tuned.get_by_test_id("stMetricDelta").inner_text().strip()
        assert f"{best} examples/s, {delta}" in text and f"({base} examples/s)" in text
    else:
        assert best == base and f"({base} examples/s" in text
    expect(app.get_by_text(re.compile(r"\d+ trials of a [\d,]+-point space"))).to_be_visible()
    expect(app.get_by_role("heading", name="One pipeline, one number")).to_be_visible()
    expect(alerts.filter(has_text=re.compile(r"The figures (agree|differ)"))).to_have_count(1)
    expect(app.get_by_test_id("stException")).to_have_count(0)
    shot(app, screenshots, "analyze-tune-story")
