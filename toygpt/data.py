"""Corpora, splits and batches: where the training text comes from and how it reaches the model.

    corpus text (str)
      → tokenizer.encode → token ids (cached on disk as a numpy array)
      → split: the first 90% trains, the last 10% validates
      → get_batch: B random windows of block_size + 1 tokens; x = window[:-1], y = window[1:]

Three kinds of corpus:

* **built-in**, generated here from a seed, offline, chosen so that what a model learns shows up
  in its attention: ``copy`` (induction heads), ``reverse``, ``sort``, ``addition``,
  ``counting`` and ``toy-english`` (words in roles, so their embeddings cluster);
* **downloaded** on first use, checked against a sha256 and cached: ``shakespeare``;
* **your own text**, from a path or uploaded bytes (``read_user_text``).

    >>> text = load_corpus("addition", seed=0)
    >>> text.splitlines()[0]  # doctest: +SKIP
    '864+394=1258'
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toygpt.checkpoint import atomic_write
from toygpt.stopping import check_stop

DEFAULT_MAX_BYTES = 20_000_000  # user text above this is refused: ~20 M characters is plenty here
BUILTIN_SIZE = 200_000  # characters in a generated corpus: a few hundred nano steps see most of it
VAL_FRACTION = 0.1  # the last 10% validates, as the common char-level recipes do
DOWNLOAD_TIMEOUT_S = 5.0  # offline, a download must fail in seconds, not hang


class CorpusError(ValueError):
    """A corpus cannot be loaded or used; the message says how to fix it."""


@dataclass(frozen=True)
class CorpusInfo:
    """One entry of ``list_corpora()``: ``kind`` is "built-in" or "download"."""

    name: str
    description: str
    kind: str


# --------------------------------------------------------------------------------------------
# Built-in corpora: generated from a seed, one example per line
# --------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _random_word(rng: random.Random, low: int = 3, high: int = 10) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))


def copy_line(rng: random.Random) -> str:
    """A random string, a separator, the same string again: ``"qzkf|qzkf"``. Nothing predicts the
    first half; the second half is free for a model that has learned to look back and copy
    (an *induction head*: attend to the token after the previous occurrence of this one)."""
    word = _random_word(rng)
    return f"{word}|{word}"


def reverse_line(rng: random.Random) -> str:
    """``"abcd>dcba"``: the answer's i-th letter sits at a position that moves *backwards*."""
    word = _random_word(rng)
    return f"{word}>{word[::-1]}"


def sort_line(rng: random.Random) -> str:
    """``"dbca>abcd"``: each answer letter is the smallest one not yet written."""
    word = _random_word(rng)
    return f"{word}>{''.join(sorted(word))}"


def addition_line(rng: random.Random) -> str:
    """``"123+45=168"``: the digits of the sum depend on digits far back, and on carries."""
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"{a}+{b}={a + b}"


def counting_line(rng: random.Random) -> str:
    """``"12 15 18 21 24"``: the first two numbers give the step, the rest follow from it."""
    step = rng.choice([1, 1, 2, 3, 5, 10])
    start = rng.randint(0, 60)
    return " ".join(str(start + step * i) for i in range(rng.randint(4, 8)))


# Words grouped by the role they play, so that a model's embeddings of them cluster by role.
TOY_WORDS = {
    "animal": ["cat", "dog", "fox", "bird", "horse", "mouse", "owl", "frog"],
    "person": ["king", "queen", "girl", "boy", "farmer", "baker", "sailor", "child"],
    "thing": ["ball", "apple", "book", "boat", "cake", "hat", "key", "stone"],
    "colour": ["red", "blue", "green", "black", "white", "brown"],
    "size": ["big", "small", "tiny", "huge", "old", "young"],
    "act_on": ["sees", "likes", "finds", "chases", "follows", "wants"],
    "act": ["sleeps", "runs", "sings", "waits", "jumps", "dances"],
    "manner": ["quickly", "slowly", "quietly", "happily", "often"],
    "place": ["garden", "river", "forest", "house", "market", "hill"],
}


def _noun_phrase(rng: random.Random, kinds: tuple[str, ...]) -> str:
    noun = rng.choice(TOY_WORDS[rng.choice(kinds)])
    adjectives = [rng.choice(TOY_WORDS[kind]) for kind in ("size", "colour") if rng.random() < 0.4]
    return " ".join([rng.choice(["the", "a"]), *adjectives, noun])


def toy_english_line(rng: random.Random) -> str:
    """A sentence from a small grammar: ``"the small fox chases a red ball ."``.

    Subjects are animals or people (never things); a verb either takes an object or a manner or
    place, so each word only ever appears in one role — which is what makes role clusters show up in embeddings.
    """
    subject = _noun_phrase(rng, ("animal", "person"))
    if rng.random() < 0.5:
        return f"{subject} {rng.choice(TOY_WORDS['act_on'])} {_noun_phrase(rng, ('animal', 'person', 'thing'))} ."
    tail = rng.choice(TOY_WORDS["manner"]) if rng.random() < 0.5 else f"by the {rng.choice(TOY_WORDS['place'])}"
    return f"{subject} {rng.choice(TOY_WORDS['act'])} {tail} ."


BUILTIN: dict[str, tuple[Callable[[random.Random], str], str]] = {
    "copy": (copy_line, "word|word — copy a random string (learn it: an induction head)"),
    "reverse": (reverse_line, "abcd>dcba — write a random string backwards"),
    "sort": (sort_line, "dbca>abcd — sort the letters of a random string"),
    "addition": (addition_line, "123+45=168 — add two numbers below 1000"),
    "counting": (counting_line, "12 15 18 21 — continue a count with a step of 1, 2, 3, 5 or 10"),
    "toy-english": (toy_english_line, "the small fox chases a red ball . — words in fixed roles"),
}


def generate_builtin(name: str, seed: int = 0, size: int = BUILTIN_SIZE) -> str:
    """About ``size`` characters of the built-in corpus ``name``, one example per line.

    The same (name, seed, size) always gives the same text: ``random.Random(seed)`` drives it.
    """
    if name not in BUILTIN:
        raise CorpusError(f"unknown built-in corpus {name!r}; choose one of {sorted(BUILTIN)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CorpusError(f"size={size!r} must be a positive number of characters; try {BUILTIN_SIZE}")
    make_line, _ = BUILTIN[name]
    rng = random.Random(f"{name}/{seed}")  # a string seed: every corpus draws its own stream
    lines, total = [], 0
    while total < size:
        line = make_line(rng)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Downloaded corpora: fetched once, checked against a sha256, cached in the data dir
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    url: str
    sha256: str
    size: int
    description: str


DOWNLOADS = {
    "shakespeare": Download(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        description="tiny shakespeare: 1.1 MB of plays, 65 distinct characters (downloaded once)",
    ),
}


def data_dir() -> Path:
    """Where toygpt caches corpora and token ids: ``$TOYGPT_DATA_DIR``, else the user's cache dir
    (``$XDG_CACHE_HOME/toygpt`` or ``~/.cache/toygpt``)."""
    explicit = os.environ.get("TOYGPT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "toygpt"


def cached_corpus_path(name: str) -> Path:
    return data_dir() / "corpora" / f"{name}.txt"


def _download_info(name: str) -> Download:
    if name not in DOWNLOADS:
        raise CorpusError(f"{name!r} is not a downloadable corpus; choose one of {sorted(DOWNLOADS)}")
    return DOWNLOADS[name]


def how_to_provide(name: str) -> str:
    """The instructions every "cannot get the file" message ends with."""
    info = _download_info(name)
    return (
        f"On a machine with internet, download {info.url} ({info.size:,} bytes), then run "
        f"`python -m toygpt data add {name} PATH` with the path of that file "
        f"(or put it at {cached_corpus_path(name)})."
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_and_store(name: str, data: bytes, origin: str, advice: bool = True) -> Path:
    info = _download_info(name)
    digest = _sha256(data)
    if digest != info.sha256:
        raise CorpusError(
            f"{origin} is not the expected {name} file: its sha256 is {digest}, expected "
            f"{info.sha256} ({len(data):,} bytes; expected {info.size:,}). Nothing was cached."
            + (" " + how_to_provide(name) if advice else "")
        )
    path = cached_corpus_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return path


def download_corpus(name: str, url: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download corpus ``name`` (from ``url``, default its public source), check its sha256 and
    cache it. A wrong checksum is rejected and nothing is cached. Offline, this fails within
    about ``timeout`` seconds with a message that says how to provide the file by hand."""
    info = _download_info(name)
    url = url or info.url
    limit = 4 * info.size  # a server sending far more than expected is not sending our file
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CorpusError(f"could not download {name} from {url} ({reason}). " + how_to_provide(name)) from None
    if len(data) > limit:
        raise CorpusError(f"{url} sent more than {limit:,} bytes; that is not the {name} file. Nothing was cached.")
    return _check_and_store(name, data, f"the download from {url}")


def add_corpus_file(name: str, path: str | os.PathLike[str]) -> Path:
    """Seed the cache with a local copy of a downloadable corpus (checked against its sha256)."""
    info = _download_info(name)
    source = Path(path).expanduser()
    if not source.is_file():
        raise CorpusError(f"{source} is not a file. " + how_to_provide(name))
    if source.stat().st_size > 4 * info.size:
        raise CorpusError(f"{source} is {source.stat().st_size:,} bytes; the {name} file has {info.size:,}.")
    return _check_and_store(name, source.read_bytes(), str(source))


def add_corpus_data(name: str, data: bytes, origin: str) -> Path:
    """Seed the cache with the bytes of a downloadable corpus that a user handed over (an upload),
    checked against its sha256; ``origin`` names them in the error (e.g. "The uploaded file
    input.txt"). Raises ``CorpusError`` for any other bytes, and caches nothing then."""
    info = _download_info(name)
    if len(data) > 4 * info.size:
        raise CorpusError(f"{origin} is {len(data):,} bytes; the {name} file has {info.size:,}.")
    return _check_and_store(name, data, origin, advice=False)


def ensure_corpus(name: str, url: str | None = None) -> Path:
    """The cached file of a downloadable corpus, downloading it on first use."""
    path = cached_corpus_path(name)
    if path.is_file():
        return path
    return download_corpus(name, url)


# --------------------------------------------------------------------------------------------
# Listing and loading
# --------------------------------------------------------------------------------------------


def list_corpora() -> list[CorpusInfo]:
    """Every corpus ``load_corpus`` knows, built-in first."""
    infos = [CorpusInfo(name, description, "built-in") for name, (_, description) in BUILTIN.items()]
    infos += [CorpusInfo(name, d.description, "download") for name, d in DOWNLOADS.items()]
    return infos


def load_corpus(name: str, seed: int = 0) -> str:
    """The text of corpus ``name``: generated (built-in, from ``seed``) or read from the cache
    (downloaded on first use; ``seed`` is ignored)."""
    if name in BUILTIN:
        return generate_builtin(name, seed)
    if name in DOWNLOADS:
        return read_user_text(ensure_corpus(name), max_bytes=4 * DOWNLOADS[name].size)
    names = sorted(BUILTIN) + sorted(DOWNLOADS)
    raise CorpusError(f"unknown corpus {name!r}; choose one of {names}, or give your own text file")


# --------------------------------------------------------------------------------------------
# Your own text
# --------------------------------------------------------------------------------------------


def _read_capped(source: str | os.PathLike[str] | bytes, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data, label = bytes(source), "the uploaded text"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise CorpusError(f"{path} is not a file; give the path of a UTF-8 text file")
        size = path.stat().st_size
        if size > max_bytes:  # refuse before reading: never load a huge file just to reject it
            raise CorpusError(_too_big(str(path), size, max_bytes))
        data, label = path.read_bytes(), str(path)
    if len(data) > max_bytes:
        raise CorpusError(_too_big(label, len(data), max_bytes))
    return data, label


def _too_big(label: str, size: int, max_bytes: int) -> str:
    return (
        f"{label} is {size:,} bytes, above the limit of {max_bytes:,}; use a shorter text "
        f"(a few MB is plenty to train on here) or pass a larger max_bytes"
    )


def read_user_text(source: str | os.PathLike[str] | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Text from a file path or uploaded bytes, checked: UTF-8, not binary, not empty, not huge.

    A UTF-8 byte-order mark is dropped and Windows line ends become ``\\n``.

    >>> read_user_text(b"hello\\r\\nworld\\r\\n")
    'hello\\nworld\\n'
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise CorpusError(f"max_bytes={max_bytes!r} must be a positive whole number of bytes")
    data, label = _read_capped(source, max_bytes)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex().upper()
        raise CorpusError(
            f"{label} is not UTF-8 text (byte 0x{bad} at offset {exc.start:,} starts no UTF-8 "
            "character). Save it as UTF-8 (in an editor: 'Save with encoding UTF-8'; or "
            "`iconv -f latin1 -t utf-8 in.txt > out.txt`)."
        ) from None
    if "\x00" in text:
        raise CorpusError(f"{label} contains NUL bytes: it looks like a binary file, not text")
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise CorpusError(f"{label} is empty; give some text to train on (a few KB at least)")
    return text


# --------------------------------------------------------------------------------------------
# Token ids, splits and batches
# --------------------------------------------------------------------------------------------


class TokenData:
    """A corpus as token ids, split into train (first 90%) and val (last 10%).

    ``get_batch`` draws B random windows of ``block_size + 1`` tokens from one split::

        tokens   t0 t1 t2 t3 t4           (a window of block_size + 1 = 5)
        x        t0 t1 t2 t3              what the model reads
        y           t1 t2 t3 t4           what it should predict at each position
    """

    def __init__(self, ids: torch.Tensor, vocab_size: int, val_fraction: float = VAL_FRACTION) -> None:
        if ids.dim() != 1 or len(ids) < 2:
            raise CorpusError(f"the corpus has {len(ids)} tokens; give a longer text (at least a few hundred tokens)")
        if not 0.0 < val_fraction < 1.0:
            raise CorpusError(f"val_fraction={val_fraction!r} must be between 0 and 1; try 0.1")
        self.ids = ids.long()
        self.vocab_size = int(vocab_size)
        n_train = int(len(ids) * (1.0 - val_fraction))
        self.train, self.val = self.ids[:n_train], self.ids[n_train:]

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val"):
            raise ValueError(f"split={name!r}; choose 'train' or 'val'")
        return self.train if name == "train" else self.val

    @property
    def max_block_size(self) -> int:
        """The longest block_size both splits can serve (a window needs block_size + 1 tokens)."""
        return min(len(self.train), len(self.val)) - 1

    def check_block_size(self, block_size: int) -> None:
        if block_size > self.max_block_size:
            shortest = "validation" if len(self.val) <= len(self.train) else "training"
            raise CorpusError(
                f"block_size={block_size} does not fit: the {shortest} split has only "
                f"{min(len(self.train), len(self.val))} tokens and a training window needs "
                f"block_size + 1. Use block_size ≤ {max(self.max_block_size, 0)}, or a longer text."
            )

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, both (batch_size, block_size): random windows, y shifted by one."""
        self.check_block_size(block_size)
        data = self.split(split)
        windows = data.unfold(0, block_size + 1, 1)  # (N - block_size, block_size + 1), a view
        starts = torch.randint(len(windows), (batch_size,), generator=generator)
        batch = windows[starts]  # (B, block_size + 1), copied out of the view
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        if device is not None and torch.device(device).type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return x, y


def _cache_key(text: str, tokenizer: Any) -> str:
    identity = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    digest.update(identity.encode("utf-8"))
    return digest.hexdigest()[:32]


def _load_cached_ids(path: Path, vocab_size: int) -> torch.Tensor | None:
    """The cached ids, or None when there are none or they are unusable (the cache is disposable)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.ndim != 1 or array.dtype.kind not in "iu" or len(array) < 2:
        return None
    ids = torch.from_numpy(array.astype(np.int64))
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        return None
    return ids


def _store_ids(path: Path, ids: torch.Tensor, vocab_size: int) -> None:
    dtype = np.uint16 if vocab_size <= 65536 else np.int32  # half or a quarter of int64's disk
    buffer = io.BytesIO()
    np.save(buffer, ids.numpy().astype(dtype), allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


ENCODE_PIECE_CHARS = 1 << 20
PIECE_END = re.compile(r"\n(?=\S)")  # a newline before a visible character


def encode_stoppable(text: str, tokenizer: Any) -> list[int]:
    """``tokenizer.encode(text)``, checking for Stop (``toygpt.stopping``) between pieces of
    about a million characters. A piece ends at a newline followed by a visible character,
    where the split patterns of GPT-2/GPT-4-style BPE always cut (and char/byte tokenizers cut
    everywhere), so the ids equal one call's; a BPE without a split pattern, or a text with
    no such newline, is encoded in one call."""
    if getattr(tokenizer, "split_pattern", "") is None:
        check_stop()
        return tokenizer.encode(text)
    ids: list[int] = []
    start = 0
    while start < len(text):
        check_stop()
        found = PIECE_END.search(text, start + ENCODE_PIECE_CHARS)
        end = found.end() if found else len(text)
        ids += tokenizer.encode(text[start:end])
        start = end
    check_stop()
    return ids


def encode_cached(text: str, tokenizer: Any, cache: bool = True) -> torch.Tensor:
    """``tokenizer.encode(text)`` as a 1-D int64 tensor, cached on disk by (text, tokenizer)."""
    path = data_dir() / "tokens" / f"{_cache_key(text, tokenizer)}.npy"
    if cache:
        cached = _load_cached_ids(path, tokenizer.vocab_size)
        if cached is not None:
            return cached
    ids = torch.tensor(encode_stoppable(text, tokenizer), dtype=torch.long)
    if cache and len(ids) >= 2:
        _store_ids(path, ids, tokenizer.vocab_size)
    return ids


def prepare(text: str, tokenizer: Any, cache: bool = True, val_fraction: float = VAL_FRACTION) -> TokenData:
    """Encode ``text`` (cached) and split it: the first 90% trains, the last 10% validates."""
    if not isinstance(text, str) or not text:
        raise CorpusError("the corpus is empty; give some text to train on")
    return TokenData(encode_cached(text, tokenizer, cache), tokenizer.vocab_size, val_fraction)


def start_token_for(token_data: TokenData, tokenizer: Any) -> int:
    r"""The token a model trained on ``token_data`` should start generating from: a newline when
    it is one token that occurs in the training split (every corpus here starts its lines,
    examples and speeches after one), else the training split's most frequent token. Either
    way a context the model has seen many times — unlike ``<|endoftext|>``, which ``prepare``
    never puts into the data. Runs record it as ``GPTConfig.bos_token_id``.

    >>> from toygpt.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_text("ab\nba\n")
    >>> tok.decode([start_token_for(prepare("ab\nba\n" * 10, tok, cache=False), tok)])
    '\n'
    """
    train = token_data.split("train")
    try:
        newline = tokenizer.encode("\n")
    except ValueError:  # a char vocabulary without "\n"
        newline = []
    if len(newline) == 1 and bool((train == newline[0]).any()):
        return int(newline[0])
    return int(torch.bincount(train, minlength=token_data.vocab_size).argmax())


def clear_token_cache() -> int:
    """Delete every cached token array; return how many files went."""
    folder = data_dir() / "tokens"
    count = len(list(folder.glob("*.npy"))) if folder.is_dir() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return count
