"""What the tokenizer playground page computes: token spans as HTML, merge replays, comparisons.

The page (``pages/tokenizer.py``) only draws; everything it shows is computed here from the
tokenizers in ``toygpt.tokenizers``, so it can be tested (and used from a notebook) without
Streamlit. Read ``toygpt/tokenizers`` first: this file only arranges what they return.

    >>> from toygpt.tokenizers import ByteTokenizer
    >>> result = tokenize(ByteTokenizer(), "hé")
    >>> result.ids, result.spans               # 'é' is two bytes; its tail byte covers nothing
    ([104, 195, 169], [(0, 1), (1, 2), (2, 2)])
    >>> 'title="id 104' in token_spans_html("hé", result, ByteTokenizer())
    True
"""

from __future__ import annotations

import html
import math
import sys
import threading
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toygpt.formatting import counted, short_number
from toygpt.limits import memory_budget
from toygpt.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer, TokenizerError
from toygpt.tokenizers.base import label_for_bytes, spans_from_token_bytes, utf8_bytes

# The text the playground opens with: one line per case where tokenizers disagree the most.
SAMPLE_TEXT = (
    "Tokenizers turn text into numbers, and every model sees only the numbers.\n"
    "def add(a, b):\n"
    "    return a + b        # code: indents and runs of spaces\n"
    "\tcolumns\tsplit\tby\ttabs\n"
    "Numbers: 3.14159, 2024, 1,000,000 and 12345678901234.\n"
    "Accents: café, naïve, Zoë, crème brûlée; the same é built from e + a combining accent: e\u0301.\n"
    "CJK: 你好，世界！ こんにちは 안녕하세요\n"
    "Emoji: 🙂 👍🏽 👨\u200d👩\u200d👧 🇫🇷\n"
)
# Spans drawn per tokenizer by default. Every span costs the browser sanitising (st.html runs
# DOMPurify), parsing, styling and layout: with bench/app_latency.py on a 10,000-character
# text, the page's six views took ~1.0 s of renderer CPU per update at 1500 spans each, ~0.6 s
# at 500 and ~0.43 s at 20 (the rest of the page). Counts and id lists cover the whole text.
MAX_SHOWN_TOKENS = 500
# Light backgrounds with dark text: readable in the light and the dark theme alike.
SPAN_COLOURS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fed7aa", "#a5f3fc", "#f5d0fe")
# How whitespace and other invisible characters are drawn inside the running text. Spaces get a
# light middle dot (lighter than '␣', so the text still reads as text); a zero-width space after
# it lets long lines wrap there.
SHOWN_WHITESPACE = {" ": "·\u200b", "\n": "↵\n", "\r": "␍", "\t": "⇥\t"}
_INVISIBLE = {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Zs"}

TOKEN_CSS = (
    "<style>"
    ".tg-tokens{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.9rem;"
    "line-height:1.9;white-space:pre-wrap;overflow-wrap:anywhere;max-height:26rem;overflow-y:auto}"
    # a view that fills its box is skipped by the browser while out of sight (see _fills_the_box)
    ".tg-tall{content-visibility:auto;contain-intrinsic-size:auto 26rem}"
    ".tg-tokens span{color:#1f2937;border-radius:3px;padding:1px 0}"
    ".tg-tokens span.tg-part{display:inline-block;width:0.45em;height:1.1em;vertical-align:-0.2em;"
    "padding:0;opacity:0.8}"
    ".tg-tokens span.tg-special{outline:2px solid #dc2626;outline-offset:-2px}"
    ".tg-tokens span i{color:#6b7280;font-style:normal}"
    + "".join(f".tg-c{k},.tg-tokens>span:nth-child({len(SPAN_COLOURS)}n+{k + 1}){{background:{c}}}"
              for k, c in enumerate(SPAN_COLOURS))
    # the comparison table (comparison_table_html): a bar under each number, scrolls when narrow
    + ".tg-compare-wrap{overflow-x:auto}"
    ".tg-compare{border-collapse:collapse;width:100%;font-size:0.9rem}"
    ".tg-compare th,.tg-compare td{padding:4px 10px 4px 0;border-bottom:1px solid #e5e4dc;"
    "text-align:left;vertical-align:bottom}"
    ".tg-compare td{white-space:nowrap}.tg-compare td[data-column]{min-width:4rem}"
    ".tg-compare td .tg-bar{display:block;height:7px;min-width:2px;margin-bottom:3px;"
    "background:#636efa;border-radius:2px}"
    ".tg-compare td.tg-error{text-align:left;white-space:normal;color:#b91c1c}"
    ".tg-ids{font-size:0.85rem;margin-top:4px}.tg-ids summary{cursor:pointer;color:#6b7280}"
    ".tg-ids div{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;max-height:8rem;"
    "overflow-y:auto;overflow-wrap:anywhere;padding:4px 0}"
    + "</style>"
)


# ---------------------------------------------------------------------------------------------
# 1. One tokenizer on one text.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokenized:
    """A text cut into tokens: ``ids`` and the character span ``(start, end)`` of each.

    The spans tile the text in order; a token holding only the tail bytes of a character (the
    byte tokenizer on 'é') gets an empty span.
    """

    ids: list[int]
    spans: list[tuple[int, int]]
    n_chars: int
    n_bytes: int

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.ids else 0.0

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens if self.ids else 0.0


def tokenize(tokenizer: Tokenizer, text: str) -> Tokenized:
    """Encode ``text`` (special-token spellings stay plain text) and record each token's span."""
    n_bytes = len(utf8_bytes(text))
    if isinstance(tokenizer, CharTokenizer):  # one token per character: spans are trivial
        ids, spans = tokenizer.encode_with_spans(text)
        return Tokenized(ids, spans, len(text), n_bytes)
    ids = tokenizer.encode(text)
    # encode_with_spans would look up (and range-check) each id's bytes once per token; a text
    # repeats few distinct ids, so look each one up once.
    pieces = {i: tokenizer.token_bytes(i) for i in set(ids)}
    return Tokenized(ids, spans_from_token_bytes(text, [pieces[i] for i in ids]), len(text), n_bytes)


def tokenize_after_merges(bpe: BPETokenizer, text: str, n_merges: int) -> Tokenized:
    """``text`` as ``bpe`` cut it when only its first ``n_merges`` merges had been learned.

    >>> bpe = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    >>> [tokenize_after_merges(bpe, "aaab", k).n_tokens for k in range(4)]
    [4, 3, 2, 1]
    """
    ids = bpe.encode_after_merges(text, n_merges)
    spans = spans_from_token_bytes(text, [bpe.vocab[i] for i in ids])
    return Tokenized(ids, spans, len(text), len(utf8_bytes(text)))


def char_tokenizer_for(text: str, corpus: str | None = None) -> tuple[CharTokenizer, list[str]]:
    """A character tokenizer, and the characters of ``text`` it lacks.

    From ``text`` itself nothing is missing (but the vocabulary only fits this text); from a
    ``corpus``, characters the corpus never showed become a visible ``<unk>`` token — which is
    what a char-level model trained on that corpus would have to do.

    >>> tok, missing = char_tokenizer_for("héllo", corpus="hello world")
    >>> missing, tok.decode(tok.encode("héllo"))
    (['é'], 'h<unk>llo')
    """
    if corpus is None:
        return CharTokenizer.from_text(text), []
    tokenizer = CharTokenizer.from_text(corpus, unk=True)
    return tokenizer, tokenizer.unknown_characters(text)


def with_unknowns_shown(tokenizer: Tokenizer) -> Tokenizer:
    """For display only: a char tokenizer that refuses unknown characters, given an ``<unk>``.

    A model's own char vocabulary (tiny shakespeare's 65 characters) cannot encode 'é' or '你';
    the model would refuse such text. To still *show* the text through its eyes, the copy
    returned here maps those characters to one extra ``<unk>`` id (outside the model's
    vocabulary). Any other tokenizer is returned unchanged.

    >>> tok = with_unknowns_shown(CharTokenizer.from_text("abc"))
    >>> tok.decode(tok.encode("cab!"))
    'cab<unk>'
    """
    if isinstance(tokenizer, CharTokenizer) and not tokenizer.unk:
        return CharTokenizer(tokenizer.chars, unk=True)
    return tokenizer


# ---------------------------------------------------------------------------------------------
# 1b. Each (tokenizer, text) cut once: a bounded cache shared by every visitor.
# ---------------------------------------------------------------------------------------------

# What one cached token costs, in bytes, counted generously: its id (a list slot + an int
# object) and its span (a list slot + a 2-tuple + two int objects) — 8 + 28 + 8 + 56 + 2 × 28.
BYTES_PER_TOKEN = 160
# The cache's share of the server's memory budget (toygpt.limits): a 2 GiB server keeps at most
# 64 MiB of tokenizations — about forty 10,000-character texts through one tokenizer.
CACHE_SHARE = 1 / 32
MAX_CACHE_BYTES = 64 * 2**20


class TokenizedCache:
    """A least-recently-used cache of ``Tokenized`` results, bounded in bytes.

    The playground redraws on every widget change (a merge slider, a toggle), mostly for the
    same text: each (tokenizer, text) is encoded and its spans computed once, then reused by the
    card, the comparison and the next rerun. One server serves every visitor, so the cache is
    bounded by ``max_bytes`` (text + ``BYTES_PER_TOKEN`` per token, oldest use evicted first); a
    result larger than the whole budget is returned but not kept.

    Keys: a char or byte tokenizer by its content (the page builds a fresh one each rerun);
    any other (BPE, tiktoken) by the object itself, whose entries are dropped when it is
    garbage-collected, so a new tokenizer never sees an old one's results. Errors are not
    cached. Thread-safe (Streamlit runs each session in its own thread).

    >>> cache = TokenizedCache(max_bytes=10_000)
    >>> cache.tokenize(ByteTokenizer(), "hé").ids, cache.hits, cache.misses
    ([104, 195, 169], 0, 1)
    >>> cache.tokenize(ByteTokenizer(), "hé") is cache.tokenize(ByteTokenizer(), "hé"), cache.hits
    (True, 2)
    """

    def __init__(self, max_bytes: int | None = None):
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Tokenized, int]] = OrderedDict()
        self._owners: dict[int, weakref.finalize] = {}  # id(tokenizer) -> its finalizer
        self._collected: list[int] = []  # ids of tokenizers collected since the last purge
        self._lock = threading.RLock()
        self.nbytes = 0
        self.hits = self.misses = 0

    @property
    def max_bytes(self) -> int:
        """The bound, in bytes (by default a share of ``toygpt.limits.memory_budget()``)."""
        if self._max_bytes is None:
            self._max_bytes = min(MAX_CACHE_BYTES, int(memory_budget() * CACHE_SHARE))
        return self._max_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def tokenize(self, tokenizer: Tokenizer, text: str) -> Tokenized:
        """``tokenize(tokenizer, text)``, computed once."""
        return self._get(tokenizer, ("tokenize", text), lambda: tokenize(tokenizer, text))

    def after_merges(self, bpe: BPETokenizer, text: str, n_merges: int) -> Tokenized:
        """``tokenize_after_merges(bpe, text, n_merges)``, computed once. With every merge
        applied that is ``bpe``'s own cut of ``text``, shared with ``tokenize(bpe, text)``."""
        if n_merges == len(bpe.merges) and not isinstance(n_merges, bool):
            return self.tokenize(bpe, text)
        return self._get(bpe, ("after_merges", n_merges, text),
                         lambda: tokenize_after_merges(bpe, text, n_merges))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _get(self, tokenizer: Tokenizer, what: tuple, compute: Callable[[], Tokenized]) -> Tokenized:
        with self._lock:
            self._purge_collected()
            owner = self._owner_key(tokenizer)
            entry = None if owner is None else self._entries.get((owner, *what))
            if entry is not None:
                self._entries.move_to_end((owner, *what))
                self.hits += 1
                return entry[0]
            self.misses += 1
        result = compute()  # outside the lock: other sessions need not wait for this one
        if owner is None:  # cannot be keyed safely: computed every time
            return result
        size = sys.getsizeof(what[-1]) + BYTES_PER_TOKEN * result.n_tokens
        with self._lock:
            key = (owner, *what)
            if size <= self.max_bytes and key not in self._entries and self._alive(owner):
                self._entries[key] = (result, size)
                self.nbytes += size
                while self.nbytes > self.max_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self.nbytes -= dropped
        return result

    def _owner_key(self, tokenizer: Tokenizer) -> Hashable | None:
        if type(tokenizer) is CharTokenizer:
            return ("char", tuple(tokenizer.chars), tokenizer.unk)
        if type(tokenizer) is ByteTokenizer:
            return ("byte", tuple(tokenizer.special_tokens))
        ident = id(tokenizer)
        if ident not in self._owners:
            try:  # called when the tokenizer is collected, before its id can be reused
                self._owners[ident] = weakref.finalize(tokenizer, self._collected.append, ident)
            except TypeError:  # not weak-referenceable
                return None
        return ("object", ident)

    def _alive(self, owner: Hashable) -> bool:
        return owner[0] != "object" or owner[1] in self._owners

    def _purge_collected(self) -> None:
        """Drop the entries of tokenizers collected since the last call. (The finalizer only
        appends to a list: it may run inside this very lock, wherever garbage collection
        happens to start.)"""
        while self._collected:
            ident = self._collected.pop()
            self._owners.pop(ident, None)
            for key in [k for k in self._entries if k[0] == ("object", ident)]:
                self.nbytes -= self._entries.pop(key)[1]


#: The cache the playground page uses (one per server process).
TOKENIZED = TokenizedCache()


# ---------------------------------------------------------------------------------------------
# 2. Drawing the tokens: coloured spans, as HTML (every piece of user text escaped).
# ---------------------------------------------------------------------------------------------


def visible_html(segment: str, show_whitespace: bool = True) -> str:
    """``segment`` escaped for HTML, with whitespace and invisible characters made visible.

    >>> visible_html("a b\\n<i>")
    'a·\\u200bb↵\\n&lt;i&gt;'
    >>> visible_html("a\\u200db")                    # a zero-width joiner, as in 👨‍👩‍👧
    'a<i>&lt;U+200D&gt;</i>b'
    """
    if not show_whitespace or (segment.isprintable() and " " not in segment):
        return html.escape(segment, quote=False)  # the fast path: nothing to replace
    parts = []
    for ch in segment:
        if ch in SHOWN_WHITESPACE:
            parts.append(SHOWN_WHITESPACE[ch])
        elif unicodedata.category(ch) in _INVISIBLE:
            code = f"0x{ord(ch):02X}" if ord(ch) < 0x80 else f"U+{ord(ch):04X}"
            parts.append(f"<i>&lt;{code}&gt;</i>")
        else:
            parts.append(html.escape(ch, quote=False))
    return "".join(parts)


def token_hover(tokenizer: Tokenizer, token_id: int) -> str:
    """The hover text of one token: id, printable label and its bytes in hex.

    >>> from toygpt.tokenizers import ByteTokenizer
    >>> token_hover(ByteTokenizer(), 195)
    'id 195 · <0xC3> · bytes C3'
    """
    data = tokenizer.token_bytes(token_id)
    return f"id {token_id} · {tokenizer.token_label(token_id)} · bytes {data.hex(' ').upper()}"


def token_spans_html(text: str, tokenized: Tokenized, tokenizer: Tokenizer, *,
                     show_whitespace: bool = True, max_tokens: int = MAX_SHOWN_TOKENS,
                     css: bool = True) -> str:
    """The text with one coloured span per token (hover: id, label, bytes), as HTML.

    Neighbouring tokens get different colours: the k-th span is coloured by ``TOKEN_CSS``'s
    ``nth-child`` rules (k mod 8), not by a class of its own, since every attribute of every span
    is work for the browser's HTML sanitiser on each redraw. A token with an empty span (the tail bytes of a
    character split across tokens) is drawn as a thin coloured bar after that character, so
    every token stays visible. Special tokens such as ``<unk>`` get a red outline. Only the
    first ``max_tokens`` are drawn (``drawn_note`` says how many of how many); ``css=False``
    leaves out ``TOKEN_CSS``, for a page that draws it once for all its views.
    """
    special = set(tokenizer.special_tokens.values())
    hovers: dict[int, str] = {}  # the same id recurs often; build its hover text once
    drawn = tokenized.spans[min(max_tokens, tokenized.n_tokens) - 1][1] if tokenized.ids and max_tokens > 0 else 0
    tall = " tg-tall" if _fills_the_box(text[:drawn]) else ""
    out = [TOKEN_CSS if css else "", f'<div class="tg-tokens{tall}">']
    for token_id, (start, end) in zip(tokenized.ids[:max_tokens], tokenized.spans, strict=False):
        if token_id not in hovers:
            hovers[token_id] = html.escape(token_hover(tokenizer, token_id), quote=True)
        # its colour comes from its position (TOKEN_CSS's nth-child rules), not a class
        classes = ("tg-part " if start == end else "") + ("tg-special" if token_id in special else "")
        attributes = f' class="{classes.strip()}"' if classes else ""
        body = visible_html(text[start:end], show_whitespace)
        out.append(f'<span{attributes} title="{hovers[token_id]}">{body}</span>')
    if tokenized.n_tokens > max_tokens:
        out.append(f"<i> … {tokenized.n_tokens - max_tokens:,} more tokens not drawn "
                   f"({drawn_note(tokenized.n_tokens, max_tokens)})</i>")
    out.append("</div>")
    return "".join(out)


def _fills_the_box(drawn: str) -> bool:
    """Whether ``drawn`` surely fills a view's 26rem-high box (14 lines), even 200 characters
    wide. Such views get ``tg-tall``: the browser skips styling and laying them out while they
    are scrolled out of sight, and keeps a box of the right height in their place."""
    lines = 0
    for line in drawn.split("\n"):
        lines += 1 + len(line) // 200
        if lines >= 14:
            return True
    return False


def drawn_note(n_tokens: int, max_tokens: int) -> str:
    """What a view of at most ``max_tokens`` spans shows of ``n_tokens``, in words.

    >>> drawn_note(4248, 500)
    'showing the first 500 of 4,248 tokens'
    >>> drawn_note(12, 500)
    'showing all 12 tokens'
    """
    if n_tokens <= max_tokens:
        return f"showing all {counted(n_tokens, 'token')}"
    return f"showing the first {max_tokens:,} of {n_tokens:,} tokens"


def token_ids_html(ids: Sequence[int], limit: int) -> str:
    """The token ids as one folded, comma-separated list (the first ``limit`` of them, and how
    many more): plain text the browser does not lay out until it is opened.

    >>> token_ids_html([104, 105, 33], 2)
    '<details class="tg-ids"><summary>token ids</summary><div>104, 105, … 1 more</div></details>'
    """
    shown = ", ".join(map(str, ids[:limit]))
    more = f", … {len(ids) - limit:,} more" if len(ids) > limit else ""
    return f'<details class="tg-ids"><summary>token ids</summary><div>{shown}{more}</div></details>'


def token_chips_html(labels: Sequence[str], css: bool = True) -> str:
    """Labels drawn as coloured chips side by side (for a word's pieces), HTML-escaped;
    ``css=False`` leaves out ``TOKEN_CSS`` (for a page that draws it once)."""
    chips = "".join(
        f'<span class="tg-c{k % len(SPAN_COLOURS)}" style="padding:2px 6px;margin-right:3px">'
        f"{html.escape(label, quote=False)}</span>"
        for k, label in enumerate(labels)
    )
    return f'{TOKEN_CSS if css else ""}<div class="tg-tokens">{chips}</div>'


# ---------------------------------------------------------------------------------------------
# 3. Replaying BPE training: the merges so far, and an unknown word cut into known pieces.
# ---------------------------------------------------------------------------------------------


def merges_table(bpe: BPETokenizer, n_merges: int | None = None) -> list[dict[str, Any]]:
    """The first ``n_merges`` merges (all by default), latest first: pair → new token, count.

    >>> bpe = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    >>> [(r["left"], r["right"], r["new token"], r["count"]) for r in merges_table(bpe)]
    [('aa', 'ab', 'aaab', 2), ('a', 'b', 'ab', 2), ('a', 'a', 'aa', 4)]
    """
    n = len(bpe.merges) if n_merges is None else n_merges
    if not 0 <= n <= len(bpe.merges):
        raise TokenizerError(f"n_merges must be in 0..{len(bpe.merges)}, got {n}")
    label = bpe.vocab  # ids → bytes; labels made on the fly keep this cheap for a few thousand
    return [
        {
            "merge": k + 1,
            "left": label_for_bytes(label[m.pair[0]]),
            "right": label_for_bytes(label[m.pair[1]]),
            "new token": label_for_bytes(label[m.new_id]),
            "id": m.new_id,
            "count": m.count,
        }
        for k, m in reversed(list(enumerate(bpe.merges[:n])))
    ]


def word_merge_steps(bpe: BPETokenizer, word: str, n_merges: int) -> list[list[str]]:
    """How ``bpe`` (after ``n_merges`` merges) cuts ``word``: its pieces after every step.

    Step 0 is the word's bytes; each later step applies the earliest-learned merge that fits,
    so a word never seen in training still ends up as a few known pieces. A word the split
    pattern cuts into several chunks (``"don't"`` → ``don`` ``'t``) is merged chunk by chunk.

    >>> bpe = BPETokenizer.train("low lower lowest " * 20, 262)   # learns 'lo', 'low', '␣low', ...
    >>> for pieces in word_merge_steps(bpe, "slower", 6):
    ...     print(pieces)
    ['s', 'l', 'o', 'w', 'e', 'r']
    ['s', 'lo', 'w', 'e', 'r']
    ['s', 'low', 'e', 'r']

    ('␣lower' was learned with its leading space, so the bare 'lower' inside 'slower' is not.)
    """
    if not 0 <= n_merges <= len(bpe.merges):
        raise TokenizerError(f"n_merges must be in 0..{len(bpe.merges)}, got {n_merges}")
    partial = BPETokenizer(bpe.merges[:n_merges], bpe.split_pattern)
    chunks = partial.encode_steps(word)
    finished: list[str] = []
    steps = [[label for c in chunks for label in _labels(partial, c.states[0])]]
    for index, chunk in enumerate(chunks):
        rest = [label for c in chunks[index + 1:] for label in _labels(partial, c.states[0])]
        for state in chunk.states[1:]:
            steps.append(finished + _labels(partial, state) + rest)
        finished += _labels(partial, chunk.ids)
    return steps


def _labels(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    return [tokenizer.token_label(i) for i in ids]


# ---------------------------------------------------------------------------------------------
# 4. Several tokenizers side by side: the sequence-length vs vocabulary trade.
# ---------------------------------------------------------------------------------------------

COMPARED = (  # (column of compare's rows, header, bar on a log scale)
    ("vocab_size", "vocabulary size", True),
    ("tokens", "tokens for this text", False),
    ("chars_per_token", "characters per token", False),
    ("bytes_per_token", "bytes per token", False),
    ("chars_per_block", "characters per 64 tokens", False),
)


def comparison_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """``compare``'s rows as one HTML table whose cells carry bars: read down a column to see a
    bigger vocabulary buy fewer, longer tokens (more text per ``block_size``) at the price of a
    bigger embedding table; byte-level models (MegaByte) take the other end.

    Each bar is its value over the column's largest; vocabulary sizes (256 to 200,019) are
    drawn on a log scale, ``log(v) / log(largest)``, or the small ones would vanish. A row with
    an ``error`` shows it across the row. Every value cell carries ``data-column`` and
    ``data-value`` (the number unrounded), so a test or a script can read the table back.

    One table is one element for the browser to draw: this replaced a data grid and a
    four-panel plotly figure, which cost the page ~150 ms of the browser's time per rerun
    (``bench/app_latency.py``), twice what all the token views together cost.

    >>> html_ = comparison_table_html([{"tokenizer": "byte", "vocab_size": 256, "tokens": 4,
    ...     "chars_per_token": 1.0, "bytes_per_token": 1.0, "chars_per_block": 64.0, "error": None}])
    >>> 'data-column="tokens" data-value="4"' in html_
    True
    """
    usable = [row for row in rows if not row.get("error")]
    largest = {key: max((row[key] for row in usable), default=0) for key, _, _ in COMPARED}
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in COMPARED)
    out = [f'<div class="tg-compare-wrap"><table class="tg-compare"><thead><tr><th>tokenizer</th>{head}'
           "</tr></thead><tbody>"]
    for row in rows:
        name = html.escape(str(row["tokenizer"]))
        if row.get("error"):
            out.append(f'<tr data-tokenizer="{name}"><td>{name}</td><td colspan="{len(COMPARED)}" '
                       f'class="tg-error">{html.escape(str(row["error"]))}</td></tr>')
            continue
        cells = []
        for key, _, log in COMPARED:
            value, top = row[key], largest[key]
            if log:
                share = math.log(max(value, 1)) / math.log(top) if top > 1 else 1.0
            else:
                share = value / top if top else 0.0
            shown = short_number(value) if isinstance(value, float) else f"{value:,}"
            cells.append(f'<td data-column="{key}" data-value="{value}"><span class="tg-bar" '
                         f'style="width:{100 * share:.1f}%"></span>{shown}</td>')
        out.append(f'<tr data-tokenizer="{name}"><td>{name}</td>{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)
