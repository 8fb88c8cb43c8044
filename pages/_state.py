"""The little state pages share: the current spec (one PipelineSpec per session).

Keep session state small: the spec and run ids; derive the rest.
"""

from __future__ import annotations

import weakref
from typing import Any

import streamlit as st

from pipeline_core.spec import PipelineSpec, default_spec

SPEC_KEY = "lab.spec"


def get_spec() -> PipelineSpec:
    """The session's current pipeline spec (the embedded default on first visit)."""
    if SPEC_KEY not in st.session_state:
        st.session_state[SPEC_KEY] = default_spec()
    return st.session_state[SPEC_KEY]


def set_spec(spec: PipelineSpec) -> None:
    """Replace the session's current spec (already validated)."""
    st.session_state[SPEC_KEY] = spec


# --- editor revision: widget keys follow structural changes of the spec ---------

REVISION_KEY = "lab.revision"


def revision() -> int:
    """A number that changes whenever the spec is replaced from outside its widgets.

    Editor widget keys include it, so after an upload, a reorder or a new step
    the widgets show the new spec instead of keeping their old values.
    """
    return st.session_state.setdefault(REVISION_KEY, 0)


def replace_spec(spec: PipelineSpec) -> None:
    """Set the spec and re-sync every editor widget to it."""
    set_spec(spec)
    st.session_state[REVISION_KEY] = revision() + 1


# --- settings that survive page changes -------------------------------------------

KEPT_PREFIX = "lab.kept."
KEPT_KEYS = "lab.kept_keys"  # {key: (default, (minimum, maximum))} asked for in this session
REVERTED_PREFIX = "lab.reverted."  # + key: an out-of-bounds value that was put back


def kept(key: str, default: Any, bounds: tuple[Any, Any] = (None, None)) -> str:
    """`key` for a settings widget whose value survives a visit to another page.

    Streamlit drops a widget's value when a page run does not draw it, so a page
    change would reset the Profile limits or the simulated step. A copy kept under
    another key puts the value back before the widget is drawn; the widget then
    takes no `value=` argument (the session value is its value). A number outside
    `bounds` (minimum, maximum; None: open) is put back to the last good value, and
    `reverted(key)` tells the page what was refused.
    """
    st.session_state.setdefault(KEPT_KEYS, {})[key] = (default, bounds)
    if key in st.session_state:
        _keep(key)
    else:
        st.session_state[key] = st.session_state.get(KEPT_PREFIX + key, default)
    return key


def _keep(key: str) -> None:
    default, (low, high) = st.session_state[KEPT_KEYS][key]
    copy = KEPT_PREFIX + key
    value = st.session_state[key]
    if value is not None and (
        (low is not None and value < low) or (high is not None and value > high)
    ):
        st.session_state[REVERTED_PREFIX + key] = value
        st.session_state[key] = st.session_state.get(copy, default)
    st.session_state[copy] = st.session_state[key]


def keep_all() -> None:
    """Copy every kept setting's value now, before the page draws (`page_header` calls it).

    A value typed just before a click on another page arrives with that page's run,
    which never draws the widget; without this the copy would miss it.
    """
    for key in st.session_state.get(KEPT_KEYS, {}):
        if key in st.session_state:
            _keep(key)


def reverted(key: str) -> Any:
    """The out-of-bounds value last typed into the kept setting `key` (then forgotten),
    or None when the value was in bounds."""
    return st.session_state.pop(REVERTED_PREFIX + key, None)


# --- the session's live run and the runs it made ---------------------------------


class _LiveRun:
    """Holder of the session's live `RunHandle`; stopped when the session goes away."""

    def __init__(self) -> None:
        self.handle = None
        self.study = None  # the session's scaling study (`profile.scale.ScalingRun`)
        _HOLDERS.add(self)


_HOLDERS: weakref.WeakSet[_LiveRun] = weakref.WeakSet()  # every session's holder


def forget_live_runs() -> None:
    """Stop and forget every session's live run (tests: AppTest sessions share one)."""
    for holder in list(_HOLDERS):
        _stop(holder)
        holder.handle = holder.study = None


def _stop(holder: _LiveRun) -> None:
    if holder.study is not None:
        holder.study.stop()
    if holder.handle is not None and not holder.handle.done:
        holder.handle.stop()


@st.cache_resource(scope="session", on_release=_stop, show_spinner=False)
def _live_run() -> _LiveRun:
    return _LiveRun()


def live_run():
    """The session's current or last `RunHandle` (None before the first run)."""
    return _live_run().handle


def set_live_run(handle) -> None:
    """Make `handle` the session's live run (a previous live run is stopped first)."""
    holder = _live_run()
    _stop(holder)
    holder.handle = handle


def live_study():
    """The session's current or last scaling study (None before the first)."""
    return _live_run().study


def poll_study():
    """Advance the session's scaling study: once its run has ended, record it and make
    its next run the live run. Returns the study (None when there is none)."""
    holder = _live_run()
    study = holder.study
    if study is not None and study.poll() is not None and study.handle is not holder.handle:
        holder.handle = study.handle
    return study


def set_live_study(study) -> None:
    """Make `study` the session's scaling study and its first run the live run."""
    holder = _live_run()
    _stop(holder)
    holder.study, holder.handle = study, study.handle
