"""Scale out in real Chromium (issue 13): a design with a local distribute step runs as a
scaling study through 1 and 2 worker processes; the Profile page charts throughput
against workers beside the ideal line, says which kind of pipeline it is, and shows
each worker's readings for the live run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import nav, shot, upload_spec

pytestmark = pytest.mark.e2e

SLOW_STORAGE = {
    "name": "e2e slow storage",
    "source": {"type": "synthetic", "num_examples": 512, "shape": [8, 8, 3], "dtype": "uint8"},
    "steps": [
        {"op": "sleep", "ms": 5},
        {"op": "distribute", "service": "local", "workers": 2},
        {"op": "batch", "batch_size": 16},
    ],
}


def test_a_scaling_study_charts_workers_against_the_ideal(app, screenshots):
    upload_spec(app, SLOW_STORAGE)
    nav(app, "Profile")
    batches = app.get_by_test_id("stNumberInput").filter(has_text="Batches").locator("input")
    batches.fill("30")
    batches.press("Enter")
    app.wait_for_timeout(300)
    expect(batches).to_have_value("30")
    counts = app.get_by_role("textbox", name="Worker counts")
    _open_study(app)
    expect(counts).to_have_value("1, 2, 4")
    counts.fill("1, 2")
    counts.press("Enter")
    app.wait_for_timeout(300)
    # the rerun after Enter once drew the expander closed again (the suite's 2nd full
    # run of 2026-12-06): open it again if so; the counts live in the session
    _open_study(app)
    expect(counts).to_have_value("1, 2")
    expect(app.get_by_role("button", name="Run study")).to_be_enabled()
    app.get_by_role("button", name="Run study").click()
    expect(app.get_by_text(re.compile(r"Compare runs \d+,\d+ in Runs"))).to_be_visible(
        timeout=180_000
    )
    expect(
        app.get_by_text(re.compile(r"^(Scales|CPU-bound|Does not scale): 2 workers"))
    ).to_be_visible()
    charts = app.get_by_test_id("stPlotlyChart")
    # .first: while the page redraws, the chart it replaces may still be on the page
    expect(charts.filter(has_text="Scaling: throughput against workers").first).to_be_visible()
    # the live run is the study's last: its workers' readings
    expect(app.get_by_role("heading", name="Workers")).to_be_visible()
    expect(app.get_by_text(re.compile("does not publish an element count"))).to_be_visible()
    expect(charts.filter(has_text="Workers' CPU").first).to_be_visible()
    expect(charts.filter(has_text="Workers' memory (RSS)").first).to_be_visible()
    shot(app, screenshots, "profile-scaling-study")


def _open_study(app) -> None:
    """Open the scaling-study expander unless it is open (a click on an open one closes it)."""
    if not app.get_by_role("textbox", name="Worker counts").is_visible():
        app.get_by_text(re.compile("Scaling study: the same design")).click()
