"""Byte-level tokenization: the 256 possible UTF-8 byte values are the whole vocabulary.

Nothing can be unknown — every string is some sequence of bytes — and the vocabulary is tiny,
so the embedding table is tiny too. The price is length: English needs about one token per
character and Chinese or emoji three or four, so a model sees far less text per ``block_size``.
That trade is MegaByte's starting point (model bytes directly, but cut the sequence into
patches so attention stays affordable)::

    >>> tok = ByteTokenizer(special_tokens=["<|endoftext|>"])
    >>> tok.encode("hi 🙂")                  # the emoji alone is four bytes
    [104, 105, 32, 240, 159, 153, 130]
    >>> tok.encode("<|endoftext|>", allow_special=True)
    [256]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from toygpt.tokenizers.base import (
    Tokenizer,
    check_ids,
    check_special_tokens,
    require_type,
    special_tokens_from_dict,
    split_on_special_tokens,
    utf8_bytes,
)


class ByteTokenizer(Tokenizer):
    """Ids 0..255 are byte values; special tokens (if any) get ids 256, 257, ..."""

    type_name = "byte"

    def __init__(self, special_tokens: Iterable[str] = ()):
        names = check_special_tokens(special_tokens)
        self.special_tokens = {name: 256 + i for i, name in enumerate(names)}
        self._special_bytes = {i: name.encode("utf-8") for name, i in self.special_tokens.items()}
        self.name = "byte"

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if not allow_special:
            return list(utf8_bytes(text))
        utf8_bytes(text)
        ids: list[int] = []
        for part in split_on_special_tokens(text, self.special_tokens):
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend(part.encode("utf-8"))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, self.vocab_size)
        if not self.special_tokens:
            return bytes(ids).decode("utf-8", errors="replace")
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], self.vocab_size)
        return bytes([token_id]) if token_id < 256 else self._special_bytes[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "special_tokens": dict(self.special_tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ByteTokenizer:
        data = require_type(data, cls.type_name)
        raw = data.get("special_tokens") or {}
        n_special = len(raw) if isinstance(raw, Mapping) else 0
        specials = special_tokens_from_dict(raw, 256, 256 + n_special - 1)
        # ids are assigned in order, so rebuild in id order to reproduce the same ids
        return cls(sorted(specials, key=specials.__getitem__))
