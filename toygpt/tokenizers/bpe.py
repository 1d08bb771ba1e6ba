"""Byte-level byte-pair encoding (BPE), the way GPT-2 does it.

Start from bytes (ids 0..255, so nothing is ever unknown), then repeatedly find the most
frequent pair of neighbouring tokens in the training text and give it a new id. Every merge
shortens the text and adds one token to the vocabulary::

    "aaabdaaabac"   bytes: a a a b d a a a b a c
    merge 1: (a, a)   → 256 'aa'     aa a b d aa a b a c
    merge 2: (a, b)   → 257 'ab'     aa ab d aa ab a c        (tie with (aa, a): smaller pair wins)
    merge 3: (aa, ab) → 258 'aaab'   aaab d aaab a c         → [258, 100, 258, 97, 99]

Two refinements from GPT-2:

* **Pre-tokenization.** A regex first cuts the text into chunks (words with their leading
  space, runs of digits, punctuation, whitespace) and merges never cross a chunk boundary, so
  the vocabulary does not fill up with "dog." "dog!" "dog?" variants.
* **Encoding by rank.** To encode new text, look at every neighbouring pair, merge the one whose
  bytes form the *earliest learned* token (lowest id), and repeat. This is tiktoken's rule; this
  file has a readable version that records every step and a heap version for long chunks, and
  the tokenizer hands the same ranks to ``tiktoken.Encoding`` for speed. All three agree.

Training is incremental: pair counts are kept up to date by looking only at the chunks a merge
changed (and each distinct chunk is stored once with its count), instead of recounting every
pair of the whole corpus after every merge as ``learn_merges_textbook`` does.
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex
import tiktoken

from toygpt.stopping import check_stop
from toygpt.tokenizers.base import (
    Tokenizer,
    TokenizerError,
    check_ids,
    check_special_tokens,
    label_for_bytes,
    require_type,
    special_tokens_from_dict,
    split_on_special_tokens,
    utf8_bytes,
)

# GPT-2's split pattern, in the equivalent faster form tiktoken uses for gpt2/r50k_base:
# contractions, an optional space + letters, an optional space + digits, an optional space +
# other symbols, then whitespace. ``\p{L}`` (any letter) needs the ``regex`` package.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
# GPT-4's (cl100k_base): case-insensitive contractions, digits in groups of at most three,
# and newlines kept apart from other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
SPLIT_PATTERNS: dict[str | None, str] = {
    "gpt2": GPT2_SPLIT_PATTERN,
    "gpt4": GPT4_SPLIT_PATTERN,
    None: r"[\s\S]+",  # no pre-tokenization: the whole text is one chunk
}
# Guards against hostile files: far beyond anything useful here. (Merging a token with itself
# doubles its length, so a crafted merge list could otherwise ask for 2**1000 bytes.)
MAX_VOCAB_SIZE = 1 << 20
MAX_VOCAB_BYTES = 1 << 26
STEPS_MAX_BYTES = 2000  # the show-your-work encoder keeps every state: short text only


# ---------------------------------------------------------------------------------------------
# 1. The two helpers of the textbook algorithm.
# ---------------------------------------------------------------------------------------------


def get_stats(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None,
              weight: int = 1) -> dict[tuple[int, int], int]:
    """Count each pair of neighbours (adding ``weight`` per occurrence into ``counts``).

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` (left to right, not overlapping) by ``new_id``.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)        # 'aaa' → 'aa' 'a': the left pair wins
    [8, 7]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@dataclass(frozen=True)
class MergeRecord:
    """One step of training: ``pair`` became ``new_id``; it occurred ``count`` times then."""

    pair: tuple[int, int]
    new_id: int
    count: int


# ---------------------------------------------------------------------------------------------
# 2. Preparing the training text, and the rules both trainers share.
# ---------------------------------------------------------------------------------------------


def split_pattern_regex(split_pattern: str | None) -> str:
    """The regex for a split-pattern name: ``"gpt2"``, ``"gpt4"`` or ``None`` (no split)."""
    if not (split_pattern is None or isinstance(split_pattern, str)) or split_pattern not in SPLIT_PATTERNS:
        raise TokenizerError(
            f"unknown split_pattern {split_pattern!r}; use 'gpt2', 'gpt4' or None (no split)"
        )
    return SPLIT_PATTERNS[split_pattern]


def pre_tokenize(text: str, split_pattern: str | None = "gpt2") -> list[str]:
    """Cut text into the chunks merges may not cross.

    >>> pre_tokenize("Hello world, it's 2024!")
    ['Hello', ' world', ',', ' it', "'s", ' 2024', '!']
    """
    split_pattern_regex(split_pattern)  # validate before the (hashing) cache sees it
    return _compiled_split_pattern(split_pattern).findall(text)


@functools.cache
def _compiled_split_pattern(split_pattern: str | None) -> regex.Pattern:
    return regex.compile(split_pattern_regex(split_pattern))


def training_chunks(text: str, split_pattern: str | None, special_tokens: Sequence[str]) -> list[str]:
    """Pre-tokenized chunks of the training text; special tokens are cut out, never learned."""
    utf8_bytes(text)
    chunks: list[str] = []
    for part in split_on_special_tokens(text, {name: 0 for name in special_tokens}):
        if isinstance(part, str):
            chunks.extend(pre_tokenize(part, split_pattern))
    return chunks


def merges_wanted(vocab_size: int, special_tokens: Sequence[str]) -> int:
    """How many merges a target ``vocab_size`` (bytes + merges + special tokens) asks for."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TokenizerError(f"vocab_size must be an integer, got {vocab_size!r}")
    floor = 256 + len(special_tokens)
    if not floor <= vocab_size <= MAX_VOCAB_SIZE:
        raise TokenizerError(
            f"vocab_size={vocab_size} must lie between {floor} (256 byte tokens + "
            f"{len(special_tokens)} special) and {MAX_VOCAB_SIZE}; try vocab_size={floor + 256}"
        )
    return vocab_size - floor


def pair_order(count: int, pair: tuple[int, int]) -> tuple[int, int, int]:
    """Sort key of a candidate merge: the most frequent pair first; on a tie the smaller pair
    (lower ids) first, so training is deterministic whatever order the counts were made in."""
    return (-count, pair[0], pair[1])


# ---------------------------------------------------------------------------------------------
# 3a. Training, textbook version: recount every pair after every merge.
# ---------------------------------------------------------------------------------------------


def learn_merges_textbook(text: str, vocab_size: int, split_pattern: str | None = "gpt2",
                          special_tokens: Sequence[str] = ()) -> list[MergeRecord]:
    """Learn merges by recounting all pairs of all chunks after each merge (clear but slow)."""
    special_tokens = check_special_tokens(special_tokens)
    n_merges = merges_wanted(vocab_size, special_tokens)
    chunks = [list(c.encode("utf-8")) for c in training_chunks(text, split_pattern, special_tokens)]
    merges: list[MergeRecord] = []
    while len(merges) < n_merges:
        check_stop()  # a merge can take a while on long chunks: Stop ends training here
        counts: dict[tuple[int, int], int] = {}
        for ids in chunks:
            get_stats(ids, counts)
        if not counts:
            break  # every chunk is a single token already: the text has nothing left to teach
        pair = min(counts, key=lambda p: pair_order(counts[p], p))
        new_id = 256 + len(merges)
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges.append(MergeRecord(pair, new_id, counts[pair]))
    return merges


# ---------------------------------------------------------------------------------------------
# 3b. Training, incremental version: same merges, counts updated only where a merge changed.
# ---------------------------------------------------------------------------------------------


class PairIndex:
    """Pair counts over distinct chunks (each weighted by how often it occurs), which chunks
    hold each pair, and a heap to find the best pair without scanning all of them.

    The heap holds ``(pair_order(count, pair))`` entries; when a count changes a fresh entry is
    pushed and the old one is recognised as stale when popped (its count no longer matches).
    """

    def __init__(self, words: list[list[int]], weights: list[int]):
        self.words, self.weights = words, weights
        self.counts: dict[tuple[int, int], int] = {}
        self.where: dict[tuple[int, int], set[int]] = {}
        for index, word in enumerate(words):
            for pair in zip(word, word[1:], strict=False):
                self.counts[pair] = self.counts.get(pair, 0) + weights[index]
                self.where.setdefault(pair, set()).add(index)
        self.heap = [pair_order(count, pair) for pair, count in self.counts.items()]
        heapq.heapify(self.heap)

    def pop_best(self) -> tuple[int, int] | None:
        """Remove and return the most frequent pair (None when no pair is left)."""
        while self.heap:
            neg_count, a, b = heapq.heappop(self.heap)
            if self.counts.get((a, b), 0) == -neg_count > 0:  # else a stale entry: skip it
                return (a, b)
        return None

    def merge(self, pair: tuple[int, int], new_id: int) -> None:
        """Merge ``pair`` into ``new_id`` in every chunk holding it, adjusting only the counts of
        the pairs around each occurrence."""
        changed: set[tuple[int, int]] = set()
        for index in self.where.pop(pair, ()):
            self.words[index] = self._merge_word(index, pair, new_id, changed)
        for p in changed:
            if self.counts.get(p, 0) > 0:
                heapq.heappush(self.heap, pair_order(self.counts[p], p))

    def _merge_word(self, index: int, pair: tuple[int, int], new_id: int,
                    changed: set[tuple[int, int]]) -> list[int]:
        """``merge()`` for one chunk, telling the counts what disappeared and what appeared.

        Around an occurrence ``x a b y`` the pairs (x,a) (a,b) (b,y) vanish and (x,N) (N,y)
        appear. With back-to-back occurrences ``a b a b`` the (N,a) added by the first is
        removed again by the second, which adds (N,N): the bookkeeping nets out correctly.
        """
        word, weight, (a, b) = self.words[index], self.weights[index], pair
        out: list[int] = []
        i = 0
        while i < len(word):
            if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                if out:
                    self._add((out[-1], a), -weight, index, changed)
                    self._add((out[-1], new_id), weight, index, changed)
                if i + 2 < len(word):
                    self._add((b, word[i + 2]), -weight, index, changed)
                    self._add((new_id, word[i + 2]), weight, index, changed)
                self._add(pair, -weight, index, changed)
                out.append(new_id)
                i += 2
            else:
                out.append(word[i])
                i += 1
        return out

    def _add(self, pair: tuple[int, int], delta: int, index: int,
             changed: set[tuple[int, int]]) -> None:
        self.counts[pair] = self.counts.get(pair, 0) + delta
        if delta > 0:
            self.where.setdefault(pair, set()).add(index)
        changed.add(pair)


def learn_merges(text: str, vocab_size: int, split_pattern: str | None = "gpt2",
                 special_tokens: Sequence[str] = (),
                 on_merge: Callable[[MergeRecord], bool | None] | None = None) -> list[MergeRecord]:
    """Learn the same merges as ``learn_merges_textbook``, incrementally.

    ``on_merge(record)`` is called after every merge (for progress bars and live replays);
    returning ``False`` from it stops training early. Training also stops early when every
    chunk has become a single token, so the result may hold fewer merges than asked for.

    Cost: with a split pattern, chunks are short words and a merge touches only the few that
    hold its pair (tiny shakespeare to 2048 tokens: well under a second). With
    ``split_pattern=None`` the whole text is one chunk that every merge rescans — fine for a
    paragraph, slow for a book (roughly 6 ms per merge per 100 kB of text).
    """
    special_tokens = check_special_tokens(special_tokens)
    n_merges = merges_wanted(vocab_size, special_tokens)
    distinct = Counter(c.encode("utf-8") for c in training_chunks(text, split_pattern, special_tokens))
    index = PairIndex([list(chunk) for chunk in distinct], list(distinct.values()))
    merges: list[MergeRecord] = []
    while len(merges) < n_merges:
        check_stop()  # one merge rescans every chunk holding its pair: seconds on a huge chunk
        pair = index.pop_best()
        if pair is None:
            break
        record = MergeRecord(pair, 256 + len(merges), index.counts[pair])
        index.merge(pair, record.new_id)
        merges.append(record)
        if on_merge is not None and on_merge(record) is False:
            break
    return merges


# ---------------------------------------------------------------------------------------------
# 4. Encoding one chunk with learned ranks (tiktoken's rule), two ways.
# ---------------------------------------------------------------------------------------------


def bpe_merge_steps(data: bytes, ranks: Mapping[bytes, int]) -> list[list[bytes]]:
    """Encode one chunk step by step; return the list of parts after every merge.

    Each step merges the neighbouring pair whose joined bytes are the lowest-ranked (earliest
    learned) token, the leftmost one on a tie. Readable and quadratic: for short text.

    >>> ranks = {bytes([i]): i for i in range(256)} | {b"aa": 256, b"ab": 257, b"aaab": 258}
    >>> [b"|".join(parts) for parts in bpe_merge_steps(b"aaab", ranks)]
    [b'a|a|a|b', b'aa|a|b', b'aa|ab', b'aaab']
    """
    parts = [data[i : i + 1] for i in range(len(data))]
    states = [parts]
    while len(parts) > 1:
        joined = [parts[i] + parts[i + 1] for i in range(len(parts) - 1)]
        candidates = [(ranks[pair], i) for i, pair in enumerate(joined) if pair in ranks]
        if not candidates:
            break
        _, i = min(candidates)
        parts = parts[:i] + [joined[i]] + parts[i + 2 :]
        states.append(parts)
    return states


def bpe_merge(data: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Same result as ``bpe_merge_steps(data, ranks)[-1]`` (plus tiktoken's whole-chunk
    lookup), in O(n log n): a heap of candidate pairs keyed ``(rank, start)`` over a linked
    list of parts, so a 100,000-letter chunk takes a fraction of a second, not hours."""
    if data in ranks:  # tiktoken's shortcut: a chunk that is a token is that token
        return [ranks[data]]
    n = len(data)
    parts: list[bytes | None] = [data[i : i + 1] for i in range(n)]
    next_part, prev_part = list(range(1, n + 1)), list(range(-1, n - 1))
    heap: list[tuple[int, int]] = []

    def push(i: int) -> None:  # queue the pair that starts at part i, if it spells a token
        j = next_part[i]
        if j < n and (rank := ranks.get(parts[i] + parts[j])) is not None:
            heapq.heappush(heap, (rank, i))

    for i in range(n - 1):
        push(i)
    while heap:
        rank, i = heapq.heappop(heap)
        j = next_part[i] if parts[i] is not None else n
        if j >= n or ranks.get(parts[i] + parts[j]) != rank:
            continue  # stale: one side of this pair was merged into something else since
        parts[i], parts[j] = parts[i] + parts[j], None
        next_part[i] = next_part[j]
        if next_part[i] < n:
            prev_part[next_part[i]] = i
        if prev_part[i] >= 0:
            push(prev_part[i])
        push(i)
    return [ranks[p] for p in parts if p is not None]


@dataclass(frozen=True)
class ChunkSteps:
    """How one chunk was encoded: ``states[0]`` is its bytes, ``states[-1]`` its final ids.

    ``whole_chunk_lookup`` is True when the merges stopped short but the whole chunk is itself a
    token, so (as in tiktoken) that token was used directly as the last step.
    """

    text: str
    states: list[list[int]]
    whole_chunk_lookup: bool = False

    @property
    def ids(self) -> list[int]:
        return self.states[-1]


# ---------------------------------------------------------------------------------------------
# 5. The tokenizer.
# ---------------------------------------------------------------------------------------------


class BPETokenizer(Tokenizer):
    """Byte-level BPE: ids 0..255 are bytes, 256.. are merges in training order, then specials."""

    type_name = "bpe"

    def __init__(self, merges: Sequence[MergeRecord], split_pattern: str | None = "gpt2",
                 special_tokens: Iterable[str] = ()):
        split_pattern_regex(split_pattern)
        self.merges = list(merges)
        self.split_pattern = split_pattern
        self.vocab = _vocab_from_merges(self.merges)
        self.ranks = {token: i for i, token in enumerate(self.vocab)}
        names = check_special_tokens(special_tokens)
        self.special_tokens = {name: len(self.vocab) + i for i, name in enumerate(names)}
        self._special_names = {i: name for name, i in self.special_tokens.items()}
        self.name = f"bpe-{self.vocab_size}"
        self._encoding: tiktoken.Encoding | None = None

    @classmethod
    def train(cls, text: str, vocab_size: int, split_pattern: str | None = "gpt2",
              special_tokens: Sequence[str] = (),
              on_merge: Callable[[MergeRecord], bool | None] | None = None) -> BPETokenizer:
        """Learn merges from ``text`` until the vocabulary (bytes + merges + special tokens) has
        ``vocab_size`` entries. See ``learn_merges`` for ``on_merge`` and early stopping."""
        merges = learn_merges(text, vocab_size, split_pattern, special_tokens, on_merge)
        return cls(merges, split_pattern, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], self.vocab_size)
        if token_id < len(self.vocab):
            return self.vocab[token_id]
        return self._special_names[token_id].encode("utf-8")

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, self.vocab_size)
        vocab, n = self.vocab, len(self.vocab)
        if any(i >= n for i in ids):
            return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    # -- the fast encoder: our ranks inside tiktoken ------------------------------------------

    def tiktoken_encoding(self, n_merges: int | None = None) -> tiktoken.Encoding:
        """A ``tiktoken.Encoding`` with our ids as its ranks (built locally, nothing downloaded).

        With ``n_merges`` only the first that many merges are included (and no special tokens).
        """
        if n_merges is None and self._encoding is not None:
            return self._encoding
        limit = len(self.vocab) if n_merges is None else 256 + n_merges
        encoding = tiktoken.Encoding(
            f"toygpt-{self.name}" + ("" if n_merges is None else f"-first-{n_merges}"),
            pat_str=split_pattern_regex(self.split_pattern),
            mergeable_ranks={token: i for i, token in enumerate(self.vocab[:limit])},
            special_tokens={} if n_merges is not None else dict(self.special_tokens),
        )
        if n_merges is None:
            self._encoding = encoding
        return encoding

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        utf8_bytes(text)  # tiktoken would quietly replace a lone surrogate; we refuse it
        encoding = self.tiktoken_encoding()
        if allow_special:
            return encoding.encode(text, allowed_special="all")
        return encoding.encode_ordinary(text)

    def encode_after_merges(self, text: str, n_merges: int) -> list[int]:
        """Encode with only the first ``n_merges`` merges, as the tokenizer stood at that point
        of training (0 gives bytes). Special tokens are treated as plain text."""
        if isinstance(n_merges, bool) or not isinstance(n_merges, int) or not 0 <= n_merges <= len(self.merges):
            raise TokenizerError(f"n_merges must be an integer in 0..{len(self.merges)}, got {n_merges!r}")
        utf8_bytes(text)
        return self.tiktoken_encoding(n_merges).encode_ordinary(text)

    # -- the plain-Python encoders ------------------------------------------------------------

    def _parts(self, text: str, allow_special: bool) -> list[str | int]:
        """Ordinary chunks (str) and special-token ids (int), in order."""
        utf8_bytes(text)
        parts: list[str | int] = []
        for part in split_on_special_tokens(text, self.special_tokens if allow_special else {}):
            parts.extend([part] if isinstance(part, int) else pre_tokenize(part, self.split_pattern))
        return parts

    def encode_python(self, text: str, *, allow_special: bool = False) -> list[int]:
        """``encode`` in plain Python (same ids, slower): pre-tokenize, then ``bpe_merge``."""
        ids: list[int] = []
        for part in self._parts(text, allow_special):
            ids.extend([part] if isinstance(part, int) else bpe_merge(part.encode("utf-8"), self.ranks))
        return ids

    def encode_steps(self, text: str, *, allow_special: bool = False) -> list[ChunkSteps]:
        """Show your work: every chunk with its ids after each merge step (short text only).

        >>> tok = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
        >>> [tok.decode(ids) for ids in tok.encode_steps("aaab")[0].states]
        ['aaab', 'aaab', 'aaab', 'aaab']
        >>> [len(ids) for ids in tok.encode_steps("aaab")[0].states]
        [4, 3, 2, 1]
        """
        if len(utf8_bytes(text)) > STEPS_MAX_BYTES:
            raise TokenizerError(
                f"encode_steps keeps every intermediate state, so it takes at most "
                f"{STEPS_MAX_BYTES} bytes of text; shorten the text or use encode()"
            )
        return [self._chunk_steps(part) for part in self._parts(text, allow_special)]

    def _chunk_steps(self, part: str | int) -> ChunkSteps:
        if isinstance(part, int):
            return ChunkSteps(self._special_names[part], [[part]])
        data = part.encode("utf-8")
        states = [[self.ranks[p] for p in parts] for parts in bpe_merge_steps(data, self.ranks)]
        if len(states[-1]) > 1 and data in self.ranks:
            return ChunkSteps(part, states + [[self.ranks[data]]], whole_chunk_lookup=True)
        return ChunkSteps(part, states)

    # -- saving and reading -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "version": 1,
            "split_pattern": self.split_pattern,
            "merges": [[*m.pair, m.count] for m in self.merges],
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BPETokenizer:
        data = require_type(data, cls.type_name)
        if data.get("version", 1) != 1:
            raise TokenizerError(f"unsupported BPE file version {data.get('version')!r}; expected 1")
        if "split_pattern" not in data:
            raise TokenizerError('a BPE tokenizer needs "split_pattern": "gpt2", "gpt4" or null')
        merges = _merges_from_rows(data.get("merges"))
        raw = data.get("special_tokens") or {}
        first = 256 + len(merges)
        n_special = len(raw) if isinstance(raw, Mapping) else 0
        specials = special_tokens_from_dict(raw, first, first + n_special - 1)
        return cls(merges, data["split_pattern"], sorted(specials, key=specials.__getitem__))

    def export_vocab(self) -> str:
        """The vocabulary as text, one token per line, with how each merge was formed::

            257  ␣t  ←  ␣ + t  (seen 4,031 times)
        """
        lines = [
            f"# {self.name}: {self.vocab_size} tokens = 256 bytes + {len(self.merges)} merges "
            f"+ {len(self.special_tokens)} special; split pattern: {self.split_pattern}",
            "# id  token  ←  left + right  (how often the pair occurred when it was merged)",
        ]
        lines += [f"{i:6d}  {label_for_bytes(self.vocab[i])}" for i in range(256)]
        for m in self.merges:
            left, right = (label_for_bytes(self.vocab[i]) for i in m.pair)
            lines.append(f"{m.new_id:6d}  {label_for_bytes(self.vocab[m.new_id])}  ←  "
                         f"{left} + {right}  (seen {m.count:,} times)")
        lines += [f"{i:6d}  {name}  (special)" for name, i in self.special_tokens.items()]
        return "\n".join(lines) + "\n"


def train_bpe(text: str, vocab_size: int, split_pattern: str | None = "gpt2",
              special_tokens: Sequence[str] = (),
              on_merge: Callable[[MergeRecord], bool | None] | None = None) -> BPETokenizer:
    """Function form of ``BPETokenizer.train``."""
    return BPETokenizer.train(text, vocab_size, split_pattern, special_tokens, on_merge)


def _vocab_from_merges(merges: Sequence[MergeRecord]) -> list[bytes]:
    """Token bytes for ids 0..255+len(merges), checking the merges are well formed.

    Each token's bytes must be unique: tiktoken (like GPT-2's ``encoder.json``) maps bytes to
    ids, and encoding looks tokens up by their bytes. Could two different pairs ever spell the
    same bytes? Not with the greedy training rule as far as we can tell (19,744 merges on tiny
    shakespeare never did), but a hand-written or loaded merge list can, so it is checked here.
    """
    vocab = [bytes([b]) for b in range(256)]
    spelled = set(vocab)
    total_bytes = 256
    for m in merges:
        a, b = m.pair
        if m.new_id != len(vocab) or not (0 <= a < len(vocab) and 0 <= b < len(vocab)):
            raise TokenizerError(
                f"merge {m} is out of order: merge number k must create id 256+k from ids below it"
            )
        total_bytes += len(vocab[a]) + len(vocab[b])
        if total_bytes > MAX_VOCAB_BYTES:
            raise TokenizerError(f"the merges spell more than {MAX_VOCAB_BYTES:,} bytes of tokens")
        token = vocab[a] + vocab[b]
        if token in spelled:
            raise TokenizerError(f"merge {m} spells {token!r}, which is already a token")
        vocab.append(token)
        spelled.add(token)
    return vocab


def _merges_from_rows(rows: Any) -> list[MergeRecord]:
    """``[[left, right, count], ...]`` from a file → merge records (types checked)."""
    if not isinstance(rows, list) or len(rows) > MAX_VOCAB_SIZE:
        raise TokenizerError('a BPE tokenizer needs "merges": a list of [left_id, right_id, count]')
    merges = []
    for k, row in enumerate(rows):
        if (not isinstance(row, list) or len(row) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in row)):
            raise TokenizerError(f"merge {k} should be [left_id, right_id, count] of integers ≥ 0, got {row!r}")
        merges.append(MergeRecord((row[0], row[1]), 256 + k, row[2]))
    return merges
