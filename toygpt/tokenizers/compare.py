"""Put several tokenizers side by side on the same text.

The table behind the playground's comparison and the byte-level (MegaByte) discussion: a
bigger vocabulary means fewer, longer tokens, so the same ``block_size`` holds more text — at
the price of a bigger embedding table and rarer, harder-to-learn tokens::

    >>> from toygpt.tokenizers import ByteTokenizer, CharTokenizer
    >>> rows = compare("naïve café", [ByteTokenizer(), CharTokenizer.from_text("naïve café")])
    >>> [(r["tokenizer"], r["tokens"], r["bytes_per_token"]) for r in rows]
    [('byte', 12, 1.0), ('char', 10, 1.2)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from toygpt.tokenizers.base import Tokenizer, TokenizerError, utf8_bytes


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """How many tokens ``tokenizer`` cuts ``text`` into (``TokenizerError`` if it cannot)."""
    return len(tokenizer.encode(text))


def compare(text: str, tokenizers: Iterable[Tokenizer] | Mapping[str, Tokenizer],
            block_size: int = 64,
            count: Callable[[Tokenizer, str], int] = count_tokens) -> list[dict[str, Any]]:
    """One row per tokenizer (a list of dicts, ready for ``pandas.DataFrame``).

    Columns: ``tokenizer``, ``vocab_size``, ``tokens`` (how many the text needs — also the
    ``block_size`` a model would need to see all of it at once), ``chars_per_token``,
    ``bytes_per_token``, ``chars_per_block`` (how much of this text fits in ``block_size``
    tokens) and ``error`` (None, or why this tokenizer could not encode the text, e.g. a
    character missing from a char vocabulary — one bad tokenizer does not sink the table).

    ``count`` says how the tokens are counted: by encoding ``text`` (the default), or, when the
    caller already cut the text (the playground's cards), by reading that result instead of
    encoding it again.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise TokenizerError(f"block_size must be a positive integer, got {block_size!r}")
    n_chars, n_bytes = len(text), len(utf8_bytes(text))
    named = tokenizers.items() if isinstance(tokenizers, Mapping) else ((t.name, t) for t in tokenizers)
    rows = []
    for name, tokenizer in named:
        row: dict[str, Any] = {"tokenizer": name, "vocab_size": tokenizer.vocab_size}
        try:
            n_tokens = count(tokenizer, text)
        except TokenizerError as exc:
            rows.append(row | _empty_measures(str(exc)))
            continue
        per_token = n_chars / n_tokens if n_tokens else 0.0
        rows.append(row | {
            "tokens": n_tokens,
            "chars_per_token": round(per_token, 3),
            "bytes_per_token": round(n_bytes / n_tokens, 3) if n_tokens else 0.0,
            "chars_per_block": round(per_token * block_size, 1),
            "error": None,
        })
    return rows


def _empty_measures(error: str) -> dict[str, Any]:
    return {"tokens": None, "chars_per_token": None, "bytes_per_token": None,
            "chars_per_block": None, "error": error}
