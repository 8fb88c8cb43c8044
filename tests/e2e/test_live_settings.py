"""The dashboard keeps settings and tells the truth about runs, in real Chromium (issue 11):
settings survive page changes, Start is off for a design that cannot be built, a short
dataset is profiled for the whole time limit with repeat, and a comparison shows how
the runs were run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import nav, select_option, shot, upload_spec

pytestmark = pytest.mark.e2e

SHORT = {  # five batches of tiny images: about 0.1 s of data
    "name": "e2e short data",
    "source": {"type": "synthetic", "num_examples": 40, "shape": [4, 4, 3]},
    "steps": [{"op": "batch", "batch_size": 8}],
}
BROKEN = {
    "name": "e2e cannot build",
    "source": {"type": "image_folder", "path": "{data_dir}/no-such-folder"},
    "steps": [{"op": "batch", "batch_size": 4}],
}


def _number(page: Page, label: str):
    return page.get_by_test_id("stNumberInput").filter(has_text=label).locator("input")


def _set(page: Page, label: str, value: str, shown: str | None = None) -> None:
    """Type `value` into the number field `label`; when `shown` is given, wait until the
    field shows it after the page's rerun (a value typed during a rerun can be lost)."""
    field = _number(page, label)
    expect(field).to_be_enabled()
    field.fill(value)
    field.press("Enter")
    if shown is not None:
        page.wait_for_timeout(300)  # the rerun starts
        expect(field).to_have_value(shown)


def test_settings_survive_a_page_change_and_start_is_off_for_a_broken_design(app, screenshots):
    upload_spec(app, SHORT)
    nav(app, "Profile")
    _set(app, "Batches", "150", "150")
    _set(app, "Batches", "-5")  # refused where it was typed, with the reason in view
    expect(app.get_by_text("Batches must be at least 1: -5 was put back to 150")).to_be_visible()
    expect(_number(app, "Batches")).to_have_value("150")
    select_option(app, "Simulated training step", "fixed time (ms)")
    _set(app, "Step (ms)", "30", "30.00")
    nav(app, "Runs")
    nav(app, "Profile")
    expect(_number(app, "Batches")).to_have_value("150")
    expect(_number(app, "Step (ms)")).to_have_value("30.00")
    expect(_number(app, "Step (ms)")).to_be_enabled()  # enabled only for "fixed time (ms)"

    nav(app, "Design")
    upload_spec(app, BROKEN)
    nav(app, "Profile")
    reason = app.get_by_text(re.compile("Start is off: the design cannot be built"))
    expect(reason).to_be_visible()
    expect(app.get_by_role("button", name=re.compile("Start"))).to_be_disabled()
    shot(app, screenshots, "profile-cannot-build")


def test_a_short_dataset_runs_for_the_time_limit_and_runs_compare_their_settings(
    app, lab_server, screenshots
):
    upload_spec(app, SHORT)
    nav(app, "Profile")
    app.get_by_test_id("stRadio").get_by_text("seconds", exact=True).click()
    _set(app, "Seconds", "10")
    expect(app.get_by_role("checkbox", name="Repeat the data until the limit")).to_be_checked()
    app.get_by_role("button", name=re.compile("Start")).click()
    expect(app.get_by_text(re.compile("Run completed"))).to_be_visible(timeout=90_000)
    progress = app.get_by_test_id("stProgress").inner_text()
    batches, seconds = re.search(r"(\d+) batches · [\d,]+ examples · ([\d.]+) s", progress).groups()
    assert int(batches) > 5 and float(seconds) >= 9.5, progress  # repeated for the 10 s
    first = re.search(r"#(\d+)", app.get_by_role("link", name=re.compile(r"Open run")).inner_text())

    app.get_by_text("Repeat the data until the limit").click()  # off: one pass
    app.get_by_test_id("stRadio").get_by_text("batches", exact=True).click()
    _set(app, "Batches", "50")
    app.get_by_role("button", name=re.compile("Start")).click()
    # The first run's "Run completed" and progress bar can still be on the page while the
    # rerun draws the second's: wait for the second run's own figures, then its one link.
    done = app.get_by_test_id("stProgress").filter(has_text="completed · 5 batches")
    expect(done).to_be_visible(timeout=90_000)
    link = app.get_by_role("link", name=re.compile(r"Open run #\d+"))
    expect(link).to_have_count(1)
    expect(link).not_to_have_text(re.compile(rf"#{first.group(1)}\b"))
    second = re.search(r"#(\d+)", link.inner_text())
    assert second.group(1) != first.group(1)

    app.goto(f"{lab_server[0]}/runs?run={first.group(1)},{second.group(1)}")
    expect(app.get_by_text("Settings differences")).to_be_visible()
    expect(app.get_by_text("The runs used the same settings.")).to_have_count(0)
    # the history shows each run's settings in words
    app.goto(f"{lab_server[0]}/runs")
    expect(app.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    shot(app, screenshots, "runs-compare-settings")
