"""The dashboard in real headless Chromium against `streamlit run app.py`.

Flows: open each page; design a pipeline with an augmentation; see preview
images; start a run and watch the live figures change; stop it; find it in
Runs; compare two runs. A screenshot of each page goes to
test-artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect  # noqa: E402

pytestmark = pytest.mark.e2e

PAGES = {"design": "Design", "preview": "Preview", "profile": "Profile", "runs": "Runs",
         "analyze": "Analyze & tune"}  # fmt: skip
SLOW_SPEC = {
    "name": "e2e slow",
    "source": {"type": "synthetic", "num_examples": 256, "shape": [16, 16, 3]},
    "steps": [
        {"op": "repeat"},
        {"op": "batch", "batch_size": 16},
        {"op": "map", "augmentations": [{"name": "sleep", "ms": 40}]},
        {"op": "prefetch", "buffer_size": 1},
    ],
}
ONLY_NAME = "(name) => { const e = document.querySelectorAll('input[aria-label=\"Pipeline name\"]');" \
    " return e.length === 1 && e[0].value === name; }"  # fmt: skip
# Points drawn in the first chart (the wait per batch); plotly decodes its data into _fullData.
CHART_POINTS = """() => {
  const plot = document.querySelector('.js-plotly-plot');
  const trace = plot && plot._fullData && plot._fullData[0];
  return trace && trace.x ? trace.x.length : 0;
}"""


def _nav(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").locator("a", has_text=title).click()
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible()


def _shot(page: Page, screenshots, name: str) -> None:
    """The 1280x800 view, and the whole page in a taller window (Streamlit scrolls inside)."""
    page.wait_for_timeout(600)  # let charts finish their layout
    page.screenshot(path=str(screenshots / f"{name}.png"))
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.wait_for_timeout(600)
    page.screenshot(path=str(screenshots / f"{name}-full.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def _select(page: Page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option).first.click()


def _number(page: Page, label: str):
    return page.get_by_test_id("stNumberInput").filter(has_text=label).locator("input")


def _upload_spec(page: Page, spec: dict) -> None:
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # first run done
    page.get_by_role("tab", name="Spec JSON").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Load a spec")
    uploader.locator("input[type=file]").set_input_files(
        files=[
            {
                "name": "spec.json",
                "mimeType": "application/json",
                "buffer": json.dumps(spec).encode(),
            }
        ]  # fmt: skip
    )
    page.wait_for_function(ONLY_NAME, arg=spec["name"])  # the editor shows the upload


@pytest.mark.parametrize("path", list(PAGES))
def test_each_page_opens(app, lab_server, screenshots, path):
    app.goto(f"{lab_server[0]}/{'' if path == 'design' else path}")  # Design is the default page
    expect(app.get_by_role("heading", name=PAGES[path], exact=True).first).to_be_visible()
    expect(app.get_by_test_id("stException")).to_have_count(0)
    expect(app.get_by_text("Page not found")).to_have_count(0)
    if path == "design":
        expect(app.get_by_test_id("stDataFrame").first).to_be_visible()  # element specs
    if path == "preview":
        expect(app.get_by_test_id("stImage").first).to_be_visible()
    _shot(app, screenshots, path)


def test_design_with_an_augmentation_then_preview_it(app, screenshots):
    expect(app.get_by_test_id("stDataFrame").first).to_be_visible()
    app.get_by_role("button", name=re.compile("Add augmentation")).click()
    _select(app, "Augmentation 3", "random_rotation")
    expect(app.get_by_test_id("stSlider").filter(has_text="max degrees")).to_be_visible()
    app.get_by_role("tab", name="Spec JSON").click()
    panel = app.get_by_role("tabpanel", name="Spec JSON")
    expect(panel.get_by_test_id("stCode")).to_contain_text('"random_rotation"')
    app.get_by_role("tab", name="Code").click()
    code = app.get_by_role("tabpanel", name="Code").get_by_test_id("stCode")
    expect(code).to_contain_text("random_rotation")
    expect(code).to_contain_text("tf.data")
    _shot(app, screenshots, "design-augmented")
    _nav(app, "Preview")
    images = app.get_by_test_id("stImage")
    expect(images.nth(15)).to_be_visible()  # 8 samples, original beside augmented
    expect(app.get_by_text(re.compile(r"#0 · label \d+"))).to_be_visible()
    _shot(app, screenshots, "preview-augmented")


def test_live_run_stop_find_in_runs_and_compare(app, lab_server, screenshots):
    _upload_spec(app, SLOW_SPEC)
    _nav(app, "Profile")
    app.get_by_test_id("stRadio").get_by_text("seconds", exact=True).click()
    seconds = _number(app, "Seconds")
    seconds.fill("60")
    seconds.press("Enter")
    app.get_by_role("button", name=re.compile("Start")).click()

    progress = app.get_by_test_id("stProgress")
    expect(progress).to_contain_text(re.compile(r"running · [1-9]\d* batches"))
    before = progress.inner_text()
    expect(progress).not_to_have_text(before)  # refreshed live, without a click
    points = app.evaluate(CHART_POINTS)
    assert points > 0
    app.wait_for_function(f"() => ({CHART_POINTS})() > {points}")  # the wait chart grows
    rate = app.get_by_test_id("stMetric").filter(has_text="examples/s")
    expect(rate).not_to_contain_text("—")
    _shot(app, screenshots, "profile-live")

    app.get_by_role("button", name=re.compile("Stop")).click()
    expect(app.get_by_text(re.compile("Run stopped"))).to_be_visible(timeout=10_000)
    link = app.get_by_role("link", name=re.compile(r"Open run #\d+ in Runs"))
    first_id = re.search(r"#(\d+)", link.inner_text()).group(1)
    _shot(app, screenshots, "profile-stopped")

    link.click()
    expect(app.get_by_role("heading", name=f"#{first_id} e2e slow")).to_be_visible()
    expect(app).to_have_url(re.compile(rf"run={first_id}"))
    _shot(app, screenshots, "runs-one")

    _nav(app, "Profile")  # the session keeps the design: a second, short run
    app.get_by_test_id("stRadio").get_by_text("batches", exact=True).click()
    batches = _number(app, "Batches")
    batches.fill("15")
    batches.press("Enter")
    app.get_by_role("button", name=re.compile("Start")).click()
    expect(app.get_by_text(re.compile("Run completed"))).to_be_visible()
    second = app.get_by_role("link", name=re.compile(r"Open run #\d+ in Runs"))
    second_id = re.search(r"#(\d+)", second.inner_text()).group(1)
    assert second_id != first_id

    app.goto(f"{lab_server[0]}/runs?run={first_id},{second_id}")
    expect(app.get_by_text("Comparing 2 runs")).to_be_visible()
    expect(app.get_by_text("Key figures")).to_be_visible()
    expect(app.locator(".js-plotly-plot").first).to_be_visible()
    _shot(app, screenshots, "runs-compare")
