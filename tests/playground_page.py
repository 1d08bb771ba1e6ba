"""Driving the tokenizer playground page through AppTest: shared by its page tests.

The page has two lazy tabs (only the open one runs), so a test opens the tab whose widgets it
uses; the comparison is one HTML table, read back from its ``data-`` attributes.
"""

from __future__ import annotations

import html
import re

from streamlit.testing.v1 import AppTest

COMPARE, BPE = "Compare tokenizers", "Train your own BPE"
ROW = re.compile(r'<tr data-tokenizer="([^"]*)">(.*?)</tr>', re.S)
CELL = re.compile(r'<td data-column="(\w+)" data-value="([^"]*)">')


def open_page(timeout: float = 30) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=timeout)
    at.run()
    at.switch_page("pages/tokenizer.py").run()
    assert not at.exception
    return at


def open_tab(at: AppTest, tab: str) -> AppTest:
    """Click a tab (the tabs' key holds the open one's label)."""
    at.session_state["tok_tab"] = tab
    at.run()
    assert not at.exception
    return at


def set_text(at: AppTest, text: str) -> AppTest:
    at.text_area(key="tok_text").input(text).run()
    assert not at.exception
    return at


def bodies(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.html]


def comparison(at: AppTest) -> dict[str, dict[str, str]]:
    """The comparison table as {tokenizer: {column: value as written in data-value}}; a row
    that failed has no columns."""
    (table,) = [b for b in bodies(at) if 'class="tg-compare"' in b]
    return {html.unescape(name): dict(CELL.findall(cells)) for name, cells in ROW.findall(table)}


def compare_rows(at: AppTest) -> dict[str, int]:
    """{tokenizer: tokens for the text} from the comparison table (rows that failed left out)."""
    return {name: int(cells["tokens"]) for name, cells in comparison(at).items() if cells}
