"""Pick a tokenizer by name, and save/load one as JSON (what checkpoints store as tokenizer.json).

Names ("specs") understood by ``get_tokenizer``::

    char            one token per character of corpus_text
    byte            the 256 byte values
    bpe-512         byte-level BPE with 512 tokens, trained on corpus_text (GPT-2 split pattern)
    bpe:PATH        a tokenizer saved with save_tokenizer / to_dict
    gpt2, r50k_base, p50k_base, cl100k_base, o200k_base   OpenAI's, through tiktoken
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toygpt.limits import MAX_FILE_BYTES, LimitError, check_json_shape
from toygpt.tokenizers.base import Tokenizer, TokenizerError
from toygpt.tokenizers.bpe import BPETokenizer
from toygpt.tokenizers.byte import ByteTokenizer
from toygpt.tokenizers.char import CharTokenizer
from toygpt.tokenizers.tiktoken_ import TIKTOKEN_NAMES, TiktokenTokenizer, get_tiktoken

TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {
    cls.type_name: cls for cls in (CharTokenizer, ByteTokenizer, BPETokenizer, TiktokenTokenizer)
}
MAX_TOKENIZER_FILE_BYTES = MAX_FILE_BYTES["tokenizer.json"]


def tokenizer_from_dict(data: Any) -> Tokenizer:
    """Rebuild any tokenizer from its ``to_dict()``; ``TokenizerError`` on anything malformed.

    Safe on untrusted JSON: types, ranges and sizes are checked, nothing is executed.
    """
    if not isinstance(data, Mapping):
        raise TokenizerError(f"a tokenizer description must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in TOKENIZER_TYPES:
        raise TokenizerError(
            f"unknown tokenizer type {kind!r}; expected one of {', '.join(TOKENIZER_TYPES)}"
        )
    return TOKENIZER_TYPES[kind].from_dict(data)


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike[str]) -> None:
    """Write ``tokenizer.to_dict()`` as JSON (UTF-8)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tokenizer.to_dict(), f, ensure_ascii=False)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a tokenizer JSON file written by ``save_tokenizer`` (size-limited, no pickle)."""
    try:
        if os.path.getsize(path) > MAX_TOKENIZER_FILE_BYTES:
            raise TokenizerError(f"{path} is larger than {MAX_TOKENIZER_FILE_BYTES:,} bytes")
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKENIZER_FILE_BYTES + 1)  # a device such as /dev/zero has no size
        if len(raw) > MAX_TOKENIZER_FILE_BYTES:
            raise TokenizerError(f"{path} is larger than {MAX_TOKENIZER_FILE_BYTES:,} bytes")
        check_json_shape("tokenizer.json", raw)  # before json.loads builds millions of lists
        data = json.loads(raw.decode("utf-8"))
    except LimitError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
    except OSError as exc:
        raise TokenizerError(f"cannot read tokenizer file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TokenizerError(f"{path} is not a tokenizer JSON file ({exc})") from None
    return tokenizer_from_dict(data)


# Vocabulary sizes of OpenAI's encodings (``Encoding.n_vocab``), known without loading them.
TIKTOKEN_VOCAB_SIZES = {"gpt2": 50257, "r50k_base": 50257, "p50k_base": 50281, "cl100k_base": 100277,
                        "o200k_base": 200019}  # fmt: skip


@dataclass(frozen=True)
class TokenizerName:
    """A tokenizer name taken apart (``parse_tokenizer_name``): what kind of tokenizer, the
    vocabulary size when the name fixes it (``byte`` 256, ``bpe-512`` 512, ``gpt2`` 50257; None
    for ``char`` and a saved file, whose size depends on the text or the file), and a file path."""

    spec: str
    kind: str  # "char" | "byte" | "bpe" (trained on the corpus) | "bpe-file" | "tiktoken"
    vocab_size: int | None = None
    path: str | None = None

    @property
    def needs_corpus(self) -> bool:
        """char and bpe-N are built from the corpus text; the others exist on their own."""
        return self.kind in ("char", "bpe")


def parse_tokenizer_name(spec: Any) -> TokenizerName:
    """The one reading of a tokenizer name (see the module docstring); ``TokenizerError`` for
    anything else, naming the forms that work.

    >>> parse_tokenizer_name("bpe-512")
    TokenizerName(spec='bpe-512', kind='bpe', vocab_size=512, path=None)
    >>> parse_tokenizer_name("gpt2").vocab_size
    50257
    """
    if not isinstance(spec, str):
        raise TokenizerError(f"a tokenizer spec is a string such as 'char' or 'gpt2', got {spec!r}")
    if spec in ("char", "byte"):
        return TokenizerName(spec, spec, 256 if spec == "byte" else None)
    if spec in TIKTOKEN_NAMES:
        return TokenizerName(spec, "tiktoken", TIKTOKEN_VOCAB_SIZES.get(spec))
    if spec.startswith("bpe:"):
        return TokenizerName(spec, "bpe-file", path=spec[len("bpe:"):])
    if spec.startswith("bpe-"):
        return TokenizerName(spec, "bpe", _vocab_size_of(spec))
    raise TokenizerError(
        f"unknown tokenizer {spec!r}; use char, byte, bpe-<vocab size> (e.g. bpe-512), "
        f"bpe:<path to a saved tokenizer.json>, or one of {', '.join(TIKTOKEN_NAMES)}"
    )


def get_tokenizer(spec: str, corpus_text: str | None = None) -> Tokenizer:
    """A tokenizer from its name (see the module docstring); ``corpus_text`` for char and bpe-N."""
    name = parse_tokenizer_name(spec)
    if name.needs_corpus and corpus_text is None:
        raise TokenizerError(f"the {spec!r} tokenizer is built from a corpus: pass corpus_text=")
    if name.kind == "byte":
        return ByteTokenizer()
    if name.kind == "tiktoken":
        return get_tiktoken(spec)
    if name.kind == "bpe-file":
        return load_tokenizer(name.path)
    if name.kind == "char":
        return CharTokenizer.from_text(corpus_text)
    return BPETokenizer.train(corpus_text, name.vocab_size)


def _vocab_size_of(spec: str) -> int:
    digits = spec[len("bpe-"):]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 7:
        raise TokenizerError(f"{spec!r}: write the vocabulary size as a number, e.g. bpe-512")
    return int(digits)
