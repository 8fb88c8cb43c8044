"""Figures of a spec made in a child process, kept per spec for every session of the server.

The server process never reads a user's data: building the pipeline for its element
specs, sizing its source for the memory estimate, each runs as an `isolate` job in a
child process (time limit, memory ceiling). A page asks `SpecJobs.job(spec_json,
holder=...)` on every run: the first ask starts the job, later asks (from any session)
get the same `Job`, and a finished one stays for the next visit (the `size` most
recently asked specs are kept). While the job runs the page draws `wait(job, text)`,
a fragment that re-runs the page once the job has ended, as the Analyze page's job
view does; the page goes on drawing the rest meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from pipeline_core import child
from pipeline_core.analysis.memory import memory_estimate_job
from pipeline_core.export import design_job
from pipeline_core.isolate import Job, start_job

REFRESH_S = 0.5
SIZE = 64  # specs kept per kind of job, like the st.cache_data it replaces
TIMEOUT_S = 60.0  # a TensorFlow import (8-15 s) and a build, on a loaded machine


class SpecJobs:
    """One job per spec JSON (`fn(spec_json, progress=...)`), shared by every session.

    `holder` is a session-state key naming what waits for the job (a page's view):
    when it moves to another spec, a job for the previous one that no other session
    waits for is cancelled, so editing a design quickly does not leave a child per edit.
    A failed job stays (its reason is shown) until `forget` drops it.
    """

    def __init__(
        self, fn: Callable[..., Any], *, what: str, timeout_s: float = TIMEOUT_S, size: int = SIZE
    ) -> None:
        self.fn, self.what, self.timeout_s, self.size = fn, what, timeout_s, size
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._wanted: Counter[str] = Counter()

    def job(self, spec_json: str, *, holder: str) -> Job:
        """The job for `spec_json`, started now when none is kept (or the kept one was
        cancelled)."""
        previous = st.session_state.get(holder)
        with self._lock:
            job = self._jobs.get(spec_json)
            if job is None or (job.done and job.state().status == "cancelled"):
                job = self._jobs[spec_json] = self._start(spec_json)
            self._jobs.move_to_end(spec_json)
            if previous != spec_json:
                self._wanted[spec_json] += 1
                if previous is not None:
                    self._release(previous)
            while len(self._jobs) > self.size:  # a running job left out ends by its limits
                self._jobs.popitem(last=False)
        st.session_state[holder] = spec_json
        return job

    def forget(self, spec_json: str) -> None:
        """Drop the job for `spec_json` (cancelled if it runs): the next ask starts anew."""
        with self._lock:
            job = self._jobs.pop(spec_json, None)
        if job is not None and not job.done:
            job.cancel()

    def _start(self, spec_json: str) -> Job:
        return start_job(
            self.fn,
            args=(spec_json,),
            what=self.what,
            timeout_s=self.timeout_s,
            memory_limit_mb=child.default_memory_limit_mb(),
        )

    def _release(self, spec_json: str) -> None:
        self._wanted[spec_json] -= 1
        if self._wanted[spec_json] > 0:
            return
        del self._wanted[spec_json]
        job = self._jobs.get(spec_json)
        if job is not None and not job.done:
            job.cancel()
            del self._jobs[spec_json]


@st.cache_resource(show_spinner=False)
def element_specs() -> SpecJobs:
    """The server's Design-page jobs (`export.design_job`: the element specs after each
    stage and the exported code)."""
    return SpecJobs(design_job, what="reading the element specs")


@st.cache_resource(show_spinner=False)
def memory_estimates() -> SpecJobs:
    """The server's memory-estimate jobs (`analysis.memory_estimate_job`), for the Profile
    and Analyze pages."""
    return SpecJobs(memory_estimate_job, what="the memory estimate")


def failure(job: Job) -> str | None:
    """Why an ended job failed (the child's ending reason, capitalized), or None."""
    state = job.state()
    if state.ok:
        return None
    reason = state.reason or f"{job.what} ended without a result"
    return reason[:1].upper() + reason[1:]


@st.fragment(run_every=REFRESH_S)
def wait(job: Job, text: str) -> None:
    """`text` and the seconds so far while `job` runs, redrawn twice a second; once it
    has ended, the whole page runs again and draws the result."""
    if job.done:
        st.rerun()
    st.info(f"{text} ({job.state().elapsed_s:.0f} s)", icon=":material/hourglass_top:")
