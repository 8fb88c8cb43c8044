"""What the page tests share: waiting for the jobs a page runs in a child process.

The Design, Profile and Analyze pages make a spec's element specs and memory
estimate in a child process (`pages/_jobs.py`) and show "... in a child process…
(N s)" meanwhile, in a fragment whose timer re-runs the page when the job ends.
AppTest cannot fire that timer: `settle` re-runs the script until no such line is left.
"""

from __future__ import annotations

import re
import time

from streamlit.testing.v1 import AppTest

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
