"""Browser steps shared by the end-to-end tests."""

from __future__ import annotations

import json
import time

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import ARTIFACTS

# True once the Design page shows exactly one name input holding `name` (an upload landed).
ONLY_NAME = (
    "(name) => { const e = document.querySelectorAll('input[aria-label=\"Pipeline name\"]');"
    " return e.length === 1 && e[0].value === name; }"
)


def nav(page: Page, title: str, *, tries: int = 4, wait_ms: int = 30_000) -> None:
    """Open a page from the sidebar and wait for its heading.

    A click that lands while a busy server is still running the previous page can be
    dropped (seen with five sessions on two cores), so a click without a page change
    within `wait_ms` is repeated, `tries` times in all; a click is idempotent.
    """
    heading = page.get_by_role("heading", name=title, exact=True).first
    link = page.get_by_test_id("stSidebarNav").locator("a", has_text=title)
    for _ in range(tries - 1):
        try:  # the click too: a link under a passing overlay is tried again, not waited on
            link.click(timeout=wait_ms)
            heading.wait_for(state="visible", timeout=wait_ms)
            return
        except PlaywrightTimeoutError:
            continue
    try:
        link.click()
        expect(heading).to_be_visible()
    except (AssertionError, PlaywrightTimeoutError):
        _keep_evidence(page, f"nav-{title}")
        raise


def select_option(page: Page, label: str, option: str, *, tries: int = 4) -> None:
    """Pick `option` in the select box labelled `label`.

    A rerun that lands just after the click (a new widget's own rerun, a child job's
    result) redraws the box and closes its list, so the option never shows: the box is
    opened again, `tries` times in all. Picking an option is idempotent.
    """
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    choice = page.get_by_role("option", name=option).first
    for _ in range(tries - 1):
        try:
            box.click()
            choice.click(timeout=10_000)
            return
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")  # close a list that is still open
    try:
        box.click()
        choice.click()
    except PlaywrightTimeoutError:
        _keep_evidence(page, f"select-{option}")
        raise


def _keep_evidence(page: Page, name: str) -> None:
    """A screenshot and the page's text under test-artifacts/failures, for a failure seen
    only under load."""
    folder = ARTIFACTS / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%H%M%S')}-{id(page):x}"
    try:
        page.screenshot(path=str(folder / f"{stem}.png"))
        (folder / f"{stem}.txt").write_text(page.inner_text("body"))
    except Exception as exc:  # noqa: BLE001 - the page may be gone; the failure is what matters
        (folder / f"{stem}.txt").write_text(f"no evidence: {exc!r}")


def shot(page: Page, screenshots, name: str) -> None:
    """The 1280x800 view, and the whole page in a taller window (Streamlit scrolls inside)."""
    page.wait_for_timeout(600)  # let charts finish their layout
    page.screenshot(path=str(screenshots / f"{name}.png"))
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.wait_for_timeout(600)
    page.screenshot(path=str(screenshots / f"{name}-full.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def upload_spec(page: Page, spec: dict) -> None:
    """Load `spec` through the Design page's spec JSON uploader and wait until it shows."""
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
        ]
    )
    page.wait_for_function(ONLY_NAME, arg=spec["name"])  # the editor shows the upload
