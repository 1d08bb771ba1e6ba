"""Byte-level BPE: known answers, incremental training == textbook training, and the three
encoders (tiktoken-backed, plain-Python heap, show-your-work steps) giving identical ids."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toygpt.tokenizers import (
    BPETokenizer,
    MergeRecord,
    TokenizerError,
    learn_merges,
    learn_merges_textbook,
    pre_tokenize,
    tokenizer_from_dict,
)
from toygpt.tokenizers.bpe import bpe_merge, bpe_merge_steps, get_stats, merge

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
    "naïve café 🙂🙂 東京 東京 it's 1234567 we'll\r\n\t\t"
) * 4


@functools.cache
def _train_on(path: Path) -> tuple[str, BPETokenizer]:
    text = path.read_text(encoding="utf-8")
    return text, BPETokenizer.train(text, 1024)


@pytest.fixture
def shakespeare_bpe(shakespeare_path) -> tuple[str, BPETokenizer]:
    return _train_on(shakespeare_path)  # trained once per test session


# --- known answers ----------------------------------------------------------------------------


def test_known_answer_aaabdaaabac():
    tok = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.encode_python("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert [m.pair for m in tok.merges] == [(97, 97), (97, 98), (256, 257)]
    assert [m.count for m in tok.merges] == [4, 2, 2]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_textbook_helpers():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([7, 7, 7, 7], (7, 7), 8) == [8, 8]


def test_pre_tokenize_patterns():
    assert pre_tokenize("Hello world, it's 2024!") == ["Hello", " world", ",", " it", "'s", " 2024", "!"]
    assert pre_tokenize("1234567", "gpt4") == ["123", "456", "7"]
    assert pre_tokenize("a b\n", None) == ["a b\n"]
    with pytest.raises(TokenizerError, match="split_pattern"):
        pre_tokenize("x", "gpt3")


def test_split_patterns_are_tiktokens():
    import inspect

    from tiktoken_ext import openai_public

    from toygpt.tokenizers.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN

    assert GPT2_SPLIT_PATTERN == openai_public.r50k_pat_str
    assert f'r"""{GPT4_SPLIT_PATTERN}"""' in inspect.getsource(openai_public.cl100k_base)


def test_split_pattern_keeps_merges_inside_words():
    tok = BPETokenizer.train("dog. dog! dog? " * 30, 300)
    vocab = [tok.token_bytes(m.new_id) for m in tok.merges]
    assert b" dog" in vocab and not any(b"g." in v or b"g!" in v for v in vocab)
    joined = BPETokenizer.train("dog. dog! dog? " * 30, 300, split_pattern=None)
    assert any(b"g." in joined.token_bytes(m.new_id) for m in joined.merges)


# --- incremental training == textbook training ------------------------------------------------


@pytest.mark.parametrize("split_pattern", ["gpt2", "gpt4", None])
def test_incremental_training_matches_textbook(split_pattern):
    fast = learn_merges(SAMPLE, 420, split_pattern)
    slow = learn_merges_textbook(SAMPLE, 420, split_pattern)
    assert fast == slow and len(fast) >= 100


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("aab bc\nd🙂é"), max_size=120),
       n_merges=st.integers(0, 25), split_pattern=st.sampled_from(["gpt2", None]))
def test_incremental_training_matches_textbook_on_generated_text(text, n_merges, split_pattern):
    vocab_size = 256 + n_merges
    assert learn_merges(text, vocab_size, split_pattern) == learn_merges_textbook(text, vocab_size, split_pattern)


def test_incremental_training_matches_textbook_on_shakespeare(shakespeare_bpe):
    text, tok = shakespeare_bpe
    # the textbook trainer takes ~0.5 s per merge on the whole book: compare a slice
    part = text[:60_000]
    assert learn_merges(part, 356) == learn_merges_textbook(part, 356)


def test_ties_break_towards_the_smaller_pair():
    # every pair occurs once: the textbook's first pick must be the smallest, (97, 98)
    assert learn_merges("abcd", 257, None)[0].pair == (97, 98)
    assert learn_merges("dcba", 257, None)[0].pair == (98, 97)


def test_training_stops_when_nothing_is_left_to_merge():
    tok = BPETokenizer.train("ab ab", 1000)  # chunks "ab" and " ab": two merges and done
    assert [m.pair for m in tok.merges] == [(97, 98), (32, 256)]
    assert tok.vocab_size == 258 and tok.name == "bpe-258"
    assert tok.encode("ab ab") == [256, 257]


def test_on_merge_reports_every_merge_and_can_stop_training():
    seen: list[MergeRecord] = []
    tok = BPETokenizer.train(SAMPLE, 300, on_merge=seen.append)
    assert seen == tok.merges and len(seen) == 44
    stopped = BPETokenizer.train(SAMPLE, 300, on_merge=lambda m: m.new_id < 260)
    assert len(stopped.merges) == 5


@pytest.mark.parametrize(
    ("vocab_size", "specials", "message"),
    [(255, (), "between 256"), (256, ["<|a|>"], "between 257"), (2**21, (), "1048576"),
     ("512", (), "integer"), (300, ["<|a|>", "<|a|>"], "distinct")],
)
def test_impossible_vocab_sizes_are_refused(vocab_size, specials, message):
    with pytest.raises(TokenizerError, match=message):
        BPETokenizer.train("hello", vocab_size, special_tokens=specials)


def test_special_tokens_are_not_learned_from_training_text():
    tok = BPETokenizer.train("hi<|endoftext|>" * 50, 300, special_tokens=["<|endoftext|>"])
    assert tok.special_tokens == {"<|endoftext|>": len(tok.vocab)}
    assert not any(b"<|" in tok.token_bytes(m.new_id) for m in tok.merges)


# --- the encoders agree -----------------------------------------------------------------------


def _steps_ids(tok: BPETokenizer, text: str) -> list[int]:
    return [i for chunk in tok.encode_steps(text) for i in chunk.ids]


def test_encoders_agree_on_shakespeare(shakespeare_bpe):
    text, tok = shakespeare_bpe
    ids = tok.encode(text)
    assert tok.encode_python(text) == ids
    assert tok.decode(ids) == text
    assert len(ids) < 0.45 * len(text)  # 1024 tokens compress English well below 1 token/char


@pytest.fixture(scope="module")
def tokenizers_for_hypothesis() -> list[BPETokenizer]:
    return [BPETokenizer.train(SAMPLE, 400), BPETokenizer.train(SAMPLE, 400, "gpt4"),
            BPETokenizer.train(SAMPLE[:1500], 330, None)]


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60) | st.text(alphabet=st.sampled_from(SAMPLE), max_size=200))
def test_encoders_agree_on_generated_text(tokenizers_for_hypothesis, text):
    for tok in tokenizers_for_hypothesis:
        ids = tok.encode(text)
        assert tok.encode_python(text) == ids
        assert _steps_ids(tok, text) == ids


def test_heap_encoder_handles_a_100k_character_run():
    tok = BPETokenizer.train("a" * 5000, 270, split_pattern=None)
    text = "a" * 100_000
    ids = tok.encode(text)
    assert tok.encode_python(text) == ids and tok.decode(ids) == text
    assert len(ids) < 100_000 / 100


def test_whole_chunk_that_is_a_token_is_used_directly():
    # tokens: 'bc' (rank 256) first, then 'ab', 'cd' and 'abcd' = ab + cd. Merging "abcd" by rank
    # gets stuck at a|bc|d (no 'abc' or 'bcd' token), but tiktoken looks the whole chunk up first.
    merges = [MergeRecord((98, 99), 256, 1), MergeRecord((97, 98), 257, 1),
              MergeRecord((99, 100), 258, 1), MergeRecord((257, 258), 259, 1)]
    tok = BPETokenizer(merges, split_pattern=None)
    assert bpe_merge_steps(b"abcd", tok.ranks)[-1] == [b"a", b"bc", b"d"]
    assert tok.encode("abcd") == tok.encode_python("abcd") == [259]
    steps = tok.encode_steps("abcd")[0]
    assert steps.whole_chunk_lookup and steps.ids == [259] and steps.states[-2] == [97, 256, 100]
    assert tok.encode("abcdx") == tok.encode_python("abcdx") == _steps_ids(tok, "abcdx") == [97, 256, 100, 120]


def test_bpe_merge_prefers_the_lowest_rank_then_the_leftmost():
    ranks = {bytes([i]): i for i in range(256)} | {b"aa": 256}
    assert bpe_merge(b"aaa", ranks) == [256, 97]
    assert bpe_merge_steps(b"aaa", ranks)[-1] == [b"aa", b"a"]


def test_encode_steps_shows_each_merge():
    tok = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    (chunk,) = tok.encode_steps("aaabdaaabac")
    assert chunk.states[0] == list(b"aaabdaaabac")
    assert chunk.states[-1] == [258, 100, 258, 97, 99]
    assert all(len(b) == len(a) - 1 for a, b in zip(chunk.states, chunk.states[1:], strict=False))
    with pytest.raises(TokenizerError, match="at most"):
        tok.encode_steps("x" * 5000)


def test_encode_after_merges_replays_training():
    tok = BPETokenizer.train("aaabdaaabac", 259, split_pattern=None)
    assert tok.encode_after_merges("aaabdaaabac", 0) == list(b"aaabdaaabac")
    assert tok.encode_after_merges("aaabdaaabac", 1) == [256, 97, 98, 100, 256, 97, 98, 97, 99]
    assert tok.encode_after_merges("aaabdaaabac", 2) == [256, 257, 100, 256, 257, 97, 99]
    assert tok.encode_after_merges("aaabdaaabac", 3) == tok.encode("aaabdaaabac")
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(TokenizerError, match="n_merges"):
            tok.encode_after_merges("x", bad)


def test_lengths_shrink_as_merges_are_added(shakespeare_bpe):
    text, tok = shakespeare_bpe
    part = text[:20_000]
    lengths = [len(tok.encode_after_merges(part, k)) for k in (0, 100, 400, len(tok.merges))]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] == len(part.encode())


# --- saving and exporting ---------------------------------------------------------------------


def test_to_dict_round_trip_keeps_merge_history():
    tok = BPETokenizer.train(SAMPLE, 330, "gpt4", special_tokens=["<|endoftext|>", "<|pad|>"])
    again = tokenizer_from_dict(tok.to_dict())
    assert again.merges == tok.merges and again.split_pattern == "gpt4"
    assert again.special_tokens == tok.special_tokens
    assert again.encode(SAMPLE + "<|pad|>", allow_special=True) == tok.encode(SAMPLE + "<|pad|>", allow_special=True)


def test_export_vocab_is_human_readable():
    tok = BPETokenizer.train("aaabdaaabac", 260, split_pattern=None, special_tokens=["<|endoftext|>"])
    lines = tok.export_vocab().splitlines()
    assert lines[0].startswith("# bpe-260: 260 tokens = 256 bytes + 3 merges + 1 special")
    assert len(lines) == 2 + 256 + 3 + 1
    assert lines[2 + 32].split() == ["32", "␣"]
    assert lines[2 + 256].split() == ["256", "aa", "←", "a", "+", "a", "(seen", "4", "times)"]
    assert lines[-1].split() == ["259", "<|endoftext|>", "(special)"]


def test_hand_built_merges_are_checked():
    with pytest.raises(TokenizerError, match="out of order"):
        BPETokenizer([MergeRecord((97, 98), 300, 1)])
    with pytest.raises(TokenizerError, match="already a token"):
        BPETokenizer([MergeRecord((97, 98), 256, 1), MergeRecord((97, 98), 257, 1)])
    # 'ab'+'c' and 'a'+'bc' both spell 'abc': tiktoken could not hold both
    abc_twice = [MergeRecord((97, 98), 256, 1), MergeRecord((98, 99), 257, 1),
                 MergeRecord((256, 99), 258, 1), MergeRecord((97, 257), 259, 1)]
    with pytest.raises(TokenizerError, match="already a token"):
        BPETokenizer(abc_twice)
