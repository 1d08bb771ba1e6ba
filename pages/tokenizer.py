"""Tokenizer playground: your text through several tokenizers, and a BPE you train here.

UI only: the spans, replays and comparisons are computed by ``toygpt.lessons.playground`` over
``toygpt.tokenizers``. Layout: the text and how tokens are drawn, then two tabs: "Compare
tokenizers" (one card per tokenizer and the comparison table) and "Train your own BPE" (its
corpus and vocabulary, the merge-by-merge replay, an unknown word cut into pieces).

The tabs run lazily (``st.tabs`` given an ``on_change`` callback, which also keeps the open tab
for the next visit): only the open one is computed and sent to the browser, so a new text redraws one tab's views, not both. In Chromium here the
whole page took ~590 ms from Ctrl+Enter to painted for a 10,000-character text, half of it
the browser drawing elements the text had not changed (``bench/app_latency.py``). The BPE
that the Compare tab's card uses is set up from the BPE tab's settings, which keep their values
while that tab is closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from pages._shared import (
    active_model,
    capped_text,
    corpus_missing_ui,
    current_seed,
    in_app_words,
    plain,
    show_source,
)
from toygpt.data import CorpusError, cached_corpus_path, list_corpora, load_corpus, read_user_text
from toygpt.formatting import counted, short_number
from toygpt.lessons import playground as pg
from toygpt.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    TokenizerError,
    TokenizerUnavailable,
    UnknownCharactersError,
    available_tokenizers,
    compare,
    get_tiktoken,
    learn_merges,
)
from toygpt.tokenizers.base import visible_char
from toygpt.tokenizers.bpe import bpe_merge_steps

TIKTOKEN_CHOICES = ("gpt2", "cl100k_base", "o200k_base")
CHOICES = ("char", "byte", "bpe", "run", *TIKTOKEN_CHOICES)
CHOICE_LABELS = {
    "char": "char (one token per character)",
    "byte": "byte (one token per UTF-8 byte)",
    "bpe": "BPE (trained in the “Train your own BPE” tab)",
    "run": "the active model's tokenizer",
}
TEXT_CORPUS, UPLOAD_CORPUS = "__text__", "__upload__"
UPLOADED = "tok_uploaded_corpus"  # session key: (file name, text) of the last good upload
TABS = ("Compare tokenizers", "Train your own BPE")
MAX_UPLOAD_BYTES = 5_000_000  # BPE training on more would keep the page busy for many seconds
DEFAULT_WORD = "forestkeeper"
DRAW_LIMITS = (250, 500, 1500, 5000, 20000)
MAX_LISTED_IDS = 20000
KEEP = "session"  # widgets keep their values when the user visits another page and comes back

# ---------------------------------------------------------------------------------------------
# Cached work: corpora and BPE training run once per (corpus, vocabulary size), not per rerun.
# ---------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Loading the corpus…")
def corpus_text(name: str, seed: int) -> str:
    return load_corpus(name, seed)


@st.cache_resource(max_entries=16, show_spinner="Training BPE on the corpus…")
def trained_bpe(corpus: str, vocab_size: int) -> BPETokenizer:
    # Shared by every session: BPETokenizer is never changed after training (only read).
    return BPETokenizer.train(corpus, vocab_size)


# ---------------------------------------------------------------------------------------------
# Widgets
# ---------------------------------------------------------------------------------------------


def code_md(label: str) -> str:
    """A token label as inline code in markdown, safe even when it contains backticks or $."""
    return f"`` {label} ``"


def text_ui() -> str:
    st.session_state.setdefault("tok_text", pg.SAMPLE_TEXT)
    text = st.text_area("Your text", key="tok_text", persist_state=KEEP, height=210,
                        help="Paste anything: code, other scripts, emoji. Up to 100,000 characters.")
    return capped_text(text or "")


def tiktoken_status() -> dict[str, str | None]:
    """name -> None when usable, else why not (checks the local cache only: never the network)."""
    status = available_tokenizers()
    return {name: status.get(name) for name in TIKTOKEN_CHOICES}


def choice_label(choice: str, unavailable: dict[str, str | None]) -> str:
    if choice in CHOICE_LABELS:
        return CHOICE_LABELS[choice]
    return f"{choice} (tiktoken)" + (" — downloaded on first use" if unavailable.get(choice) else "")


@dataclass(frozen=True)
class Drawing:
    """How token spans are drawn: whitespace made visible or not, and at most how many tokens
    (for a long text the browser, not Python, is the slow part: in Chromium here, laying out
    2× the spans took 2–4× as long). The views share one style sheet, drawn once at the top
    of the page: a <style> in each view made the browser restyle the whole page per view."""

    show_whitespace: bool
    max_tokens: int

    def html(self, text: str, result: pg.Tokenized, tok: Tokenizer) -> str:
        return pg.token_spans_html(text, result, tok, show_whitespace=self.show_whitespace,
                                   max_tokens=self.max_tokens, css=False)

    def note(self, result: pg.Tokenized, ids: bool = True) -> None:
        """Say, above a view that does not draw every token, which ones it draws."""
        if result.n_tokens > self.max_tokens:
            st.caption(f"Drawn below: {pg.drawn_note(result.n_tokens, self.max_tokens)} (raise "
                       f"“Tokens drawn per tokenizer” to draw more); the counts{' and ids' if ids else ''} "
                       f"cover all {result.n_tokens:,}.")


def picker_ui(unavailable: dict[str, str | None]) -> tuple[list[str], Drawing, str]:
    """Which tokenizers, how spans are drawn, and where the char vocabulary comes from."""
    default = ["char", "byte", "bpe"] + [n for n in TIKTOKEN_CHOICES[:2] if not unavailable[n]]
    st.session_state.setdefault("tok_choice", default)
    chosen = st.multiselect("Tokenizers", CHOICES, key="tok_choice", persist_state=KEEP,
                            format_func=lambda c: choice_label(c, unavailable))
    left, mid, right = st.columns([1.5, 1.2, 1.6], vertical_alignment="center")  # room for its label at 800 px
    show_ws = left.toggle("Show whitespace", value=True, key="tok_show_ws",
                          persist_state=KEEP,
                          help="· space, ↵ newline, ⇥ tab, <U+200D> invisible characters")
    st.session_state.setdefault("tok_max_drawn", pg.MAX_SHOWN_TOKENS)
    max_drawn = mid.select_slider("Tokens drawn per tokenizer", DRAW_LIMITS, key="tok_max_drawn",
                                  persist_state=KEEP,
                                  format_func=lambda n: f"{n:,}",
                                  help="Counts and id lists always cover the whole text; drawing "
                                  "many more spans makes the page slow to update.")
    char_source = right.radio("Char vocabulary from", ["this text", "the BPE corpus"],
                              key="tok_char_source", persist_state=KEEP, horizontal=True,
                              help="From this text nothing is unknown; from the corpus, characters "
                              "it never showed become <unk> (outlined in red).")
    return chosen, Drawing(show_ws, max_drawn), char_source


def bpe_defaults() -> None:
    """The BPE tab's settings, set before either tab runs: the Compare tab's BPE card reads
    them while the BPE tab (and so its widgets) is closed."""
    default = "shakespeare" if cached_corpus_path("shakespeare").is_file() else "toy-english"
    st.session_state.setdefault("tok_corpus", default)
    st.session_state.setdefault("tok_vocab", 512)


@dataclass(frozen=True)
class Corpus:
    """The BPE's training corpus as chosen: its text (None when there is none yet), a short
    description, and what to tell the user when there is none (None: nothing to say)."""

    text: str | None
    description: str
    problem: str | None = None


def chosen_corpus(name: str, text: str) -> Corpus:
    """The corpus named by the BPE tab's choice, without drawing anything (both tabs use it)."""
    if name == TEXT_CORPUS:
        return Corpus(text or None, "the text above")
    if name == UPLOAD_CORPUS:
        uploaded = st.session_state.get(UPLOADED)
        if uploaded is None:
            return Corpus(None, "an upload", "Upload a text file to train the BPE on it.")
        return Corpus(uploaded[1], plain(uploaded[0]))
    info = {info.name: info for info in list_corpora()}.get(name)
    if info is None:
        return Corpus(None, str(name), f"There is no corpus called {name!r} any more: choose another.")
    if info.kind == "download" and not cached_corpus_path(name).is_file():
        return Corpus(None, name, f"{name} is not on this machine yet.")
    try:
        return Corpus(corpus_text(name, current_seed()), f"{name} (seed {current_seed()})")
    except CorpusError as exc:
        return Corpus(None, name, in_app_words(exc))


def corpus_ui(text: str) -> Corpus:
    """The BPE training corpus chosen by the user, with its widgets and messages."""
    infos = {info.name: info for info in list_corpora()}
    options = [*infos, TEXT_CORPUS, UPLOAD_CORPUS]
    names = {TEXT_CORPUS: "the text above", UPLOAD_CORPUS: "upload a .txt file"}
    name = st.selectbox("Training corpus", options, key="tok_corpus", persist_state=KEEP,
                        format_func=lambda n: names.get(n, n))
    if name == UPLOAD_CORPUS:
        upload_ui()
    elif name in infos:
        st.caption(infos[name].description)
        if infos[name].kind == "download" and not cached_corpus_path(name).is_file():
            corpus_missing_ui(name, "tok_corpus_missing")
            return Corpus(None, name)
    corpus = chosen_corpus(name, text)
    if corpus.problem and name == UPLOAD_CORPUS:
        st.info(corpus.problem)
    elif corpus.problem:
        st.error(corpus.problem)
    return corpus


def upload_ui() -> None:
    """A file to train on; a good one is kept (name, text) for the Compare tab and later reruns,
    where the file widget is not drawn and so holds nothing. Removing the file (its ✕) drops it:
    the widget then holds nothing on the very next run after it held the file."""
    upload = st.file_uploader("Corpus (UTF-8 .txt, at most 5 MB)", type=["txt"], key="tok_upload",
                              max_upload_size=MAX_UPLOAD_BYTES // 1_000_000)
    if upload is None:
        if UPLOAD_SHOWN_LAST_RUN:  # the user removed it
            st.session_state.pop(UPLOADED, None)
        elif st.session_state.get(UPLOADED):
            st.caption(f"Training on {plain(st.session_state[UPLOADED][0])}, uploaded earlier; upload "
                       "another file to replace it.")
        return
    st.session_state["tok_upload_shown"] = upload.file_id
    try:
        st.session_state[UPLOADED] = (upload.name, read_user_text(upload.getvalue(), max_bytes=MAX_UPLOAD_BYTES))
    except CorpusError as exc:
        st.error(in_app_words(exc))
        st.session_state.pop(UPLOADED, None)  # never train on the previous file under this name


def bpe_for(corpus: Corpus) -> tuple[BPETokenizer | None, str | None]:
    """(The BPE trained on ``corpus`` at the chosen vocabulary size (cached), None) or (None,
    why not)."""
    if not corpus.text:
        return None, None
    try:
        return trained_bpe(corpus.text, st.session_state["tok_vocab"]), None
    except TokenizerError as exc:
        return None, f"Cannot train on this corpus: {exc}"


def bpe_ui(text: str) -> tuple[BPETokenizer | None, str | None]:
    """Corpus + vocabulary size → (a trained BPE (cached), its corpus), with a line on what it
    learned. Either may be None (the page then says why)."""
    left, right = st.columns([2, 1])
    with left:
        corpus = corpus_ui(text)
    vocab_size = right.slider("Vocabulary size", 256, 4096, step=32, key="tok_vocab",
                              persist_state=KEEP,
                              help="256 byte tokens + one token per merge.")
    if not corpus.text:
        right.caption("No corpus to train on yet: the BPE appears once there is one.")
        return None, None
    bpe, problem = bpe_for(corpus)
    if bpe is None:
        st.error(problem)
        return None, corpus.text
    note = (f"Trained on {corpus.description}: {counted(len(corpus.text), 'character')} → 256 byte tokens + "
            f"{counted(len(bpe.merges), 'merge')} = {bpe.vocab_size:,} tokens.")
    if len(bpe.merges) < vocab_size - 256:
        note += (" Training stopped early: every word of this corpus is already one token, so "
                 "there was nothing left to merge.")
    right.caption(note)
    return bpe, corpus.text


def bpe_from_settings(text: str) -> tuple[BPETokenizer | None, str | None, str | None]:
    """For the Compare tab, the BPE tab closed: (the BPE its settings give, its corpus, why
    there is none), drawing nothing."""
    corpus = chosen_corpus(st.session_state["tok_corpus"], text)
    bpe, problem = bpe_for(corpus)
    return bpe, corpus.text, problem or corpus.problem


# ---------------------------------------------------------------------------------------------
# One card per tokenizer
# ---------------------------------------------------------------------------------------------


def resolve(choice: str, text: str, bpe: BPETokenizer | None, bpe_problem: str | None,
            char_corpus: str | None, unavailable: dict[str, str | None]) -> tuple[str, Tokenizer | None, Tokenizer | None]:
    """(title, the tokenizer the card draws with, the tokenizer itself) for a choice: the two
    differ only for the active model's char tokenizer, drawn through a copy with a display-only
    <unk> (one id past the model's). A None tokenizer means the card explained why."""
    if choice == "char":
        tok = char_tokenizer(text, char_corpus)
        return "char", tok, tok
    if choice == "byte":
        return "byte", ByteTokenizer(), ByteTokenizer()
    if choice == "bpe":
        if bpe is None:
            st.info(f"{bpe_problem + ' ' if bpe_problem else ''}Choose a training corpus in the "
                    f"“{TABS[1]}” tab to train the BPE.")
        return (bpe.name if bpe else "bpe"), bpe, bpe
    if choice == "run":
        return run_tokenizer(text)
    tok = tiktoken_tokenizer(choice, unavailable[choice])
    return choice, tok, tok


def char_tokenizer(text: str, corpus: str | None) -> Tokenizer | None:
    """The char tokenizer, built from the text or (when asked) from the BPE corpus; says which."""
    from_corpus = st.session_state.get("tok_char_source") == "the BPE corpus"
    if from_corpus and not corpus:
        st.caption("No BPE corpus is chosen yet, so the vocabulary comes from this text.")
    try:
        tok, missing = pg.char_tokenizer_for(text, corpus if from_corpus else None)
    except TokenizerError as exc:
        st.warning(f"No char vocabulary: {exc}")
        return None
    source = "the BPE corpus" if from_corpus and corpus else "this text"
    unknown = " ".join(code_md(visible_char(ch)) for ch in missing[:40])
    unknown += f" and {len(missing) - 40:,} more" if len(missing) > 40 else ""
    st.caption(f"Vocabulary: the {len(tok.chars):,} distinct characters of {source}"
               + (f"; {len(missing):,} characters of this text are not among them and show as "
                  f"<unk> (red outline): {unknown}" if missing else "."))
    return tok


def run_tokenizer(text: str) -> tuple[str, Tokenizer | None, Tokenizer | None]:
    active = active_model()
    if active is None:
        st.info("No model is active: pick one in the sidebar (or train one on the Training page).")
        return "active model", None, None
    tok, title = active.tokenizer, f"{active.run_id} ({active.tokenizer.name})"
    try:
        pg.TOKENIZED.tokenize(tok, text)  # the card reuses this
    except UnknownCharactersError as exc:
        st.warning(f"This model could not read the whole text: {in_app_words(exc)} They are drawn as <unk> here.")
        return title, pg.with_unknowns_shown(tok), tok
    except TokenizerError as exc:
        st.warning(str(exc))
        return title, None, None
    return title, tok, tok


def tiktoken_tokenizer(name: str, reason: str | None) -> Tokenizer | None:
    """A tiktoken encoding when its files are here; otherwise one line on why, and a fetch button."""
    if reason is None:
        try:
            return get_tiktoken(name)
        except TokenizerError as exc:
            st.warning(str(exc))
            return None
    st.info(f"**{name}** is {reason}; it is not on this machine yet.")
    if st.button(f"Try to download {name} (a few MB)", key=f"tok_fetch_{name}"):
        try:
            with st.spinner(f"Fetching {name}…"):
                get_tiktoken(name)
        except TokenizerUnavailable as exc:
            st.error(str(exc))
            return None
        st.rerun()
    return None


def card(title: str, tok: Tokenizer, text: str, drawing: Drawing, vocab_size: int) -> None:
    try:
        result = pg.TOKENIZED.tokenize(tok, text)
    except TokenizerError as exc:
        st.warning(f"{title} cannot encode this text: {in_app_words(exc)}")
        return
    st.markdown(
        f"**{counted(result.n_tokens, 'token')}** · {counted(result.n_chars, 'character')} · "
        f"{counted(result.n_bytes, 'byte')}"
        f" · {short_number(result.chars_per_token)} chars/token · {short_number(result.bytes_per_token)} bytes/token"
        f" · vocabulary {vocab_size:,}"
    )
    drawing.note(result)
    # the ids go in the same element, folded: one element less for the browser to draw per card
    st.html(drawing.html(text, result, tok) + pg.token_ids_html(result.ids, MAX_LISTED_IDS))


def comparison_ui(text: str, tokenizers: dict[str, Tokenizer]) -> None:
    st.subheader("Side by side: sequence length against vocabulary size")
    rows = compare(text, tokenizers, count=lambda tok, t: pg.TOKENIZED.tokenize(tok, t).n_tokens)
    st.html(pg.comparison_table_html(rows))
    st.caption(
        "Each bar is its value against the column's largest (vocabulary sizes on a log scale). "
        "A bigger vocabulary buys fewer, longer tokens — more text fits in a model's block_size "
        "(characters per 64 tokens) — at the price of a bigger embedding table and rarer tokens. "
        "Byte-level models such as MegaByte take the other end: 256 tokens, the longest "
        "sequences, and patches to keep attention affordable."
    )


def results_ui(chosen: list[str], text: str, drawing: Drawing, bpe: BPETokenizer | None,
               bpe_problem: str | None, corpus_for_char: str | None,
               unavailable: dict[str, str | None]) -> None:
    if not text:
        st.info("Type or paste some text above to see it tokenized.")
        return
    if not chosen:
        st.info("Choose at least one tokenizer.")
        return
    usable: dict[str, Tokenizer] = {}
    for choice in chosen:
        with st.container(border=True):
            st.markdown(f"#### {choice_label(choice, unavailable)}")
            title, tok, own = resolve(choice, text, bpe, bpe_problem, corpus_for_char, unavailable)
            if tok is not None:  # the table and the card's vocabulary are the tokenizer's own
                card(title, tok, text, drawing, own.vocab_size)
                usable[title if title not in usable else f"{title} ({choice})"] = own
    if usable:
        comparison_ui(text, usable)


# ---------------------------------------------------------------------------------------------
# Replaying BPE training
# ---------------------------------------------------------------------------------------------


def merge_slider_ui(bpe: BPETokenizer) -> int:
    """The replay's position: it starts at the finished tokenizer, and starts there again when
    the BPE changes (another corpus or vocabulary size), so the replay and the BPE card agree."""
    n = len(bpe.merges)
    which = (bpe.name, n, bpe.merges[-1])
    if st.session_state.get("tok_merge_for") != which:
        st.session_state["tok_merge_for"] = which
        st.session_state["tok_merge_k"] = n
    return st.slider("Merges applied", 0, n, key="tok_merge_k", persist_state=KEEP,
                     help="0 = plain bytes; every step right adds the next learned merge.")


def replay_ui(bpe: BPETokenizer, text: str, drawing: Drawing) -> None:
    st.subheader("Replay the training, merge by merge")
    if not bpe.merges and st.session_state["tok_vocab"] == 256:
        st.info("With a vocabulary of 256 there are no merges: raise the vocabulary size above.")
        return
    if not bpe.merges:
        st.info("This corpus gave no merges: no pair of neighbouring tokens occurs in it more than "
                "once. Train on a longer text.")
        return
    k = merge_slider_ui(bpe)
    merges = pg.merges_table(bpe, k)
    if k:
        m = merges[0]
        st.markdown(f"Merge **{k}**: {code_md(m['left'])} + {code_md(m['right'])} → "
                    f"{code_md(m['new token'])} "
                    f"(id {m['id']}, seen {counted(m['count'], 'time')} in the corpus when it was merged)")
    if text:
        try:
            after = pg.TOKENIZED.after_merges(bpe, text, k)
        except TokenizerError as exc:
            st.warning(str(exc))
        else:
            st.markdown(f"Your text after {counted(k, 'merge')}: **{counted(after.n_tokens, 'token')}** "
                        f"({after.n_bytes:,} bytes at merge 0).")
            drawing.note(after, ids=False)
            st.html(drawing.html(text, after, bpe))
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**The merges so far** (latest first)")
        st.dataframe(pd.DataFrame(merges), hide_index=True, width="stretch",
                     height=320, key="tok_merges_table")
    with right:
        word_ui(bpe, k)


def word_ui(bpe: BPETokenizer, k: int) -> None:
    st.markdown("**An unknown word, cut into known pieces**")
    st.session_state.setdefault("tok_word", DEFAULT_WORD)
    word = st.text_input("A made-up word", key="tok_word", persist_state=KEEP, max_chars=40)
    spaced = st.checkbox("with a leading space", value=True, key="tok_word_space",
                         persist_state=KEEP,
                         help="As inside a sentence. GPT-2's split pattern keeps a word's "
                         "leading space, so most learned words are '␣king', not 'king'.")
    if not word:
        st.caption("Type a word.")
        return
    try:
        steps = pg.word_merge_steps(bpe, " " + word if spaced else word, k)
    except TokenizerError as exc:
        st.warning(str(exc))
        return
    st.html(pg.token_chips_html(steps[-1], css=False))
    st.caption(f"{counted(len(steps[-1]), 'piece')} after {counted(k, 'merge')}: each merge joins the two neighbours "
               "whose joint token was learned earliest, until no learned pair is left.")
    table = pd.DataFrame({"step": range(len(steps)), "pieces": [" | ".join(s) for s in steps]})
    st.dataframe(table, hide_index=True, width="stretch", height=220, key="tok_word_steps")


def download_ui_for(bpe: BPETokenizer) -> None:
    # The files are made only when a button is clicked (a callable), not on every rerun.
    left, right = st.columns(2)
    left.download_button("Download the tokenizer (JSON)", lambda: json.dumps(bpe.to_dict()),
                         file_name=f"{bpe.name}.json", mime="application/json",
                         key="tok_download_json", on_click="ignore",
                         help="Load it with toygpt.tokenizers.load_tokenizer(path), or "
                         "python -m toygpt tokenize -t bpe:PATH \"some text\".")
    right.download_button("Download the vocabulary (text)", bpe.export_vocab,
                          file_name=f"{bpe.name}-vocab.txt", mime="text/plain",
                          key="tok_download_vocab", on_click="ignore")


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

st.title("Tokenizer playground")
st.html(pg.TOKEN_CSS)  # once for every token view below (each view leaves it out)
st.markdown(
    "A model never sees text, only token ids. Watch the same text cut by different tokenizers: "
    "hover a token for its id and bytes. Then train your own byte-pair encoding in the second "
    "tab and replay it merge by merge."
)
text = text_ui()
unavailable = tiktoken_status()
chosen, drawing, char_source = picker_ui(unavailable)
bpe_defaults()
UPLOAD_SHOWN_LAST_RUN = st.session_state.pop("tok_upload_shown", None)  # kept one run only
compare_tab, bpe_tab = st.tabs(  # only the open one runs; the open one is kept for the next visit
    TABS, key="tok_tab", default=st.session_state.get("tok_tab_kept", TABS[0]),
    on_change=lambda: st.session_state.update(tok_tab_kept=st.session_state["tok_tab"]))
if compare_tab.open:
    with compare_tab:
        bpe, corpus, problem = bpe_from_settings(text)
        results_ui(chosen, text, drawing, bpe, problem,
                   corpus if char_source == "the BPE corpus" else None, unavailable)
if bpe_tab.open:
    with bpe_tab:
        bpe, corpus = bpe_ui(text)
        if bpe is not None:
            replay_ui(bpe, text, drawing)
            download_ui_for(bpe)
            show_source(learn_merges, "Source: how the merges are learned")
            show_source(bpe_merge_steps, "Source: how a word is cut with the merges")
