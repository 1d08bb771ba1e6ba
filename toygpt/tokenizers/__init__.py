"""Tokenizers: text → token ids → text.

Read in this order (file order is teaching order):

1. ``base.py``      the interface every tokenizer shares, labels and character spans
2. ``char.py``      one token per character of a corpus (what the demo model uses)
3. ``byte.py``      one token per UTF-8 byte: nothing unknown, but long sequences
4. ``bpe.py``       byte-pair encoding as GPT-2 does it: train, encode step by step, save
5. ``tiktoken_.py`` OpenAI's production tokenizers through tiktoken, offline-safe
6. ``compare.py``   several tokenizers side by side on one text
7. ``catalog.py``   pick one by name; save/load as JSON

    >>> from toygpt.tokenizers import get_tokenizer
    >>> tok = get_tokenizer("bpe-300", corpus_text="low lower lowest " * 50)
    >>> tok.decode(tok.encode("slowest")) == "slowest"
    True
"""

from toygpt.tokenizers.base import Tokenizer, TokenizerError, TokenizerUnavailable
from toygpt.tokenizers.bpe import (
    BPETokenizer,
    ChunkSteps,
    MergeRecord,
    learn_merges,
    learn_merges_textbook,
    pre_tokenize,
    train_bpe,
)
from toygpt.tokenizers.byte import ByteTokenizer
from toygpt.tokenizers.catalog import (
    TokenizerName,
    get_tokenizer,
    load_tokenizer,
    parse_tokenizer_name,
    save_tokenizer,
    tokenizer_from_dict,
)
from toygpt.tokenizers.char import CharTokenizer, UnknownCharactersError
from toygpt.tokenizers.compare import compare
from toygpt.tokenizers.tiktoken_ import (
    TIKTOKEN_NAMES,
    TiktokenTokenizer,
    available_tokenizers,
    get_tiktoken,
)

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "ChunkSteps",
    "MergeRecord",
    "TIKTOKEN_NAMES",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "TokenizerName",
    "TokenizerUnavailable",
    "UnknownCharactersError",
    "available_tokenizers",
    "compare",
    "get_tiktoken",
    "get_tokenizer",
    "learn_merges",
    "learn_merges_textbook",
    "load_tokenizer",
    "parse_tokenizer_name",
    "pre_tokenize",
    "save_tokenizer",
    "tokenizer_from_dict",
    "train_bpe",
]
