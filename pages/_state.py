"""The little state pages share: the current spec (one PipelineSpec per session).

Keep session state small (STYLE.md): the spec and run ids; derive the rest.
"""

from __future__ import annotations

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
