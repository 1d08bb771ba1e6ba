"""toygpt dashboard: navigation and the shared sidebar, nothing else.

Run with ``streamlit run app.py``. Every page lives in ``pages/`` and only draws what the
``toygpt`` package computes.
"""

import streamlit as st

st.set_page_config(page_title="toygpt", page_icon="🧩", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/tokenizer.py", title="Tokenizer playground", icon="🔤"),
    st.Page("pages/explore.py", title="Sampling & attention", icon="🔍"),
]

page = st.navigation(PAGES)
page.run()
