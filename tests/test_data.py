"""Corpora, user text, the download cache (against a local HTTP server), splits and batches."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toygpt import data
from toygpt.data import CorpusError, Download, TokenData
from toygpt.tokenizers import CharTokenizer

# --------------------------------------------------------------------------------------------
# Built-in corpora
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(data.BUILTIN))
def test_builtin_corpus_is_deterministic_and_sized(name):
    text = data.load_corpus(name, seed=3)
    assert text == data.load_corpus(name, seed=3)
    assert text != data.load_corpus(name, seed=4)
    assert data.BUILTIN_SIZE <= len(text) < data.BUILTIN_SIZE + 200
    assert text.endswith("\n") and "\n\n" not in text


def _lines(name):
    return data.generate_builtin(name, seed=1, size=5000).splitlines()


def test_copy_reverse_sort_lines_follow_their_rule():
    for line in _lines("copy"):
        left, right = line.split("|")
        assert left == right and left.isalpha()
    for line in _lines("reverse"):
        left, right = line.split(">")
        assert right == left[::-1]
    for line in _lines("sort"):
        left, right = line.split(">")
        assert right == "".join(sorted(left))


def test_addition_lines_are_correct_sums():
    for line in _lines("addition"):
        a, b, total = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line).groups())
        assert a + b == total


def test_counting_lines_have_a_constant_step():
    for line in _lines("counting"):
        numbers = [int(n) for n in line.split()]
        steps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
        assert len(steps) == 1 and steps.pop() in (1, 2, 3, 5, 10)


def test_toy_english_words_keep_their_roles():
    subjects = set(data.TOY_WORDS["animal"] + data.TOY_WORDS["person"])
    every_word = {w for words in data.TOY_WORDS.values() for w in words} | {"the", "a", "by", "."}
    for line in _lines("toy-english"):
        words = line.split()
        assert set(words) <= every_word
        assert words[-1] == "."
        verbs = set(data.TOY_WORDS["act"] + data.TOY_WORDS["act_on"])
        verb_at = next(i for i, w in enumerate(words) if w in verbs)
        assert words[verb_at - 1] in subjects  # the subject is never a thing


def test_list_and_unknown_corpora():
    names = [info.name for info in data.list_corpora()]
    assert set(data.BUILTIN) | {"shakespeare"} == set(names)
    with pytest.raises(CorpusError, match="unknown corpus 'nope'; choose one of"):
        data.load_corpus("nope")


# --------------------------------------------------------------------------------------------
# User text
# --------------------------------------------------------------------------------------------


def test_user_text_from_bytes_and_path(tmp_path):
    assert data.read_user_text(b"\xef\xbb\xbfhi\r\nthere\r\n") == "hi\nthere\n"
    path = tmp_path / "t.txt"
    path.write_text("héllo wörld 🙂", encoding="utf-8")
    assert data.read_user_text(path) == "héllo wörld 🙂"


def test_non_utf8_upload_gets_a_clear_message():
    with pytest.raises(CorpusError, match=r"not UTF-8 text \(byte 0xE9 at offset 3 .*Save it as UTF-8"):
        data.read_user_text("café".encode("latin-1") + b" au lait")


def test_size_cap_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 1001)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("read a file above the cap"))
    with pytest.raises(CorpusError, match="1,001 bytes, above the limit of 1,000"):
        data.read_user_text(path, max_bytes=1000)
    with pytest.raises(CorpusError, match="above the limit"):
        data.read_user_text(b"x" * 11, max_bytes=10)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "empty"), (b" \n\t ", "empty"), (b"ab\x00cd", "binary"), (b"\xff\xfe", "not UTF-8")],
)
def test_bad_uploads(payload, message):
    with pytest.raises(CorpusError, match=message):
        data.read_user_text(payload)


def test_missing_path_and_bad_cap(tmp_path):
    with pytest.raises(CorpusError, match="is not a file"):
        data.read_user_text(tmp_path / "nothing.txt")
    with pytest.raises(CorpusError, match="max_bytes"):
        data.read_user_text(b"hi", max_bytes=0)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\ufeff"), min_size=1))
def test_any_utf8_text_survives_upload(text):
    if not text.strip():
        return
    assert data.read_user_text(text.encode("utf-8")) == text


# --------------------------------------------------------------------------------------------
# Downloads, against a server on 127.0.0.1 (never a real URL)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def serve():
    """serve(body) → URL of a local HTTP server answering every GET with ``body``."""
    servers = []

    def start(body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server wants)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/input.txt"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_download(monkeypatch):
    body = b"a small corpus for the download test\n" * 20
    info = Download("http://127.0.0.1:9/none", hashlib.sha256(body).hexdigest(), len(body), "test corpus")
    monkeypatch.setitem(data.DOWNLOADS, "testcorpus", info)
    return body


def test_download_verifies_and_caches(serve, small_download):
    url = serve(small_download)
    path = data.download_corpus("testcorpus", url=url)
    assert path == data.cached_corpus_path("testcorpus") and path.read_bytes() == small_download
    assert data.load_corpus("testcorpus") == small_download.decode()  # from the cache: no network


def test_checksum_mismatch_is_rejected_and_not_cached(serve, small_download):
    url = serve(small_download.replace(b"small", b"SMALL"))
    with pytest.raises(CorpusError, match="sha256 is .* expected .* Nothing was cached"):
        data.download_corpus("testcorpus", url=url)
    assert not data.cached_corpus_path("testcorpus").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_fails_fast_with_instructions(small_download):
    started = time.perf_counter()
    with pytest.raises(CorpusError, match=r"could not download testcorpus .*python -m toygpt data add testcorpus PATH"):
        data.download_corpus("testcorpus", url=f"http://127.0.0.1:{_closed_port()}/input.txt", timeout=2)
    assert time.perf_counter() - started < 5


def test_shakespeare_from_a_local_copy(shakespeare_path, tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not shakespeare")
    with pytest.raises(CorpusError, match="not the expected shakespeare file"):
        data.add_corpus_file("shakespeare", wrong)
    assert not data.cached_corpus_path("shakespeare").exists()
    data.add_corpus_file("shakespeare", shakespeare_path)
    text = data.load_corpus("shakespeare")
    assert text.startswith("First Citizen:") and len(set(text)) == 65


def test_shakespeare_served_locally(serve, shakespeare_path):
    url = serve(shakespeare_path.read_bytes())
    assert data.ensure_corpus("shakespeare", url=url).read_bytes() == shakespeare_path.read_bytes()


# --------------------------------------------------------------------------------------------
# Token data: split, batches, cache
# --------------------------------------------------------------------------------------------


def test_split_is_last_ten_percent():
    token_data = TokenData(torch.arange(1000) % 7, vocab_size=7)
    assert len(token_data.train) == 900 and len(token_data.val) == 100
    assert torch.equal(token_data.val, (torch.arange(900, 1000) % 7))


def test_batches_are_shifted_windows_and_deterministic():
    token_data = TokenData(torch.arange(500), vocab_size=500)
    x, y = token_data.get_batch("train", 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert int(y.max()) < 450  # never crosses into the validation tokens
    again, _ = token_data.get_batch("train", 8, 16, torch.Generator().manual_seed(0))
    other, _ = token_data.get_batch("train", 8, 16, torch.Generator().manual_seed(1))
    assert torch.equal(x, again) and not torch.equal(x, other)
    vx, _ = token_data.get_batch("val", 4, 16, torch.Generator().manual_seed(0))
    assert int(vx.min()) >= 450


def test_too_short_corpus_names_the_largest_block_size():
    token_data = TokenData(torch.arange(300) % 5, vocab_size=5)  # val split: 30 tokens
    with pytest.raises(CorpusError, match=r"validation split has only 30 tokens.*block_size ≤ 29"):
        token_data.get_batch("train", 2, 64, torch.Generator().manual_seed(0))
    token_data.get_batch("val", 2, 29, torch.Generator().manual_seed(0))  # the suggestion works


def test_prepare_caches_token_ids(monkeypatch):
    text = data.load_corpus("addition")
    tokenizer = CharTokenizer.from_text(text)
    first = data.prepare(text, tokenizer)
    monkeypatch.setattr(tokenizer, "encode", lambda text: pytest.fail("encoded again despite the cache"))
    second = data.prepare(text, tokenizer)
    assert torch.equal(first.ids, second.ids) and first.vocab_size == tokenizer.vocab_size == 13


def test_corrupt_cache_is_ignored():
    text = "hello world, " * 50
    tokenizer = CharTokenizer.from_text(text)
    expected = data.prepare(text, tokenizer).ids
    for path in (data.data_dir() / "tokens").glob("*.npy"):
        path.write_bytes(b"garbage")
    assert torch.equal(data.prepare(text, tokenizer).ids, expected)
    assert data.clear_token_cache() == 1
