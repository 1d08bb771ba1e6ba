"""The tokenizer page's fast path shows the same tokens and counts as before (issue 17 item 3).

The page now cuts each (tokenizer, text) once through a bounded cache, computes spans with one
byte→character table, draws at most ``MAX_SHOWN_TOKENS`` spans per view with an exact note,
and draws the span style sheet once. These tests pin that nothing it shows changed: spans equal
the old bisect-based ones, the drawn HTML decodes back to the text, the counts and the note
are exact for the whole text, and the cache stays within its memory bound however many
visitors paste however many texts.
"""

from __future__ import annotations

import bisect
import gc
import html
import re
import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from tests.playground_page import BPE, COMPARE, compare_rows, open_page, open_tab, set_text
from toygpt.data import load_corpus
from toygpt.lessons import playground as pg
from toygpt.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, TokenizerError, compare
from toygpt.tokenizers.base import spans_from_token_bytes

SPAN = re.compile(r'<span(?: class="[^"]*")? title="id (\d+) [^"]*">(.*?)</span>', re.S)
ODD = [
    "",
    "a",
    "e\u0301 combining, 👨\u200d👩\u200d👧 zero-width joiners, 🇫🇷 flags, 👍🏽 skin tone",
    "\x00\x01\t\r\n\u2028\u2029\u00a0\ufeff control and invisible",
    "<b>&amp;</b> \"quotes\" 'and' <script>alert(1)</script>",
    "你好，世界！ こんにちは 안녕하세요 \U0001d54f\U00010348",
]
LONG = ("The quick brown fox — naïve café, 東京, 🙂👍🏽 — jumps over 12,345 lazy dogs.\n" * 200)[:12_000]


@pytest.fixture(scope="module")
def toy_bpe() -> BPETokenizer:
    return BPETokenizer.train(load_corpus("toy-english", 0), 400)


def tokenizers(text: str, bpe: BPETokenizer) -> list:
    return [ByteTokenizer(), CharTokenizer.from_text(text or "x"), bpe]


def old_spans(text: str, pieces: list[bytes]) -> list[tuple[int, int]]:
    """The spans as the page computed them before: two bisects per token over char starts."""
    starts, offset = [], 0
    for ch in text:
        starts.append(offset)
        offset += len(ch.encode("utf-8"))
    spans, position = [], 0
    for piece in pieces:
        begin, position = position, position + len(piece)
        spans.append((bisect.bisect_left(starts, begin), bisect.bisect_left(starts, position)))
    return spans


def drawn_text(view: str) -> str:
    """The characters the span bodies show (whitespace drawn as itself), HTML-unescaped."""
    return "".join(html.unescape(body) for _, body in SPAN.findall(view))


# ---------------------------------------------------------------------------------------------
# Spans: the linear table gives the old bisect answer for any text and any cut into tokens
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=40), data=st.data())
def test_linear_spans_equal_the_bisect_spans_for_any_cut(text, data):
    raw = text.encode("utf-8")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(raw) - 1, 1)), max_size=len(raw))))
    edges = [0, *[c for c in cuts if 0 < c < len(raw)], len(raw)] if raw else [0]
    pieces = [raw[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    assert spans_from_token_bytes(text, pieces) == old_spans(text, pieces)


def test_spans_of_empty_text_and_a_wrong_cover():
    assert spans_from_token_bytes("", []) == []
    with pytest.raises(TokenizerError, match="cover 1 bytes but the text has 0"):
        spans_from_token_bytes("", [b"a"])
    with pytest.raises(TokenizerError, match="cover 2 bytes but the text has 3"):
        spans_from_token_bytes("éa", [b"\xc3\xa9"])


# ---------------------------------------------------------------------------------------------
# The drawn view: decodes back to the text; the note is exact for the whole text
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [*ODD, LONG], ids=lambda t: f"{len(t)}chars")
def test_a_view_drawing_every_token_decodes_back_to_the_text(text, toy_bpe):
    for tok in tokenizers(text, toy_bpe):
        result = pg.TokenizedCache(max_bytes=10**8).tokenize(tok, text)
        assert (result.ids, result.spans) == (pg.tokenize(tok, text).ids, pg.tokenize(tok, text).spans)
        view = pg.token_spans_html(text, result, tok, show_whitespace=False,
                                   max_tokens=result.n_tokens, css=False)
        assert drawn_text(view) == text
        assert [int(i) for i, _ in SPAN.findall(view)] == result.ids
        assert "<style>" not in view and "not drawn" not in view


@pytest.mark.parametrize("limit", [1, 37, 500])
def test_a_cut_view_draws_exactly_the_first_tokens_and_says_so(limit, toy_bpe):
    for tok in tokenizers(LONG, toy_bpe):
        result = pg.tokenize(tok, LONG)
        view = pg.token_spans_html(LONG, result, tok, show_whitespace=False, max_tokens=limit)
        drawn = SPAN.findall(view)
        assert [int(i) for i, _ in drawn] == result.ids[:limit]
        assert drawn_text(view) == LONG[: result.spans[limit - 1][1]]
        rest = result.n_tokens - limit
        assert f"… {rest:,} more tokens not drawn (showing the first {limit:,} of {result.n_tokens:,} tokens)" in view


def test_drawn_note_and_tall_views():
    assert pg.drawn_note(10_000, 500) == "showing the first 500 of 10,000 tokens"
    assert pg.drawn_note(500, 500) == "showing all 500 tokens"
    assert pg.drawn_note(1, 500) == "showing all 1 token"
    tok = ByteTokenizer()
    result = pg.tokenize(tok, LONG)
    tall = pg.token_spans_html(LONG, result, tok, max_tokens=2_000)  # ~21 lines of LONG
    few = pg.token_spans_html(LONG, result, tok, max_tokens=500)  # ~6 lines: fits the box
    one_line = pg.token_spans_html("x" * 2_700, pg.tokenize(tok, "x" * 2_700), tok, max_tokens=3_000)
    empty = pg.token_spans_html("", pg.tokenize(tok, ""), tok)
    assert '<div class="tg-tokens tg-tall">' in tall and '<div class="tg-tokens tg-tall">' in one_line
    assert '<div class="tg-tokens">' in few and '<div class="tg-tokens">' in empty


# ---------------------------------------------------------------------------------------------
# The cache: same answers, no re-encoding, bounded memory, never another tokenizer's results
# ---------------------------------------------------------------------------------------------


def test_cache_answers_equal_fresh_ones_and_are_reused(toy_bpe):
    cache = pg.TokenizedCache(max_bytes=10**8)
    for text in [*ODD, LONG]:
        for tok in tokenizers(text, toy_bpe):
            first = cache.tokenize(tok, text)
            fresh = pg.tokenize(tok, text)
            assert (first.ids, first.spans, first.n_chars, first.n_bytes) == (
                fresh.ids, fresh.spans, fresh.n_chars, fresh.n_bytes)
    misses = cache.misses
    # a char or byte tokenizer rebuilt from the same content (as the page does each rerun) hits
    assert cache.tokenize(ByteTokenizer(), LONG) is cache.tokenize(ByteTokenizer(), LONG)
    assert cache.tokenize(CharTokenizer.from_text(LONG), LONG).n_tokens == len(LONG)
    assert cache.misses == misses
    after = cache.after_merges(toy_bpe, LONG, 5)
    assert after.ids == pg.tokenize_after_merges(toy_bpe, LONG, 5).ids
    assert cache.after_merges(toy_bpe, LONG, 5) is after
    n = len(toy_bpe.merges)  # every merge: the replay shares the BPE card's cut
    for text in [*ODD, LONG]:
        full = cache.after_merges(toy_bpe, text, n)
        slow = pg.tokenize_after_merges(toy_bpe, text, n)
        assert (full.ids, full.spans) == (slow.ids, slow.spans)
        assert full is cache.tokenize(toy_bpe, text)


def test_compare_reads_the_cached_counts_instead_of_encoding_again(toy_bpe):
    cache = pg.TokenizedCache(max_bytes=10**8)
    named = {"byte": ByteTokenizer(), "bpe": toy_bpe, "char-ascii": CharTokenizer.from_text("abc ")}
    for text in [*ODD, LONG]:
        plain = compare(text, named)
        cached = compare(text, named, count=lambda tok, t: cache.tokenize(tok, t).n_tokens)
        assert cached == plain  # same numbers, and the same error row for the char tokenizer
    hits = cache.hits
    compare(LONG, named, count=lambda tok, t: cache.tokenize(tok, t).n_tokens)
    assert cache.hits == hits + 2  # byte and bpe answered from the cache; char raised again


def test_errors_are_not_cached():
    cache = pg.TokenizedCache(max_bytes=10**8)
    tok = CharTokenizer.from_text("abc")
    for _ in range(2):
        with pytest.raises(TokenizerError):
            cache.tokenize(tok, "abcd")
    assert len(cache) == 0 and cache.misses == 2


def test_cache_memory_is_bounded_however_many_texts_arrive():
    bound = 2 * 2**20
    cache = pg.TokenizedCache(max_bytes=bound)
    tok = ByteTokenizer()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(400):  # 400 visitors × 5,000 bytes: ~320 MB if nothing were evicted
            cache.tokenize(tok, f"{i:05d}" + "é" * 2_500)
            assert cache.nbytes <= bound
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    one = sys.getsizeof("00000" + "é" * 2_500) + pg.BYTES_PER_TOKEN * 5_005  # its bytes, as costed
    assert len(cache) == bound // one == 2  # the latest texts, the oldest evicted
    assert grown < 1.5 * bound  # the byte estimate is an upper bound of what is really held
    # a single text bigger than the whole budget is answered but not kept
    huge = cache.tokenize(tok, "x" * 20_000)
    assert huge.n_tokens == 20_000 and all(e[0] is not huge for e in cache._entries.values())


def test_default_bound_is_a_share_of_the_memory_budget(monkeypatch):
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "512MiB")
    assert pg.TokenizedCache().max_bytes == 16 * 2**20  # 1/32 of 512 MiB
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "64GiB")
    assert pg.TokenizedCache().max_bytes == pg.MAX_CACHE_BYTES


def test_a_new_tokenizer_never_sees_a_collected_ones_results():
    cache = pg.TokenizedCache(max_bytes=10**8)
    text = "aaab aaab abab"
    for corpus in ["aaab " * 50, "abab " * 50] * 3:  # same class, name and vocab size each time
        bpe = BPETokenizer.train(corpus, 258, split_pattern=None)
        assert cache.tokenize(bpe, text).ids == bpe.encode(text)
        del bpe
        gc.collect()
    cache.tokenize(ByteTokenizer(), "x")  # purges what the collected ones left
    assert len(cache) == 1 and not cache._owners


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def open_page_with(text: str) -> AppTest:
    at = open_tab(open_page(timeout=60), BPE)
    at.selectbox(key="tok_corpus").select("toy-english").run()
    return set_text(open_tab(at, COMPARE), text)


def test_page_draws_the_first_tokens_of_a_long_text_and_counts_all_of_it(offline):
    at = open_page_with(LONG)
    rows = compare_rows(at)
    assert rows["byte"] == len(LONG.encode()) and rows["char"] == len(LONG)
    notes = [c.value for c in at.caption if c.value.startswith("Drawn below:")]
    assert f"Drawn below: showing the first 500 of {len(LONG):,} tokens" in notes[0]
    assert f"showing the first 500 of {len(LONG.encode()):,} tokens" in notes[1]
    views = [h.proto.body for h in at.html if 'title="id ' in h.proto.body]
    assert all(len(SPAN.findall(v)) == pg.MAX_SHOWN_TOKENS for v in views)
    char_view = next(v for v in views if drawn_text(v).startswith("The·"))
    assert drawn_text(char_view).replace("·\u200b", " ").replace("↵", "") == LONG[:500]
    # the style sheet is drawn once, not once per view
    assert sum("<style>" in h.proto.body for h in at.html if "tg-tokens{" in h.proto.body) == 1
    assert all("<style>" not in v for v in views)


def test_a_rerun_with_the_same_text_reuses_every_cut(offline):
    at = open_page_with(LONG)
    misses = pg.TOKENIZED.misses
    at.toggle(key="tok_show_ws").set_value(False).run()
    assert not at.exception
    assert pg.TOKENIZED.misses == misses  # every card and the comparison hit
    assert any("not drawn" in h.proto.body for h in at.html)
    at = open_tab(at, BPE)  # the replay starts at all merges: the BPE card's own cut
    assert any("Your text after" in m.value for m in at.markdown)
    assert pg.TOKENIZED.misses == misses
    at.slider(key="tok_merge_k").set_value(10).run()
    assert pg.TOKENIZED.misses == misses + 1  # a new number of merges is cut once ...
    at.toggle(key="tok_show_ws").set_value(True).run()
    assert pg.TOKENIZED.misses == misses + 1  # ... and then reused
