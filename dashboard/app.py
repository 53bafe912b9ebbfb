"""voltrisk dashboard entry point: access check, then routing.

Page modules live in dashboard/views/, not pages/: Streamlit serves a ``pages/``
folder beside the entry file as pages of its own, which would run them without
the access check below.
"""

import streamlit as st

from dashboard import access

st.set_page_config(page_title="voltrisk", layout="wide")
access.require_login()
st.navigation([
    st.Page("views/pipeline.py", title="Pipeline health", url_path="pipeline", default=True),
    st.Page("views/portfolio.py", title="Portfolio", url_path="portfolio"),
    st.Page("views/risk_map.py", title="Risk map", url_path="risk-map"),
    st.Page("views/vehicle.py", title="Vehicle drill-down", url_path="vehicle"),
    st.Page("views/pricing_lab.py", title="Pricing lab", url_path="pricing-lab"),
    st.Page("views/fraud.py", title="Fraud triage", url_path="fraud"),
]).run()
