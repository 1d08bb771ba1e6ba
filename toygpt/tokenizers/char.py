"""The simplest tokenizer: one token per character, vocabulary read off a corpus.

This is what the demo model uses (tiny shakespeare has 65 distinct characters, so its
embedding table has 65 rows). Ids are the characters sorted by code point, as in nanoGPT's
``shakespeare_char``::

    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.chars
    [' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
    >>> tok.encode("hold")
    [3, 5, 4, 1]

The price of its simplicity: a character the corpus never showed has no id. Encoding one raises
``UnknownCharactersError`` — or, with ``unk=True``, maps it to one extra, visible ``<unk>`` token
(which then decodes to the text ``"<unk>"``, not to the character that was lost).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from toygpt.tokenizers.base import (
    Tokenizer,
    TokenizerError,
    check_ids,
    require_type,
    utf8_bytes,
)

UNK = "<unk>"
# The most characters a vocabulary may hold (all of Unicode fits): a guard for hostile files.
MAX_CHARS = 0x110000
_SHOWN_UNKNOWN = 8  # how many unknown characters an error message lists


class UnknownCharactersError(TokenizerError):
    """Text contains characters outside a ``CharTokenizer``'s vocabulary.

    ``characters`` lists every distinct unknown character in order of first appearance.
    """

    def __init__(self, characters: list[str]):
        self.characters = characters
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in characters[:_SHOWN_UNKNOWN])
        more = f" and {len(characters) - _SHOWN_UNKNOWN} more" if len(characters) > _SHOWN_UNKNOWN else ""
        super().__init__(
            f"{len(characters)} character(s) are not in this character vocabulary: {shown}{more}. "
            "Remove them from the text, build the vocabulary from a corpus that contains them, "
            f"or use CharTokenizer.from_text(corpus, unk=True) to map them to a visible {UNK}."
        )


class CharTokenizer(Tokenizer):
    """One id per distinct character of a corpus (plus ``<unk>`` when ``unk=True``)."""

    type_name = "char"

    def __init__(self, chars: Iterable[str], unk: bool = False):
        chars = list(chars)
        _check_chars(chars)
        self.chars = chars
        self.unk = bool(unk)
        self.char_to_id = {ch: i for i, ch in enumerate(chars)}
        self.unk_id: int | None = len(chars) if self.unk else None
        self.special_tokens = {UNK: len(chars)} if self.unk else {}
        self.name = "char"

    @classmethod
    def from_text(cls, text: str, unk: bool = False) -> CharTokenizer:
        """Build the vocabulary from every distinct character of ``text``, sorted by code point."""
        utf8_bytes(text)  # refuse lone surrogates here, not later at encode time
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text; pass a corpus")
        return cls(sorted(set(text)), unk=unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + (1 if self.unk else 0)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        # allow_special has nothing to do here: "<unk>" typed by a user is five characters;
        # the <unk> id only ever stands for a character the vocabulary lacks.
        utf8_bytes(text)
        lookup = self.char_to_id
        try:
            return [lookup[ch] for ch in text]
        except KeyError:
            if self.unk_id is None:
                raise UnknownCharactersError(self.unknown_characters(text)) from None
        return [lookup.get(ch, self.unk_id) for ch in text]

    def unknown_characters(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that have no id, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.char_to_id))

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, self.vocab_size)
        return "".join(UNK if i == self.unk_id else self.chars[i] for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], self.vocab_size)
        return (UNK if token_id == self.unk_id else self.chars[token_id]).encode("utf-8")

    def encode_with_spans(
        self, text: str, *, allow_special: bool = False
    ) -> tuple[list[int], list[tuple[int, int]]]:
        # One token per character, so token i covers character i (even when it is <unk>).
        ids = self.encode(text, allow_special=allow_special)
        return ids, [(i, i + 1) for i in range(len(ids))]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "chars": list(self.chars), "unk": self.unk}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CharTokenizer:
        data = require_type(data, cls.type_name)
        chars, unk = data.get("chars"), data.get("unk", False)
        if not isinstance(chars, list) or not isinstance(unk, bool):
            raise TokenizerError('a char tokenizer needs "chars": [list of characters], "unk": bool')
        return cls(chars, unk=unk)


def _check_chars(chars: list[Any]) -> None:
    """Each entry must be exactly one encodable character, with no repeats."""
    if not chars:
        raise TokenizerError("a character vocabulary needs at least one character")
    if len(chars) > MAX_CHARS:
        raise TokenizerError(f"{len(chars)} characters is more than Unicode has ({MAX_CHARS})")
    for ch in chars:
        if not isinstance(ch, str) or len(ch) != 1:
            raise TokenizerError(f"each vocabulary entry must be one character; got {ch!r}")
        utf8_bytes(ch)
    if len(set(chars)) != len(chars):
        raise TokenizerError("the character vocabulary lists a character twice")
