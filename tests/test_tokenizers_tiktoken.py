"""tiktoken encodings: offline behaviour (fast, clear failure), the download path on a local
HTTP server, and the wrapper's behaviour on a locally built ``tiktoken.Encoding``."""

from __future__ import annotations

import http.server
import inspect
import socket
import threading
import time
import urllib.error

import pytest
import tiktoken
from tiktoken_ext import openai_public

from toygpt.tokenizers import (
    BPETokenizer,
    TiktokenTokenizer,
    TokenizerError,
    TokenizerUnavailable,
    available_tokenizers,
    get_tiktoken,
    get_tokenizer,
    tokenizer_from_dict,
)
from toygpt.tokenizers import tiktoken_ as tk
from toygpt.tokenizers.bpe import GPT2_SPLIT_PATTERN


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty tiktoken cache, nothing loaded, no failures remembered, downloads allowed."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TOYGPT_OFFLINE", raising=False)
    monkeypatch.setattr(tk, "_loaded", {})
    monkeypatch.setattr(tk, "_failures", {})
    monkeypatch.setattr(tk, "_verified", {})

    def must_not_run(name):
        raise AssertionError("tiktoken.get_encoding would download without a timeout")

    monkeypatch.setattr(tk.tiktoken, "get_encoding", must_not_run)
    return tmp_path / "cache"


@pytest.fixture
def local_encoding() -> tiktoken.Encoding:
    bpe = BPETokenizer.train("hello world, hello there. " * 20, 280)
    # the special token sits a few ids past the merges, leaving unused ids, as in cl100k_base
    return tiktoken.Encoding("gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=dict(bpe.ranks),
                             special_tokens={"<|endoftext|>": len(bpe.vocab) + 3})


# --- the file table mirrors tiktoken's ----------------------------------------------------------


@pytest.mark.parametrize("name", tk.TIKTOKEN_NAMES)
def test_file_table_matches_installed_tiktoken(name):
    source = inspect.getsource(openai_public.ENCODING_CONSTRUCTORS[name])
    assert source.count("https://") == len(tk.ENCODING_FILES[name])
    for url, sha256 in tk.ENCODING_FILES[name]:
        assert f'"{url}"' in source and f'"{sha256}"' in source


def test_cache_path_is_where_tiktoken_looks(empty_cache):
    url = tk.ENCODING_FILES["r50k_base"][0][0]
    import hashlib

    assert tk.cache_path(url) == str(empty_cache / hashlib.sha1(url.encode()).hexdigest())


# --- offline: fail fast and say how to fix it ---------------------------------------------------


def test_a_hanging_network_gives_up_within_the_timeout(empty_cache, monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)
        raise urllib.error.URLError("released")

    monkeypatch.setattr(tk.urllib.request, "urlopen", hang)
    started = time.monotonic()
    try:
        with pytest.raises(TokenizerUnavailable) as info:
            get_tiktoken("cl100k_base", timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "within 0.5 s" in message and "TIKTOKEN_CACHE_DIR" in message
    assert "run once with internet access" in message and str(empty_cache) in message


def test_a_refused_connection_fails_at_once_and_is_remembered(empty_cache, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tk.urllib.request, "urlopen", refuse)
    for _ in range(3):
        with pytest.raises(TokenizerUnavailable, match="Name or service not known"):
            get_tokenizer("gpt2")
    assert len(calls) == 1  # later calls reuse the remembered failure instead of waiting again
    with pytest.raises(TokenizerUnavailable):
        tokenizer_from_dict({"type": "tiktoken", "encoding": "gpt2"})


def test_offline_switch_never_touches_the_network(empty_cache, monkeypatch):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setattr(tk.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    with pytest.raises(TokenizerUnavailable, match="TOYGPT_OFFLINE"):
        get_tiktoken("o200k_base")


def test_a_corrupt_cached_file_counts_as_missing(empty_cache, monkeypatch):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    url, _ = tk.ENCODING_FILES["p50k_base"][0]
    empty_cache.mkdir()
    (empty_cache / tk.cache_path(url).rsplit("/", 1)[1]).write_bytes(b"not the real file")
    assert tk.missing_files("p50k_base") == list(tk.ENCODING_FILES["p50k_base"])
    with pytest.raises(TokenizerUnavailable, match=tk.cache_path(url)):
        get_tiktoken("p50k_base")


def test_an_empty_cache_dir_setting_is_explained(empty_cache, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(TokenizerUnavailable, match="disables the cache"):
        get_tiktoken("r50k_base")


def test_unknown_encoding_names_are_a_plain_error(empty_cache):
    with pytest.raises(TokenizerError, match="choose one of") as info:
        get_tiktoken("gpt5")
    assert not isinstance(info.value, TokenizerUnavailable)


def test_available_tokenizers_reports_reasons(empty_cache, monkeypatch, local_encoding):
    status = available_tokenizers()
    assert status["char"] is None and status["byte"] is None
    assert all("not downloaded yet" in status[name] for name in tk.TIKTOKEN_NAMES)
    monkeypatch.setattr(tk, "_host_answers", lambda url, timeout: True)
    assert all(v is None for v in available_tokenizers(check_network=True).values())
    monkeypatch.setattr(tk, "_host_answers", lambda url, timeout: False)
    monkeypatch.setitem(tk._loaded, "gpt2", TiktokenTokenizer(local_encoding))
    status = available_tokenizers(check_network=True)
    assert status["gpt2"] is None and status["cl100k_base"] is not None


# --- the download path, against a local HTTP server -----------------------------------------------


@pytest.fixture
def local_server():
    payload = b"a stand-in for a tiktoken file\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/file":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", payload
    server.shutdown()
    server.server_close()


def test_fetch_into_cache_checks_the_hash_and_writes_the_file(empty_cache, local_server):
    import hashlib

    base, payload = local_server
    good = hashlib.sha256(payload).hexdigest()
    tk.fetch_into_cache(f"{base}/file", good, timeout=5)
    assert tk._is_cached(f"{base}/file", good)
    with open(tk.cache_path(f"{base}/file"), "rb") as f:
        assert f.read() == payload

    with pytest.raises(TokenizerUnavailable, match="SHA-256 does not match"):
        tk.fetch_into_cache(f"{base}/file?again", "0" * 64, timeout=5)
    assert not tk._is_cached(f"{base}/file?again", "0" * 64)
    with pytest.raises(TokenizerUnavailable, match="404"):
        tk.fetch_into_cache(f"{base}/missing", good, timeout=5)


def test_download_then_load_then_reuse(empty_cache, monkeypatch, local_server, local_encoding):
    import hashlib

    base, payload = local_server
    monkeypatch.setitem(tk.ENCODING_FILES, "gpt2", ((f"{base}/file", hashlib.sha256(payload).hexdigest()),))
    loads = []
    monkeypatch.setattr(tk.tiktoken, "get_encoding", lambda name: loads.append(name) or local_encoding)
    assert available_tokenizers()["gpt2"] is not None
    tok = get_tiktoken("gpt2", timeout=5)
    assert isinstance(tok, TiktokenTokenizer) and loads == ["gpt2"]
    assert available_tokenizers()["gpt2"] is None and not tk.missing_files("gpt2")
    assert get_tokenizer("gpt2") is tok and loads == ["gpt2"]  # loaded once, then cached


def test_host_probe(local_server):
    base, _ = local_server
    assert tk._host_answers(base + "/file", timeout=2)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    started = time.monotonic()
    assert not tk._host_answers(f"http://127.0.0.1:{closed}/", timeout=2)
    assert time.monotonic() - started < 3


# --- the wrapper, on a locally built encoding -------------------------------------------------------


def test_wrapper_on_a_local_encoding(local_encoding):
    tok = TiktokenTokenizer(local_encoding)
    eot = local_encoding.max_token_value
    assert tok.vocab_size == eot + 1 and tok.special_tokens == {"<|endoftext|>": eot}
    assert tok.encode("hello<|endoftext|>") == local_encoding.encode_ordinary("hello<|endoftext|>")
    assert tok.encode("hello<|endoftext|>", allow_special=True)[-1] == eot
    assert tok.decode(tok.encode("hello 🙂")) == "hello 🙂"
    for unused in (eot - 1, eot - 3):
        with pytest.raises(TokenizerError, match="unused"):
            tok.token_bytes(unused)
        with pytest.raises(TokenizerError, match="does not use"):
            tok.decode([104, unused])
    with pytest.raises(TokenizerError, match="tiktoken.Encoding"):
        TiktokenTokenizer("gpt2")


def test_to_dict_round_trip_through_the_cache(empty_cache, monkeypatch, local_encoding):
    tok = TiktokenTokenizer(local_encoding)  # named "gpt2"
    monkeypatch.setitem(tk._loaded, "gpt2", tok)
    assert tok.to_dict() == {"type": "tiktoken", "encoding": "gpt2"}
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode("hello there") == tok.encode("hello there")
    renamed = TiktokenTokenizer(tiktoken.Encoding("mine", pat_str=local_encoding._pat_str,
                                                  mergeable_ranks=local_encoding._mergeable_ranks,
                                                  special_tokens={}))
    with pytest.raises(TokenizerError, match="BPETokenizer"):
        renamed.to_dict()


def test_real_gpt2_when_its_files_are_cached():
    if tk.missing_files("gpt2"):
        pytest.skip("gpt2's files are not in tiktoken's cache (offline machine)")
    tok = get_tiktoken("gpt2")
    assert tok.encode("hello world") == [31373, 995] and tok.vocab_size == 50257
