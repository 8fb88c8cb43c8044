"""Pipeline Lab: design and profile TensorFlow tf.data input pipelines in the browser.

This file only routes; each page lives in pages/ and stays thin over pipeline_core.
"""

import streamlit as st

from pipeline_core import child, paths

# A browser user reaches only the data dir and the admin's roots; child processes inherit it.
paths.confine_to_data_roots()
# One child waits with TensorFlow imported, so a job starts at once (PIPELINE_LAB_WARM_SPARE=0: off).
child.keep_warm()
st.set_page_config(page_title="Pipeline Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("pages/design.py", title="Design", icon=":material/tune:", default=True),
    st.Page("pages/preview.py", title="Preview", icon=":material/image:"),
    st.Page("pages/profile.py", title="Profile", icon=":material/speed:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/analyze.py", title="Analyze & tune", icon=":material/insights:"),
]
st.navigation(pages).run()
