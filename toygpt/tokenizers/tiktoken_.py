"""OpenAI's production tokenizers (GPT-2 … GPT-4o) through ``tiktoken``, working offline.

``tiktoken.get_encoding("gpt2")`` downloads its merge files on first use and caches them (in
``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``). Its
download has no timeout, and a hash mismatch in the cache makes it download again, so this module
never lets tiktoken touch the network: it checks the cached files itself (by SHA-256), fetches
missing ones with a hard time limit in a background thread, and only then calls
``tiktoken.get_encoding``, which then reads from the cache. Offline with nothing cached, you get
``TokenizerUnavailable`` within seconds, with a message that says how to make the files available.

Set ``TOYGPT_OFFLINE=1`` to skip download attempts entirely.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
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
DOWNLOAD_TIMEOUT_S = 8.0  # for all files of one encoding together
MAX_DOWNLOAD_BYTES = 32 << 20  # the largest file (o200k_base) is about 3.6 MB

_lock = threading.Lock()
_loaded: dict[str, TiktokenTokenizer] = {}
_verified: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) whose hash was checked
# A failed load is remembered for a while, so a dashboard that reruns on every click does not
# wait for the network again each time.
RETRY_AFTER_S = 60.0
_failures: dict[str, tuple[float, TokenizerUnavailable]] = {}


# ---------------------------------------------------------------------------------------------
# Where tiktoken keeps its files, and whether they are there.
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


def _is_cached(url: str, sha256: str) -> bool:
    """True when the cached copy of ``url`` exists and has the expected SHA-256."""
    path = cache_path(url)
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (stat.st_size, stat.st_mtime_ns)
    if _verified.get(path) == key:
        return True
    try:
        with open(path, "rb") as f:
            ok = hashlib.sha256(f.read()).hexdigest() == sha256
    except OSError:
        return False
    if ok:
        _verified[path] = key
    return ok


def missing_files(name: str) -> list[tuple[str, str]]:
    """The ``(url, sha256)`` pairs of encoding ``name`` not (correctly) in the cache."""
    return [(url, sha) for url, sha in _files_of(name) if not _is_cached(url, sha)]


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


def _unavailable(name: str, missing: list[tuple[str, str]], reason: str) -> TokenizerUnavailable:
    files = "\n".join(f"  {url}\n    -> {cache_path(url)}" for url, _ in missing)
    return TokenizerUnavailable(
        f"The {name!r} tokenizer is not available: {reason}.\n"
        f"It needs these files in tiktoken's cache ({tiktoken_cache_dir() or 'disabled'}):\n{files}\n"
        "To make it available: run once with internet access "
        f"(python -c \"import tiktoken; tiktoken.get_encoding('{name}')\"), "
        "or copy those files from a machine that has them and point TIKTOKEN_CACHE_DIR at "
        "their folder (each file is named by the SHA-1 of its URL). "
        "The char, byte and bpe tokenizers work offline."
    )


# ---------------------------------------------------------------------------------------------
# Loading (lazily, once) and asking what is available.
# ---------------------------------------------------------------------------------------------


def load_encoding(name: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> tiktoken.Encoding:
    """``tiktoken.get_encoding(name)``, but never hanging: see the module docstring."""
    missing = missing_files(name)
    if missing:
        if not tiktoken_cache_dir():
            raise _unavailable(name, missing, "TIKTOKEN_CACHE_DIR is empty, which disables the cache")
        if os.environ.get("TOYGPT_OFFLINE", "") not in ("", "0"):
            raise _unavailable(name, missing, "TOYGPT_OFFLINE is set, so nothing is downloaded")
        deadline = time.monotonic() + timeout  # one budget for all of this encoding's files
        for url, sha in missing:
            try:
                fetch_into_cache(url, sha, max(0.1, deadline - time.monotonic()))
            except TokenizerUnavailable as exc:
                raise _unavailable(name, missing, str(exc)) from exc
    return tiktoken.get_encoding(name)


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

    Without ``check_network`` a tiktoken encoding counts as usable only if its files are cached.
    With it, an uncached one counts as usable when its download host answers within ``timeout``
    (its files would then be fetched on first use).
    """
    status: dict[str, str | None] = {"char": None, "byte": None, "bpe": None}
    reachable: bool | None = None
    for name in TIKTOKEN_NAMES:
        if name in _loaded or not missing_files(name):
            status[name] = None
            continue
        if check_network and reachable is None:
            reachable = _host_answers(_BLOB, timeout)
        status[name] = None if reachable else (
            f"not downloaded yet (needs {_BLOB.split('//')[1]} once, or files in TIKTOKEN_CACHE_DIR)"
        )
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
