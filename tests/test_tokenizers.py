"""Every tokenizer: round trips on nasty text, labels, spans, JSON, catalog, compare, CLI."""

from __future__ import annotations

import argparse
import doctest
import importlib
import io
import json

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from toygpt.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    TokenizerError,
    UnknownCharactersError,
    compare,
    get_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
)
from toygpt.tokenizers.base import label_for_bytes, spans_from_token_bytes, utf8_pieces
from toygpt.tokenizers.bpe import GPT2_SPLIT_PATTERN

HARD_CASES = [
    "",
    "hello world",
    "👩🏽‍🚀 and 👨‍👩‍👧‍👦 and 👍🏿",  # ZWJ sequences and skin-tone modifiers
    "e\u0301 n\u0303 a\u0308\u0301",  # combining accents (decomposed)
    "café naïve Ångström",  # precomposed accents
    "漢字かなカナ한국어中文",  # CJK
    "مرحبا بالعالم שלום עולם abc 123",  # right-to-left mixed with left-to-right
    "\u202eevil\u202c \u200b\u200d\ufeff",  # bidi override, zero-width characters, BOM
    "a\x00b\x00",  # NUL
    "line one\r\nline two\r\n",  # CRLF
    "\tcol1\tcol2\t\t",  # tabs
    "   \n\n\n  ",  # whitespace only
    "<|endoftext|> is just text here",
    "it's they're I'VE we'd 1234567 3.14",
    "a" * 100_000,  # a 100k-character run of one letter: one giant pre-token
]
LONE_SURROGATE = "abc\ud83ddef"
CORPUS = (
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "naïve café 🙂🙃🙂 漢字漢字 שלום שלום\r\n\t" * 20
)


def _local_tiktoken(bpe: BPETokenizer) -> TiktokenTokenizer:
    """A tiktoken.Encoding built here from our merges: stands in for the downloadable ones."""
    encoding = tiktoken.Encoding(
        "local-test", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=dict(bpe.ranks),
        special_tokens={"<|endoftext|>": len(bpe.vocab)},
    )
    return TiktokenTokenizer(encoding)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def bpe_unsplit() -> BPETokenizer:
    # without a split pattern merges cross character boundaries, so some tokens end mid-emoji
    return BPETokenizer.train(CORPUS[:2000], 320, split_pattern=None)


@pytest.fixture(scope="module")
def byte_level(bpe, bpe_unsplit) -> list[Tokenizer]:
    """Every tokenizer that can encode any text (the char one is tested on its own vocabulary)."""
    return [ByteTokenizer(), ByteTokenizer(["<|endoftext|>"]), bpe, bpe_unsplit, _local_tiktoken(bpe)]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HARD_CASES, ids=lambda t: repr(t[:20]))
def test_round_trip_hard_cases(byte_level, text):
    for tok in byte_level:
        assert tok.decode(tok.encode(text)) == text, tok.name
    char = CharTokenizer.from_text("x" + text)
    assert char.decode(char.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=80))
def test_round_trip_any_unicode(byte_level, text):
    for tok in byte_level:
        assert tok.decode(tok.encode(text)) == text, tok.name
    char = CharTokenizer.from_text("x" + text)
    assert char.decode(char.encode(text)) == text


def test_lone_surrogate_is_a_clear_error(byte_level):
    for tok in [*byte_level, CharTokenizer.from_text("abcdef")]:
        with pytest.raises(TokenizerError, match="lone surrogate .* at character 3"):
            tok.encode(LONE_SURROGATE)
    with pytest.raises(TokenizerError, match="surrogate"):
        CharTokenizer.from_text(LONE_SURROGATE)
    with pytest.raises(TokenizerError, match="surrogate"):
        BPETokenizer.train(LONE_SURROGATE, 300)


def test_encode_rejects_non_text(byte_level):
    for tok in byte_level:
        with pytest.raises(TokenizerError, match="expected text"):
            tok.encode(b"bytes")


# --- decode -----------------------------------------------------------------------------------


def test_decode_partial_utf8_gives_replacement_character_not_an_error():
    tok = ByteTokenizer()
    ids = tok.encode("🙂")
    assert tok.decode(ids[:2]) == "\ufffd"
    assert tok.decode(ids[:2] + tok.encode("ok")) == "\ufffdok"


def test_decode_rejects_out_of_range_ids(byte_level):
    for tok in byte_level:
        with pytest.raises(TokenizerError, match="outside this tokenizer's vocabulary"):
            tok.decode([tok.vocab_size])
        with pytest.raises(TokenizerError, match="integers"):
            tok.decode([1.5])
        with pytest.raises(TokenizerError, match="outside"):
            tok.decode([-1])


def test_decode_accepts_numpy_and_torch_integers():
    import numpy as np
    import torch

    tok = ByteTokenizer()
    assert tok.decode(np.array([104, 105])) == "hi"
    assert tok.decode(torch.tensor([104, 105])) == "hi"


# --- special tokens ---------------------------------------------------------------------------


def test_special_token_text_is_plain_text_unless_allowed(bpe):
    eot = bpe.special_tokens["<|endoftext|>"]
    for tok in [bpe, _local_tiktoken(bpe), ByteTokenizer(["<|endoftext|>"])]:
        eot = tok.special_tokens["<|endoftext|>"]
        plain = tok.encode("a<|endoftext|>b")
        assert eot not in plain and tok.decode(plain) == "a<|endoftext|>b"
        allowed = tok.encode("a<|endoftext|>b", allow_special=True)
        assert eot in allowed and tok.decode(allowed) == "a<|endoftext|>b"
        assert tok.token_label(eot) == "<|endoftext|>"


def test_byte_tokenizer_special_ids_follow_the_bytes():
    tok = ByteTokenizer(["<|a|>", "<|b|>"])
    assert tok.vocab_size == 258
    assert tok.encode("<|b|>x<|a|>", allow_special=True) == [257, 120, 256]
    with pytest.raises(TokenizerError, match="distinct"):
        ByteTokenizer(["<|a|>", "<|a|>"])
    with pytest.raises(TokenizerError, match="list of strings"):
        ByteTokenizer("<|a|>")


# --- char tokenizer ---------------------------------------------------------------------------


def test_char_vocabulary_is_sorted_characters_of_the_corpus(shakespeare_path):
    text = shakespeare_path.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    assert tok.chars == sorted(set(text)) and tok.encode("\n ") == [0, 1]


def test_unknown_characters_are_listed_with_the_unk_option():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharactersError) as info:
        tok.encode("abc é 🙂 é xyzwvut")
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, TokenizerError)
    assert err.characters[:3] == ["é", "🙂", "x"]
    message = str(err)
    assert "'é' (U+00E9)" in message and "unk=True" in message and "and 1 more" in message


def test_unk_maps_unknown_characters_to_a_visible_token():
    tok = CharTokenizer.from_text("abc", unk=True)
    ids = tok.encode("aéc")
    assert ids == [0, 3, 2] and tok.vocab_size == 4
    assert tok.decode(ids) == "a<unk>c"
    assert tok.token_label(3) == "<unk>"
    assert tok.encode_with_spans("aéc")[1] == [(0, 1), (1, 2), (2, 3)]
    assert tok.encode("<unk>", allow_special=True) == [3, 3, 3, 3, 3]  # typed text is not the token


def test_char_tokenizer_needs_a_corpus():
    with pytest.raises(TokenizerError, match="empty text"):
        CharTokenizer.from_text("")


# --- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (b" the", "␣the"),
        (b"\n\n", "↵↵"),
        (b"\r\n\t", "␍↵⇥"),
        (b"\x00", "<0x00>"),
        ("—".encode()[:2], "<0xE2><0x80>"),
        ("—".encode()[1:], "<0x80><0x94>"),
        ("\u200d".encode(), "<U+200D>"),
        ("\u0301".encode(), "◌\u0301"),
        ("é🙂".encode(), "é🙂"),
        (b"\xff", "<0xFF>"),
    ],
)
def test_labels_show_what_is_invisible(data, label):
    assert label_for_bytes(data) == label


def test_utf8_pieces_keeps_whole_characters_and_stray_bytes():
    assert utf8_pieces("a€".encode() + b"\x80") == ["a", "€", 0x80]


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=12))
def test_labels_never_fail_and_are_printable(data):
    label = label_for_bytes(data)
    assert label.isprintable() and not any(ch in label for ch in " \n\r\t")
    assert bool(label) == bool(data)


# --- spans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HARD_CASES[:-1], ids=lambda t: repr(t[:20]))
def test_spans_tile_the_text(byte_level, text):
    for tok in byte_level:
        ids, spans = tok.encode_with_spans(text)
        assert len(ids) == len(spans)
        assert "".join(text[s:e] for s, e in spans) == text, tok.name
        assert all(e1 == s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))


def test_a_token_ending_inside_a_character_keeps_it_and_the_rest_is_empty():
    text = "🙂!"
    pieces = ["🙂".encode()[:2], "🙂".encode()[2:], b"!"]
    assert spans_from_token_bytes(text, pieces) == [(0, 1), (1, 1), (1, 2)]
    tok = ByteTokenizer()
    assert tok.encode_with_spans("é")[1] == [(0, 1), (1, 1)]


def test_spans_of_a_bpe_token_that_splits_an_emoji(bpe_unsplit):
    text = "x🙂🙃🙂y"
    ids, spans = bpe_unsplit.encode_with_spans(text)
    pieces = [bpe_unsplit.token_bytes(i) for i in ids]
    assert any(not p.decode("utf-8", "ignore") or len(p.decode("utf-8", "ignore").encode()) != len(p)
               for p in pieces), "expected a token that cuts a character (trained without split)"
    for piece, (s, e) in zip(pieces, spans, strict=True):
        if s < e:  # the token holds the first byte of each character in its span
            assert text[s:e].encode()[0:1] in piece


def test_spans_refuse_bytes_that_do_not_match_the_text():
    with pytest.raises(TokenizerError, match="byte for byte"):
        spans_from_token_bytes("abc", [b"ab"])


# --- JSON ---------------------------------------------------------------------------------------


def test_to_dict_round_trip_reproduces_ids(byte_level, tmp_path):
    text = "Whether 'tis nobler 🙂 naïve\r\n<|endoftext|>"
    tokenizers = [*byte_level[:4], CharTokenizer.from_text(text), CharTokenizer.from_text("ab", unk=True)]
    for tok in tokenizers:
        data = json.loads(json.dumps(tok.to_dict()))
        again = tokenizer_from_dict(data)
        assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
        assert again.encode(text, allow_special=True) == tok.encode(text, allow_special=True)
        save_tokenizer(tok, tmp_path / "tokenizer.json")
        assert load_tokenizer(tmp_path / "tokenizer.json").encode(text) == tok.encode(text)


@pytest.mark.parametrize(
    "garbage",
    [
        None, [], "bpe", 3, {}, {"type": "pickle"}, {"type": ["bpe"]},
        {"type": "char"}, {"type": "char", "chars": ["ab"]}, {"type": "char", "chars": ["a", "a"]},
        {"type": "char", "chars": ["\ud800"]}, {"type": "char", "chars": [1]},
        {"type": "char", "chars": ["a"], "unk": "yes"},
        {"type": "byte", "special_tokens": ["x"]}, {"type": "byte", "special_tokens": {"x": 3}},
        {"type": "byte", "special_tokens": {"": 256}}, {"type": "byte", "special_tokens": 7},
        {"type": "bpe", "merges": []}, {"type": "bpe", "split_pattern": "evil(a+)+$", "merges": []},
        {"type": "bpe", "split_pattern": ["gpt2"], "merges": []},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[1, 2]]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[1, 999, 3]]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[1, 2, -1]]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[1, 2, 3], [1, 2, 3]]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[True, 2, 3]]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [[97, 97, 1]] + [[256 + k, 256 + k, 1] for k in range(40)]},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [], "special_tokens": {"<|x|>": 300}},
        {"type": "bpe", "split_pattern": "gpt2", "merges": [], "version": 2},
        {"type": "tiktoken", "encoding": "../../etc/passwd"},
    ],
)
def test_from_dict_refuses_garbage_with_a_tokenizer_error(garbage):
    with pytest.raises(TokenizerError):
        tokenizer_from_dict(garbage)


def test_load_tokenizer_refuses_broken_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    for name in ["bad.json", "deep.json", "binary.json", "missing.json"]:
        with pytest.raises(TokenizerError):
            load_tokenizer(tmp_path / name)


# --- catalog and compare ----------------------------------------------------------------------


def test_get_tokenizer_specs(bpe, tmp_path):
    assert isinstance(get_tokenizer("byte"), ByteTokenizer)
    assert get_tokenizer("char", corpus_text="hello").vocab_size == 4
    trained = get_tokenizer("bpe-300", corpus_text=CORPUS)
    assert isinstance(trained, BPETokenizer) and trained.vocab_size == 300
    save_tokenizer(bpe, tmp_path / "t.json")
    assert get_tokenizer(f"bpe:{tmp_path / 't.json'}").encode("to be") == bpe.encode("to be")
    for bad, message in [("char", "corpus_text"), ("bpe-12x", "number"), ("bpe-100", "vocab_size=100"),
                         ("wordpiece", "unknown tokenizer"), ("bpe:/no/such/file", "cannot read")]:
        with pytest.raises(TokenizerError, match=message):
            get_tokenizer(bad, corpus_text=None if bad == "char" else CORPUS)


def test_compare_table(bpe):
    text = "To be, or not to be 🙂"
    rows = compare(text, [ByteTokenizer(), bpe, CharTokenizer.from_text("abc")], block_size=8)
    by_name = {row["tokenizer"]: row for row in rows}
    assert by_name["byte"]["tokens"] == len(text.encode()) and by_name["byte"]["bytes_per_token"] == 1.0
    assert by_name[bpe.name]["tokens"] == len(bpe.encode(text)) < by_name["byte"]["tokens"]
    assert by_name[bpe.name]["chars_per_block"] == round(len(text) / len(bpe.encode(text)) * 8, 1)
    assert by_name["char"]["tokens"] is None and "unk=True" in by_name["char"]["error"]
    assert compare("", {"mine": ByteTokenizer()})[0]["tokens"] == 0
    with pytest.raises(TokenizerError, match="block_size"):
        compare(text, [ByteTokenizer()], block_size=0)


# --- CLI --------------------------------------------------------------------------------------


def _cli(*argv: str) -> argparse.Namespace:
    from toygpt.cli import tokenize

    parser = argparse.ArgumentParser()
    tokenize.register(parser.add_subparsers())
    return parser.parse_args(["tokenize", *argv])


def test_cli_prints_tokens_with_ids(tmp_path, capsys):
    from toygpt.cli.tokenize import run

    out = io.StringIO()
    assert run(_cli("--tokenizer", "byte", "hé"), out=out) == 0
    lines = out.getvalue().splitlines()
    assert "3 tokens" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [["104", "h"], ["195", "<0xC3>"], ["169", "<0xA9>"]]
    assert "\x1b[" not in out.getvalue()  # a StringIO is not a terminal: no colour

    coloured = io.StringIO()
    (tmp_path / "corpus.txt").write_text("hello", encoding="utf-8")
    assert run(_cli("-t", "char", "--corpus", str(tmp_path / "corpus.txt"), "--color", "always", "hole"),
               out=coloured) == 0
    assert "\x1b[48;5;" in coloured.getvalue()

    assert run(_cli("-t", "char", "--corpus", str(tmp_path / "corpus.txt"), "xyz"), out=io.StringIO()) == 1
    assert "unk=True" in capsys.readouterr().err
    # a missing corpus is refused while the options are read: one line and a non-zero exit
    with pytest.raises(SystemExit) as exit_info:
        _cli("-t", "char", "--corpus", str(tmp_path / "nope.txt"), "x")
    assert exit_info.value.code != 0 and "nope.txt: no such file" in capsys.readouterr().err


def test_cli_is_registered_with_the_dispatcher(capsys):
    from toygpt.__main__ import main

    assert main(["tokenize", "--tokenizer", "byte", "--color", "never", "ok"]) == 0
    assert "2 tokens" in capsys.readouterr().out


# --- the worked examples in the docstrings are true ----------------------------------------------


@pytest.mark.parametrize("module", ["base", "char", "byte", "bpe", "compare", "__init__"])
def test_docstring_examples(module):
    name = "toygpt.tokenizers" + ("" if module == "__init__" else f".{module}")
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
