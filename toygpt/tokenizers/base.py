"""One interface for every tokenizer: text → ids → text.

A tokenizer is a lookup table between pieces of text and small integers (token ids). Every
tokenizer in this package can say, for each id, which **bytes** it stands for
(``token_bytes``), which is enough to decode, to draw a printable label for the id, and to find
the stretch of the original text each token covers — so the rest of this file is shared.

Worked example, with the byte tokenizer (one token per UTF-8 byte)::

    >>> from toygpt.tokenizers import ByteTokenizer
    >>> tok = ByteTokenizer()
    >>> tok.encode("hé")          # 'é' is two bytes in UTF-8: C3 A9
    [104, 195, 169]
    >>> [tok.token_label(i) for i in [104, 195, 169]]
    ['h', '<0xC3>', '<0xA9>']
    >>> tok.encode_with_spans("hé")[1]     # 'é' belongs to the token holding its first byte
    [(0, 1), (1, 2), (2, 2)]
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

# The most special tokens / characters we accept from a file: a guard against hostile JSON.
MAX_SPECIAL_TOKENS = 4096
MAX_SPECIAL_TOKEN_CHARS = 256


class TokenizerError(ValueError):
    """Base class of every tokenizer error; its message says how to fix the problem."""


class TokenizerUnavailable(TokenizerError):
    """The tokenizer exists but cannot be used right now (e.g. its files need a download)."""


# ---------------------------------------------------------------------------------------------
# Text in: every tokenizer works on UTF-8, so a string that has no UTF-8 form is refused early.
# ---------------------------------------------------------------------------------------------


def utf8_bytes(text: str) -> bytes:
    """Return ``text`` as UTF-8, or raise ``TokenizerError`` naming the character that has none.

    A lone surrogate such as ``"\\ud83d"`` (half of an emoji's UTF-16 pair, typically left over
    from a broken JSON escape or a cut copy-paste) is a valid Python ``str`` but has no UTF-8
    encoding, so no byte-level tokenizer can represent it. We say so instead of letting
    ``UnicodeEncodeError`` escape (tiktoken would silently replace it with U+FFFD).
    """
    if not isinstance(text, str):
        raise TokenizerError(f"expected text (str), got {type(text).__name__}; decode bytes first")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise TokenizerError(
            f"text has a lone surrogate {bad!r} (U+{ord(bad):04X}) at character {exc.start}: "
            "it is half of a UTF-16 pair and has no UTF-8 form. Remove it, or clean the text "
            "with text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')."
        ) from None


# ---------------------------------------------------------------------------------------------
# Labels: what a token looks like when printed on its own.
# ---------------------------------------------------------------------------------------------

# Whitespace a learner must be able to see inside a token label.
VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\r": "␍", "\t": "⇥"}
# Unicode categories that print as nothing (controls, format marks such as ZWJ, odd spaces).
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Zs"}


def visible_char(ch: str) -> str:
    """A printable stand-in for one character: ``' ' → '␣'``, ``'\\x00' → '<0x00>'``,
    ``'\\u200d' (zero-width joiner) → '<U+200D>'``; ordinary characters are returned as is."""
    if ch in VISIBLE_WHITESPACE:
        return VISIBLE_WHITESPACE[ch]
    if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
        return f"<0x{ord(ch):02X}>" if ord(ch) < 0x80 else f"<U+{ord(ch):04X}>"
    return ch


def utf8_pieces(data: bytes) -> list[str | int]:
    """Split ``data`` into whole characters (str) and stray bytes (int) that start no character.

    >>> utf8_pieces("a€".encode()[:3])     # '€' is E2 82 AC; the last byte is cut off
    ['a', 226, 130]
    """
    pieces: list[str | int] = []
    i = 0
    while i < len(data):
        lead = data[i]
        size = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
        try:
            pieces.append(data[i : i + size].decode("utf-8"))
            i += size
        except UnicodeDecodeError:  # a partial or invalid sequence: show this one byte alone
            pieces.append(lead)
            i += 1
    return pieces


def label_for_bytes(data: bytes) -> str:
    """A printable label for a token's bytes: visible whitespace, ``<0xE2>`` for partial bytes.

    >>> label_for_bytes(b" the\\n")
    '␣the↵'
    >>> label_for_bytes("—".encode()[:2])  # the first two of the three bytes of an em dash
    '<0xE2><0x80>'
    """
    parts = []
    for piece in utf8_pieces(data):
        parts.append(f"<0x{piece:02X}>" if isinstance(piece, int) else visible_char(piece))
    label = "".join(parts)
    # A label that starts with a combining accent would glue itself onto whatever is printed
    # before it; the dotted circle is the conventional base to show such a mark on.
    if label and unicodedata.combining(label[0]):
        label = "◌" + label
    return label


# ---------------------------------------------------------------------------------------------
# Spans: which characters of the original text each token covers.
# ---------------------------------------------------------------------------------------------


# Byte value → 1 if it starts a UTF-8 character, 0 if it continues one (0b10xxxxxx).
_STARTS_CHAR = bytes(0 if 0x80 <= b < 0xC0 else 1 for b in range(256))


def chars_before_byte(data: bytes) -> list[int]:
    """For each byte offset ``0..len(data)`` of UTF-8 ``data``: how many characters start
    before it. At a character boundary that is the character index; inside a character it is
    the index of the *next* character.

    >>> chars_before_byte("aé€".encode())       # é is 2 bytes, € is 3
    [0, 1, 2, 2, 3, 3, 3]
    """
    return [0, *itertools.accumulate(data.translate(_STARTS_CHAR))]


def spans_from_token_bytes(text: str, pieces: Sequence[bytes]) -> list[tuple[int, int]]:
    """Character span ``(start, end)`` of ``text`` covered by each token, given each token's bytes.

    Each character belongs to the token that holds its *first* byte, so the spans tile the text
    (``"".join(text[s:e] for s, e in spans) == text``) and a UI can colour them side by side.
    A token made only of the tail bytes of a character gets an empty span at that point.
    Linear in the text: one table from byte offset to character index, then a lookup per token.

    >>> spans_from_token_bytes("🙂!", ["🙂".encode()[:2], "🙂".encode()[2:], b"!"])
    [(0, 1), (1, 1), (1, 2)]
    """
    ends = list(itertools.accumulate(map(len, pieces)))
    data = None if text.isascii() else utf8_bytes(text)
    expected = len(text) if data is None else len(data)
    if (ends[-1] if ends else 0) != expected:
        raise TokenizerError(
            f"tokens cover {ends[-1] if ends else 0} bytes but the text has {expected}; this "
            "tokenizer does not reproduce the text byte for byte, so spans cannot be computed "
            "from its bytes"
        )
    begins = [0, *ends][:-1]
    if data is None:  # one byte per character: byte offsets are character offsets
        return list(zip(begins, ends, strict=True))
    index = chars_before_byte(data)
    return [(index[b], index[e]) for b, e in zip(begins, ends, strict=True)]


# ---------------------------------------------------------------------------------------------
# Special tokens: ids with a meaning (end of text) rather than a spelling.
# ---------------------------------------------------------------------------------------------


def check_special_tokens(names: Iterable[str]) -> tuple[str, ...]:
    """Validate special-token names (non-empty, distinct, printable text) and return them."""
    if isinstance(names, str):
        raise TokenizerError(f"special_tokens must be a list of strings, e.g. [{names!r}]")
    names = tuple(names)
    if len(names) > MAX_SPECIAL_TOKENS:
        raise TokenizerError(f"{len(names)} special tokens is too many (at most {MAX_SPECIAL_TOKENS})")
    for name in names:
        if not isinstance(name, str) or not name or len(name) > MAX_SPECIAL_TOKEN_CHARS:
            raise TokenizerError(
                f"special token {name!r} must be a non-empty string of at most "
                f"{MAX_SPECIAL_TOKEN_CHARS} characters, such as '<|endoftext|>'"
            )
        utf8_bytes(name)
    if len(set(names)) != len(names):
        raise TokenizerError(f"special tokens must be distinct; got {list(names)}")
    return names


def split_on_special_tokens(text: str, special_tokens: Mapping[str, int]) -> list[str | int]:
    """Cut ``text`` into ordinary stretches (str) and special-token ids (int).

    Longer names are tried first so that ``<|a|>`` never hides ``<|a|>b``-style longer ones.

    >>> split_on_special_tokens("hi<|endoftext|>yo", {"<|endoftext|>": 256})
    ['hi', 256, 'yo']
    """
    if not special_tokens:
        return [text] if text else []
    names = sorted(special_tokens, key=len, reverse=True)
    pattern = "(" + "|".join(re.escape(name) for name in names) + ")"
    out: list[str | int] = []
    for i, part in enumerate(re.split(pattern, text)):
        if i % 2:
            out.append(special_tokens[part])
        elif part:
            out.append(part)
    return out


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """Return ``ids`` as a list, or raise ``TokenizerError`` on a non-integer or out-of-range id."""
    ids = list(ids)
    for token_id in ids:
        # numpy / torch integers are not ``int`` but have ``__index__``; bools are not ids
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise TokenizerError(f"token ids must be integers; got {token_id!r}")
        if not 0 <= token_id < vocab_size:
            raise TokenizerError(
                f"token id {token_id} is outside this tokenizer's vocabulary (0..{vocab_size - 1});"
                " was it produced by a model with a different tokenizer?"
            )
    return [int(token_id) for token_id in ids]


# ---------------------------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------------------------


class Tokenizer(ABC):
    """What every tokenizer offers. Subclasses implement ``encode``, ``token_bytes``, ``to_dict``
    and ``from_dict``; decoding, labels and spans follow from ``token_bytes``."""

    #: the value of ``to_dict()["type"]`` for this class; ``tokenizer_from_dict`` dispatches on it
    type_name: ClassVar[str] = ""
    name: str
    special_tokens: dict[str, int]

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """How many ids exist: the size of the model's embedding table."""

    @abstractmethod
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Text → ids. Text that spells a special token (``<|endoftext|>``) is encoded as plain
        text unless ``allow_special=True``: user text must not be able to inject control tokens."""

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes this id stands for (a special token's bytes are its name in UTF-8)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (with a ``"type"`` key) from which ``from_dict`` rebuilds it."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Rebuild from ``to_dict()``'s output; raises ``TokenizerError`` on anything malformed."""

    def unused_ids(self) -> tuple[int, ...]:
        """Ids inside ``0..vocab_size-1`` that stand for no token, so ``decode`` refuses them.

        A model sized by ``vocab_size`` has an output for each of them and, untrained, samples
        them; ``toygpt.sample`` gives them probability 0. Tokenizers that number their tokens
        without gaps (char, byte, bpe) have none; a tiktoken encoding may have holes
        (cl100k_base has no 100256 and no 100261..100275).
        """
        return ()

    def decode(self, ids: Iterable[int]) -> str:
        """Ids → text. Bytes that do not form whole UTF-8 characters (a sequence cut in the
        middle of an emoji) become the replacement character U+FFFD instead of raising."""
        ids = check_ids(ids, self.vocab_size)
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_label(self, token_id: int) -> str:
        """A printable label for one id: ``'␣the'``, ``'↵'``, ``'<0xE2>'``, ``'<|endoftext|>'``."""
        data = self.token_bytes(token_id)
        if token_id in self.special_tokens.values():
            return data.decode("utf-8")
        return label_for_bytes(data)

    def encode_with_spans(
        self, text: str, *, allow_special: bool = False
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids plus the character span ``(start, end)`` of ``text`` that each id covers.

        The spans tile the text in order; see ``spans_from_token_bytes`` for how a token that
        ends inside a multi-byte character is placed.
        """
        ids = self.encode(text, allow_special=allow_special)
        return ids, spans_from_token_bytes(text, [self.token_bytes(i) for i in ids])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vocab_size={self.vocab_size}>"


def check_model_vocab_size(tokenizer: Any, model_vocab_size: int) -> None:
    """Refuse a model and a tokenizer whose vocabularies differ in size, when they are put
    together: the model could emit ids the tokenizer has no text for (model larger) or be fed
    ids it has no embedding for (tokenizer larger). Raises ``TokenizerError`` naming both."""
    tokenizer_size = int(tokenizer.vocab_size)
    if tokenizer_size != model_vocab_size:
        name = getattr(tokenizer, "name", type(tokenizer).__name__)
        raise TokenizerError(
            f"the tokenizer {name!r} has {tokenizer_size:,} token ids but the model has "
            f"vocab_size={model_vocab_size:,}: they do not belong together. Use the tokenizer the "
            f"model was trained with, or build the model with vocab_size={tokenizer_size}."
        )


def require_type(data: Any, type_name: str) -> Mapping[str, Any]:
    """Check that ``data`` is a dict whose ``"type"`` is ``type_name`` (shared by ``from_dict``)."""
    if not isinstance(data, Mapping):
        raise TokenizerError(f"a tokenizer description must be a JSON object, got {type(data).__name__}")
    if data.get("type") != type_name:
        raise TokenizerError(f"expected a tokenizer of type {type_name!r}, got {data.get('type')!r}")
    return data


def special_tokens_from_dict(raw: Any, first_id: int, last_id: int) -> dict[str, int]:
    """Validate a ``{"name": id}`` mapping read from a file: ids distinct and in [first, last]."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TokenizerError("special_tokens must be a JSON object mapping names to ids")
    names = check_special_tokens(list(raw))
    ids = [raw[name] for name in names]
    for token_id in ids:
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not first_id <= token_id <= last_id:
            raise TokenizerError(
                f"special token id {token_id!r} must be an integer in {first_id}..{last_id}"
            )
    if len(set(ids)) != len(ids):
        raise TokenizerError(f"special token ids must be distinct; got {ids}")
    return dict(zip(names, ids, strict=True))
