"""What the page tests share: waiting for the jobs a page runs in a child process.

The Design, Profile and Analyze pages make a spec's element specs and memory
estimate in a child process (`pages/_jobs.py`) and show "... in a child process…
(N s)" meanwhile, in a fragment whose timer re-runs the page when the job ends.
AppTest cannot fire that timer: `settle` re-runs the script until no such line is left.
"""

from __future__ import annotations

import io
import re
import time
import zipfile

from streamlit.testing.v1 import AppTest

from tests import REPO

LIMIT_S = 180  # a child imports TensorFlow (8-15 s, more on a loaded machine), then builds
_PENDING = re.compile(r"in a child process.*….*\(\d+ s\)$", re.DOTALL)


def pending(at: AppTest) -> bool:
    """The page shows a job of `pages/_jobs.py` still running."""
    return any(_PENDING.search(str(i.value)) for i in at.info)


def settle(at: AppTest, limit_s: float = LIMIT_S) -> AppTest:
    """Re-run the page until its child-process jobs have ended and their results are drawn."""
    deadline = time.monotonic() + limit_s
    while pending(at):
        assert time.monotonic() < deadline, "a job of the page did not end"
        time.sleep(0.3)
        at.run()
    return at


TIMEOUT = 90  # TensorFlow's first import alone exceeds AppTest's 3 s default


def app() -> AppTest:
    """The dashboard through app.py, run once (the Design page is the default)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def design_key(at: AppTest, suffix: str) -> str:
    """The key of a Design editor widget (its keys follow the spec's revision)."""
    return f"design.r{at.session_state['lab.revision']}.{suffix}"


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip archive of `{name: data}`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def png_bytes() -> bytes:
    """A small valid PNG image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 120, 240)).save(buf, format="PNG")
    return buf.getvalue()
