"""voltrisk dashboard entry point: access check, then routing. Pages live in dashboard/pages/."""

import streamlit as st

from dashboard import access

st.set_page_config(page_title="voltrisk", layout="wide")
access.require_login()
st.navigation([
    st.Page("pages/pipeline.py", title="Pipeline health", url_path="pipeline", default=True),
]).run()
