"""No pickle anywhere, the pages' caches included: ``st.cache_data`` pickles every value it stores
and unpickles it on every hit, so the pages cache computed results with ``st.cache_resource``
(the object itself, shared read-only; none of them is changed after it is made)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_page_caches_through_pickle():
    found = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "cache_data":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"st.cache_data pickles what it caches: {found}"


def test_the_architecture_pages_cached_results_are_not_pickled(monkeypatch):
    import pickle

    from streamlit.testing.v1 import AppTest

    def refuse(*args, **kwargs):
        raise AssertionError("a page cache pickled a value")

    monkeypatch.setattr(pickle, "dumps", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/architecture.py").run()
    assert not at.exception
