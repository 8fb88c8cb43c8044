"""Analyze & tune in real headless Chromium: stages, live progress, cancel, apply a fix.

A small synthetic pipeline with a planted slow `sleep` map is loaded on the
Design page; stage analysis (in a child process) must name that step, the
tuner shows live progress and can be cancelled, and applying the measured
recommendation must show up in the Design page's spec. Screenshots go to
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

    expect(app.get_by_test_id("stDataFrame")).to_have_count(0)
    app.get_by_role("button", name="Tune", exact=True).click()  # the default 30 s budget
    progress = app.get_by_test_id("stProgress").first
    expect(progress).to_contain_text(re.compile(r"trial \d+"))  # trials stream in
    expect(app.get_by_test_id("stDataFrame")).to_have_count(1)  # the live trials table
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
