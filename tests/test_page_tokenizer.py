"""The tokenizer playground: toygpt.lessons.playground's computations, and the page driven through AppTest.

Offline throughout: tiktoken's cache points at an empty folder and downloads are switched off,
so the tiktoken choices must show as unavailable (never raise).
"""

from __future__ import annotations

import dataclasses
import html
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from pages._shared import plain
from tests.playground_page import (
    BPE,
    CELL,
    COMPARE,
    ROW,
    bodies,
    compare_rows,
    comparison,
    open_page,
    open_tab,
    set_text,
)
from toygpt.data import load_corpus
from toygpt.lessons import playground as pg
from toygpt.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, compare
from toygpt.tokenizers import tiktoken_ as tiktoken_module

SPAN = re.compile(r'<span(?: class="[^"]*")? title="id (\d+) ')
TEXT_SAMPLES = ["hello world", "héllo\n\twörld  ", "你好 🙂👍🏽 e\u0301", "<b>&amp;</b>", "a"]


@pytest.fixture(scope="module")
def toy_bpe() -> BPETokenizer:
    return BPETokenizer.train(load_corpus("toy-english", 0), 400)


# ---------------------------------------------------------------------------------------------
# toygpt.lessons.playground
# ---------------------------------------------------------------------------------------------

text_strategy = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(text=text_strategy)
def test_spans_tile_the_text_and_every_token_is_drawn(text, toy_bpe):
    for tok in (ByteTokenizer(), CharTokenizer.from_text(text or "x"), toy_bpe):
        result = pg.tokenize(tok, text)
        assert "".join(text[s:e] for s, e in result.spans) == text
        assert result.n_bytes == len(text.encode("utf-8"))
        drawn = [int(i) for i in SPAN.findall(pg.token_spans_html(text, result, tok))]
        assert drawn == result.ids


@settings(max_examples=40, deadline=None)
@given(text=text_strategy)
def test_html_never_contains_user_markup(text):
    hostile = f"<script>alert(1)</script><img src=x onerror=alert(2)>{text}\"'&"
    for tok in (CharTokenizer.from_text(hostile), ByteTokenizer()):
        page = pg.token_spans_html(hostile, pg.tokenize(tok, hostile), tok, show_whitespace=False)
        assert "<script" not in page and "<img" not in page
        # the span bodies, unescaped, give back the text exactly: escaped, not dropped or mangled
        assert "".join(html.unescape(b) for b in re.findall(r">([^<]*)</span>", page)) == hostile


def test_byte_tokens_of_one_character_are_all_visible():
    tok = ByteTokenizer()
    page = pg.token_spans_html("🙂", pg.tokenize(tok, "🙂"), tok)
    assert page.count("tg-part") - pg.TOKEN_CSS.count("tg-part") == 3  # 4 bytes: 1 char + 3 bars
    assert 'title="id 240 · &lt;0xF0&gt; · bytes F0"' in page


def test_whitespace_and_invisible_characters_are_made_visible():
    assert pg.visible_html("a b\n\t") == "a·\u200bb↵\n⇥\t"
    assert pg.visible_html("a b\n", show_whitespace=False) == "a b\n"
    assert pg.visible_html("\u00a0") == "<i>&lt;U+00A0&gt;</i>"  # a no-break space is not a space


def test_long_text_draws_a_bounded_number_of_spans():
    text = "ab" * 5000
    result = pg.tokenize(ByteTokenizer(), text)
    page = pg.token_spans_html(text, result, ByteTokenizer(), max_tokens=100)
    assert len(SPAN.findall(page)) == 100
    assert "9,900 more tokens not drawn" in page


def test_merges_table_known_answer_and_bounds():
    bpe = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    assert [(r["merge"], r["new token"], r["count"]) for r in pg.merges_table(bpe, 2)] == [
        (2, "ab", 2), (1, "aa", 4)]
    assert pg.merges_table(bpe, 0) == []
    with pytest.raises(ValueError, match="n_merges"):
        pg.merges_table(bpe, 4)


def test_replay_after_merges_goes_from_bytes_to_the_full_tokenizer(toy_bpe):
    text = "the small fox chases a red ball ."
    counts = [pg.tokenize_after_merges(toy_bpe, text, k).n_tokens for k in range(len(toy_bpe.merges) + 1)]
    assert counts[0] == len(text.encode())
    assert counts[-1] == len(toy_bpe.encode(text)) < counts[0]
    assert all(b <= a for a, b in zip(counts, counts[1:], strict=False))  # merges never lengthen


@settings(max_examples=60, deadline=None)
@given(word=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12),
       fraction=st.floats(0, 1))
def test_word_steps_end_where_the_encoder_ends(word, fraction, toy_bpe):
    k = round(fraction * len(toy_bpe.merges))
    steps = pg.word_merge_steps(toy_bpe, word, k)
    expected = [toy_bpe.token_label(i) for i in toy_bpe.encode_after_merges(word, k)]
    assert steps[-1] == expected
    assert steps[0] == [toy_bpe.token_label(b) for b in word.encode("utf-8")]
    assert [len(s) for s in steps] == sorted((len(s) for s in steps), reverse=True)


def test_char_tokenizer_from_a_corpus_marks_what_it_lacks():
    tok, missing = pg.char_tokenizer_for("naïve 🙂", corpus="the naive cat")
    assert missing == ["ï", "🙂"]
    page = pg.token_spans_html("naïve 🙂", pg.tokenize(tok, "naïve 🙂"), tok)
    assert page.count("tg-special") - pg.TOKEN_CSS.count("tg-special") == 2


def test_comparison_table_shows_failed_rows_and_scales_its_bars():
    text = "naïve"
    rows = compare(text, {"byte": ByteTokenizer(), "char-ascii": CharTokenizer.from_text("nave"),
                          "char": CharTokenizer.from_text(text)})
    table = pg.comparison_table_html(rows)
    cells = {name: dict(CELL.findall(body)) for name, body in ROW.findall(table)}
    assert cells["byte"]["tokens"] == "6" and cells["char"]["tokens"] == "5"
    assert cells["char-ascii"] == {}  # the failed row draws no bars, it says why
    assert rows[1]["error"] and html.escape(rows[1]["error"]) in table.split('data-tokenizer="char-ascii"')[1]

    def bar(name: str, column: str) -> float:
        part = table.split(f'data-tokenizer="{name}"')[1].split(f'data-column="{column}"')[1]
        return float(re.search(r"width:([\d.]+)%", part).group(1))
    assert bar("byte", "tokens") == 100.0 and bar("char", "tokens") == round(100 * 5 / 6, 1)
    # vocabulary sizes on a log scale: 256 against the largest (256) is full; 5 chars is log 5 / log 256
    assert bar("byte", "vocab_size") == 100.0
    assert bar("char", "vocab_size") == round(100 * math.log(5) / math.log(256), 1)


def test_comparison_table_escapes_tokenizer_names_and_errors():
    rows = [{"tokenizer": "<b>x</b>", "vocab_size": 3, "tokens": None, "chars_per_token": None,
             "bytes_per_token": None, "chars_per_block": None, "error": "<img src=x onerror=alert(1)>"}]
    table = pg.comparison_table_html(rows)
    assert "<b>" not in table and "<img" not in table and "&lt;img" in table


# ---------------------------------------------------------------------------------------------
# The page, through AppTest
# ---------------------------------------------------------------------------------------------


def table_with(at: AppTest, column: str):
    """The first dataframe on the page with this column (AppTest does not keep their keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_page_renders_the_sample_through_each_tokenizer(offline):
    at = open_page()
    assert at.text_area(key="tok_text").value == pg.SAMPLE_TEXT
    rows = compare_rows(at)
    assert rows["byte"] == len(pg.SAMPLE_TEXT.encode("utf-8"))
    assert rows["char"] == len(pg.SAMPLE_TEXT)
    assert any(name.startswith("bpe-") for name in rows)
    # each bar is its value against the column's largest: the byte row has the most tokens
    (table,) = [b for b in bodies(at) if 'class="tg-compare"' in b]
    byte_row = table.split('data-tokenizer="byte"')[1].split("</tr>")[0]
    assert f'data-column="tokens" data-value="{rows["byte"]}"><span class="tg-bar" style="width:100.0%"' in byte_row
    assert sum('title="id ' in body for body in bodies(at)) >= 3  # one span view per tokenizer
    assert not at.get("plotly_chart") and not at.dataframe  # the BPE tab is closed: nothing of it ran


def test_tokenizing_updates_the_counts(offline):
    at = set_text(open_page(), "hello world")
    assert compare_rows(at)["byte"] == 11
    assert any(m.value.startswith("**11 tokens**") for m in at.markdown)
    at = set_text(at, "héllo wörld 🙂")
    rows = compare_rows(at)
    assert (rows["byte"], rows["char"]) == (18, 13)
    assert any(m.value.startswith("**18 tokens**") for m in at.markdown)


def test_the_merge_slider_changes_the_tokenization(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("toy-english").run()
    at = set_text(at, "the small fox chases a red ball .")

    def replay() -> tuple[str, str]:
        line = next(m.value for m in at.markdown if m.value.startswith("Your text after"))
        spans = [b for b in bodies(at) if 'title="id ' in b][-1]  # the replay: the last view
        return line, spans

    at.slider(key="tok_merge_k").set_value(0).run()
    assert not at.exception
    line_at_0, spans_at_0 = replay()
    assert "**33 tokens**" in line_at_0  # 0 merges: one token per byte
    at.slider(key="tok_merge_k").set_value(60).run()
    line_at_60, spans_at_60 = replay()
    assert line_at_60 != line_at_0 and spans_at_60 != spans_at_0
    assert int(re.search(r"\*\*(\d+) tokens", line_at_60).group(1)) < 33
    assert len(table_with(at, "new token")) == 60


def test_user_text_is_escaped_on_the_page(offline):
    at = set_text(open_page(), '<img src=x onerror="alert(1)"> & <b>bold</b>')
    page = "".join(bodies(at))
    assert "<img" not in page and "<b>" not in page
    assert "&lt;" in page and "onerror=&quot;" not in page  # escaped text, never an attribute


def test_gpt2_and_cl100k_base_work_offline_with_an_empty_cache(offline, tmp_path):
    """A fresh install with no network: the pinned packages' files give GPT-2's and GPT-4's
    tokenizers, drawn by default beside toygpt's own (known answer: "hello world" is 2 tokens)."""
    at = set_text(open_page(), "hello world")
    assert not at.exception and not at.info
    assert compare_rows(at)["gpt2"] == 2 and compare_rows(at)["cl100k_base"] == 2
    spans = "".join(bodies(at))
    assert 'title="id 31373' in spans and 'title="id 15339' in spans  # "hello" in each vocabulary
    assert not (tmp_path / "tiktoken-empty").exists()  # read from the packages, nothing cached


def test_o200k_base_offline_is_one_short_line_not_an_error(offline):
    at = open_page()
    at.multiselect(key="tok_choice").select("o200k_base").run()
    assert not at.exception
    (line,) = [i.value for i in at.info if "o200k_base" in i.value]
    assert "downloaded on first use (about 3.6 MB)" in line and "/" not in line  # no cache paths
    at.button(key="tok_fetch_o200k_base").click().run()
    assert not at.exception
    assert any("TOYGPT_OFFLINE" in e.value for e in at.error)
    assert "o200k_base" not in compare_rows(at)  # the others still work


def test_empty_text_and_no_merges_are_explained(offline):
    at = set_text(open_page(), "")
    assert any("Type or paste" in i.value for i in at.info)
    at = open_tab(at, BPE)
    at.slider(key="tok_vocab").set_value(256).run()
    assert not at.exception
    assert any("no merges" in i.value for i in at.info)


def test_char_vocabulary_from_the_corpus_shows_unknowns(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("toy-english").run()
    at = set_text(open_tab(at, COMPARE), "the fox 🙂 café")
    at.radio(key="tok_char_source").set_value("the BPE corpus").run()
    assert not at.exception
    assert any("<unk>" in c.value and "BPE corpus" in c.value for c in at.caption)
    assert any("tg-special" in b.split("</style>")[-1] for b in bodies(at))


def test_training_on_an_uploaded_file_and_a_bad_upload(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("__upload__").run()
    assert any("Upload a text file" in i.value for i in at.info)
    at.file_uploader(key="tok_upload").set_value(("latin1.txt", "café".encode("latin-1"), "text/plain"))
    at.run()
    assert not at.exception
    assert any("not UTF-8" in e.value for e in at.error)
    at.file_uploader(key="tok_upload").set_value(("mine.txt", b"abab abab abab cdcd " * 50, "text/plain"))
    at.run()
    assert not at.exception
    assert any("Trained on mine.txt" in c.value for c in at.caption)
    # the Compare tab's BPE card trains on it too, where the file widget is not drawn
    at = set_text(open_tab(at, COMPARE), "abab cdcd")
    bpe_rows = {name: n for name, n in compare_rows(at).items() if name.startswith("bpe-")}
    assert list(bpe_rows.values()) == [2]  # "abab" and " cdcd": both learned whole
    # back on the BPE tab, the upload is still what it trains on
    at = open_tab(at, BPE)
    assert any("mine.txt, uploaded earlier" in c.value for c in at.caption)
    assert any("Trained on mine.txt" in c.value for c in at.caption)
    # a bad file next is refused, and the previous upload is not used under its name
    at.file_uploader(key="tok_upload").set_value(("bad.txt", b"\xff\xfe", "text/plain")).run()
    assert any("not UTF-8" in e.value for e in at.error)
    assert not any("Trained on mine.txt" in c.value for c in at.caption)


def test_the_active_runs_char_tokenizer_marks_what_the_model_cannot_read(offline, tiny_config):
    from toygpt.model import GPT
    from toygpt.runs import create_run
    from toygpt.train import TrainConfig

    tokenizer = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ABCDEF")
    model = GPT(dataclasses.replace(tiny_config, vocab_size=tokenizer.vocab_size), seed=0)
    run = create_run(name="tok-page", corpus="toy", tokenizer_spec="char", tokenizer=tokenizer,
                     model=model, train_config=TrainConfig(max_steps=1))
    run.update_info(status="finished")
    at = open_page()
    at.session_state["active_run"] = run.id  # what the sidebar's model picker stores
    at = set_text(at, "a cat é")
    at.multiselect(key="tok_choice").set_value(["run"]).run()
    assert not at.exception
    assert any("could not read the whole text" in w.value for w in at.warning)
    # the card draws the text through a display-only <unk>; the table says the model cannot
    # read it (no token count), and both give the model's own vocabulary, not one more
    row = f"{run.id} (char)"
    assert compare_rows(at) == {} and comparison(at) == {row: {}}
    (table,) = [b for b in bodies(at) if 'class="tg-compare"' in b]
    assert "not in this character vocabulary" in table.split(f'data-tokenizer="{row}"')[1]
    assert any(f"vocabulary {tokenizer.vocab_size:,}" in m.value for m in at.markdown if "tokens**" in m.value)


def test_huge_paste_is_capped_with_a_message(offline):
    at = set_text(open_page(), "x" * 150_000)
    assert any("only the first 100,000" in w.value for w in at.warning)
    assert compare_rows(at)["byte"] == 100_000


def test_a_corpus_not_downloaded_is_fetched_only_on_request(offline, monkeypatch):
    import toygpt.data
    from toygpt.data import CorpusError

    calls = []

    def no_network(name, url=None, timeout=5.0):
        calls.append(name)
        raise CorpusError(f"could not download {name} (test: offline)")

    monkeypatch.setattr(toygpt.data, "download_corpus", no_network)
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("shakespeare").run()
    assert not at.exception and calls == []  # drawing the page never reaches for the network
    assert any("not on this machine" in w.value for w in at.warning)
    at = open_tab(at, COMPARE)
    assert any("Choose a training corpus" in i.value for i in at.info)  # the BPE card waits
    assert calls == []
    at = open_tab(at, BPE)
    at.button(key="tok_corpus_missing_download").click().run()
    assert not at.exception and calls == ["shakespeare"]
    assert any("test: offline" in e.value for e in at.error)


def test_a_missing_corpus_can_be_uploaded_here_as_on_the_training_page(offline, shakespeare_path):
    """Case 8 (issue 13): the playground offered only "Download shakespeare" (and, offline, a CLI
    command); every page that needs a corpus now offers the same checked upload."""
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("shakespeare").run()
    upload = at.file_uploader(key="tok_corpus_missing_file")
    upload.set_value(("input.txt", b"not it", "text/plain")).run()
    (error,) = [e.value for e in at.error]
    # it names the user's file, not a temporary path, and does not ask for what was just done
    assert error.startswith("The uploaded file input.txt is not the expected shakespeare file")
    assert "/" not in error.split("sha256")[0] and "Upload the file here" not in error
    assert "python -m" not in error
    at.file_uploader(key="tok_corpus_missing_file").set_value(
        ("input.txt", shakespeare_path.read_bytes(), "text/plain")).run()
    assert not at.exception
    assert any(c.value.startswith("Trained on shakespeare") for c in at.caption)


def test_training_on_the_text_itself(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("__text__").run()
    at = set_text(at, "low lower lowest " * 30)
    assert any(c.value.startswith("Trained on the text above") for c in at.caption)
    rows = compare_rows(open_tab(at, COMPARE))
    # trained on this very text, every word (with its leading space) became one token:
    # 90 words + the final space, against 510 bytes
    assert rows[next(name for name in rows if name.startswith("bpe-"))] == 91
    assert rows["byte"] == 510


def test_how_many_tokens_are_drawn_is_the_users_choice(offline):
    at = set_text(open_page(), "ab" * 1000)
    byte_view = next(b for b in bodies(at) if 'title="id 97 · a · bytes 61"' in b)
    assert len(SPAN.findall(byte_view)) == pg.MAX_SHOWN_TOKENS
    assert "500 more tokens not drawn" in byte_view
    at.select_slider(key="tok_max_drawn").set_value(5000).run()
    assert not at.exception
    assert all("not drawn" not in b for b in bodies(at))
    assert compare_rows(at)["byte"] == 2000  # counts never depended on the drawing


def test_choices_survive_a_visit_to_another_page(offline):
    at = open_tab(set_text(open_page(), "hello again"), BPE)
    at.slider(key="tok_vocab").set_value(320).run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/tokenizer.py").run()
    assert not at.exception
    assert at.text_area(key="tok_text").value == "hello again"
    assert next(n for name, n in compare_rows(open_tab(at, COMPARE)).items() if name.startswith("bpe-"))
    assert at.session_state["tok_vocab"] == 320
    assert open_tab(at, BPE).slider(key="tok_vocab").value == 320


def test_a_cached_tiktoken_encoding_gets_a_card_like_the_others(offline, toy_bpe):
    from toygpt.tokenizers import TiktokenTokenizer

    # stands in for a cached o200k_base (built locally from our own merges: nothing is downloaded)
    tiktoken_module._loaded["o200k_base"] = TiktokenTokenizer(toy_bpe.tiktoken_encoding())
    at = open_page()
    at = set_text(at, "the small fox")
    at.multiselect(key="tok_choice").set_value(["byte", "o200k_base"]).run()
    assert not at.exception and not at.warning
    assert compare_rows(at) == {"byte": 13, "o200k_base": len(toy_bpe.encode("the small fox"))}


# ---------------------------------------------------------------------------------------------
# What a new user found (fresh-eyes test of the two-tab page)
# ---------------------------------------------------------------------------------------------


def replay_tokens(at: AppTest) -> int:
    line = next(m.value for m in at.markdown if m.value.startswith("Your text after"))
    return int(re.search(r"\*\*([\d,]+) tokens?\*\*", line).group(1).replace(",", ""))


def test_the_replay_starts_at_the_finished_tokenizer_again_when_the_bpe_changes(offline):
    """The slider stayed at the old corpus's 189 merges after a change to 256 (or 3,840), so the
    replay said 393 tokens where the Compare card said 385."""
    at = set_text(open_tab(open_page(), BPE), "the small fox chases a red ball . " * 3)
    at.selectbox(key="tok_corpus").select("toy-english").run()
    first = at.slider(key="tok_merge_k")
    assert first.value == first.max > 0
    for widget, key, value in (("selectbox", "tok_corpus", "copy"), ("slider", "tok_vocab", 1024)):
        element = getattr(at, widget)(key=key)
        (element.select(value) if widget == "selectbox" else element.set_value(value)).run()
        slider = at.slider(key="tok_merge_k")
        assert slider.value == slider.max and slider.max != first.max
        card = next(n for name, n in compare_rows(open_tab(at, COMPARE)).items() if name.startswith("bpe-"))
        at = open_tab(at, BPE)
        assert replay_tokens(at) == card
    at.slider(key="tok_merge_k").set_value(3).run()  # a position the user chose is kept ...
    at.slider(key="tok_vocab").set_value(1024).run()  # ... while the BPE stays the same
    assert at.slider(key="tok_merge_k").value == 3


def test_downloads_do_not_rerun_and_uploads_say_the_pages_own_limit(offline):
    """A download's rerun dropped the other button's file ("Deferred file … not found"), and the
    upload widget said '1GB per file' under a 5 MB label."""
    at = open_tab(open_page(), BPE)
    buttons = at.get("download_button")
    assert len(buttons) == 2 and all(b.proto.ignore_rerun for b in buttons)
    at.selectbox(key="tok_corpus").select("__upload__").run()
    (uploader,) = at.get("file_uploader")
    assert uploader.proto.max_upload_size_mb == 5


def test_an_upload_too_big_or_named_like_markdown_is_shown_plainly(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("__upload__").run()
    at.file_uploader(key="tok_upload").set_value(("big.txt", b"ab " * 1_700_001, "text/plain")).run()
    (error,) = [e.value for e in at.error]
    assert "5,000,000" in error and "max_bytes" not in error and error[0].isupper()
    at.file_uploader(key="tok_upload").set_value(("**b** [x](y) $z$.txt", b"abab abab cdcd " * 40, "text/plain")).run()
    # escaped for markdown: drawn as the literal name, no bold, link or formula
    assert any(c.value.startswith(f"Trained on {plain('**b** [x](y) $z$.txt')}:") for c in at.caption)
    assert plain("**b** [x](y) $z$.txt").startswith("\\*\\*b")


def test_a_corpus_with_nothing_to_merge_is_not_blamed_on_the_vocabulary_size(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("__upload__").run()
    at.file_uploader(key="tok_upload").set_value(("one.txt", b"a", "text/plain")).run()
    assert any("1 character → 256 byte tokens + 0 merges" in c.value for c in at.caption)
    (info,) = [i.value for i in at.info]
    assert "gave no merges" in info and "raise the vocabulary size" not in info


def test_removing_the_uploaded_file_stops_training_on_it(offline):
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("__upload__").run()
    at.file_uploader(key="tok_upload").set_value(("mine.txt", b"abab abab abab cdcd " * 50, "text/plain")).run()
    assert any("Trained on mine.txt" in c.value for c in at.caption)
    at.file_uploader(key="tok_upload").set_value(None).run()  # its ✕
    assert not any("mine.txt" in c.value for c in at.caption)
    assert any("Upload a text file" in i.value for i in at.info)
    at = open_tab(at, COMPARE)
    assert not any(name.startswith("bpe-") for name in compare_rows(at))


def test_the_open_tab_is_kept_for_the_next_visit(offline):
    at = open_page()
    at.session_state["tok_tab_kept"] = BPE  # what the tabs' on_change stores when BPE is clicked
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/tokenizer.py").run()
    assert not at.exception and at.session_state["tok_tab"] == BPE
    assert at.slider(key="tok_vocab")  # the BPE tab ran


def test_counts_of_one_are_singular_and_long_unknown_lists_say_how_many_more(offline):
    at = set_text(open_page(), "x")
    assert any(m.value.startswith("**1 token** · 1 character · 1 byte") for m in at.markdown)
    at = open_tab(at, BPE)
    at.selectbox(key="tok_corpus").select("toy-english").run()
    strange = "".join(chr(0x4E00 + i) for i in range(45))  # 45 characters toy-english never shows
    at = set_text(open_tab(at, COMPARE), "the fox " + strange)
    at.radio(key="tok_char_source").set_value("the BPE corpus").run()
    (caption,) = [c.value for c in at.caption if "are not among them" in c.value]
    assert "45 characters of this text" in caption and caption.endswith("and 5 more")


def test_the_comparison_table_never_writes_an_exponent():
    rows = compare(" " * 1000, {"byte": ByteTokenizer(), "char": CharTokenizer.from_text(" ")})
    rows.append({"tokenizer": "wide", "vocab_size": 100_277, "tokens": 9, "chars_per_token": 111.1,
                 "bytes_per_token": 111.1, "chars_per_block": 7110.9, "error": None})
    table = pg.comparison_table_html(rows)
    assert "e+" not in table and ">7,111</td>" in table and ">111</td>" in table


def test_a_new_upload_replaces_the_failed_downloads_message(offline, monkeypatch):
    import toygpt.data
    from toygpt.data import CorpusError

    def no_network(name, url=None, timeout=5.0):
        raise CorpusError(f"could not download {name} (test: offline)")

    monkeypatch.setattr(toygpt.data, "download_corpus", no_network)
    at = open_tab(open_page(), BPE)
    at.selectbox(key="tok_corpus").select("shakespeare").run()
    at.button(key="tok_corpus_missing_download").click().run()
    assert [e.value for e in at.error if "test: offline" in e.value]
    at.file_uploader(key="tok_corpus_missing_file").set_value(("mine.txt", b"not it", "text/plain")).run()
    errors = [e.value for e in at.error]
    assert not any("test: offline" in e for e in errors)  # old news once a file arrived
    assert any(e.startswith("The uploaded file mine.txt") for e in errors)
