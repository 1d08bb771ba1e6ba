"""toygpt.lessons.explore: prompt cropping, timed generation (cache on/off gives the same tokens), the
lean attention grid, attention drawn over text, snapshot views and losses per step."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toygpt.inspection import attention_maps
from toygpt.lessons.explore import (
    GRID_GAP,
    attention_grid_lean_figure,
    attention_mosaic,
    attention_text_html,
    compare_kv_cache,
    continuation_html,
    loss_at_step,
    prompt_tokens,
    snapshot_view,
    time_generation,
    vocab_labels,
)
from toygpt.model import GPT, GPTConfig
from toygpt.sample import generate, generation_of
from toygpt.sampling import SamplingConfig
from toygpt.tokenizers import ByteTokenizer, CharTokenizer, UnknownCharactersError


@pytest.fixture
def byte_model() -> GPT:
    return GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=16), seed=0).eval()


def visible_text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


# ---- the prompt -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40), st.integers(1, 50))
def test_prompt_tokens_keep_the_end_of_any_text_piece_by_piece(text, max_tokens):
    tokenizer = ByteTokenizer()
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return  # lone surrogates have no UTF-8: tested in the tokenizer's own tests
    tokens = prompt_tokens(tokenizer, text, max_tokens)
    all_ids = tokenizer.encode(text)
    assert tokens.ids == all_ids[-max_tokens:] if all_ids else tokens.ids == []
    assert tokens.dropped == max(0, len(all_ids) - max_tokens)
    assert text.endswith(tokens.text)  # the pieces are the kept stretch of the text itself
    assert len(tokens.pieces) == len(tokens.labels) == len(tokens.ids)


def test_prompt_tokens_refuse_unknown_characters_and_bad_limits():
    tokenizer = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharactersError, match="'z'"):
        prompt_tokens(tokenizer, "abz", 8)
    with pytest.raises(ValueError, match="max_tokens"):
        prompt_tokens(tokenizer, "ab", 0)
    assert prompt_tokens(tokenizer, "", 8).ids == []


def test_vocab_labels_cover_every_id():
    labels = vocab_labels(CharTokenizer.from_text("a \n"))
    assert labels == ["↵", "␣", "a"]


# ---- timing and the KV cache ----------------------------------------------------------------


def test_timed_steps_time_only_the_generator_and_keep_every_step(byte_model):
    steps = list(generate(byte_model, [1, 2, 3], 7, seed=0))
    assert [s.index for s in steps] == list(range(7))
    assert all(s.seconds > 0 for s in steps)
    timing = generation_of(steps, use_cache=True)
    assert timing.tokens == [s.token_id for s in steps]
    assert timing.stats.seconds_per_token == pytest.approx(np.mean([s.seconds for s in steps[1:]]))
    with pytest.raises(ValueError, match="at least 1 token"):
        generation_of([], use_cache=True)


def test_cache_on_and_off_give_the_same_tokens_past_the_block_size(byte_model):
    without, with_cache = compare_kv_cache(byte_model, [5, 6, 7], 24, seed=3, sampling=SamplingConfig(temperature=0.9, top_k=20))
    assert len(without.tokens) == 24 > byte_model.config.block_size
    assert without.tokens == with_cache.tokens
    assert (without.use_cache, with_cache.use_cache) == (False, True)
    direct = [s.token_id for s in generate(byte_model, [5, 6, 7], 24, sampling=SamplingConfig(temperature=0.9, top_k=20), seed=3)]
    assert with_cache.tokens == direct


def test_time_generation_passes_sampling_settings_through(byte_model):
    greedy = time_generation(byte_model, [1], 5, use_cache=True, seed=0, sampling=SamplingConfig(temperature=0))
    other_seed = time_generation(byte_model, [1], 5, use_cache=True, seed=99, sampling=SamplingConfig(temperature=0))
    assert greedy.tokens == other_seed.tokens  # greedy ignores the seed
    with pytest.raises(ValueError, match="top_p"):
        time_generation(byte_model, [1], 5, use_cache=True, seed=0, sampling=SamplingConfig(top_p=0.0))


# ---- attention ------------------------------------------------------------------------------


def test_mosaic_places_each_head_in_its_tile_with_empty_gaps(byte_model):
    maps = attention_maps(byte_model, [3, 1, 4, 1, 5])  # (2, 2, 5, 5)
    mosaic = attention_mosaic(maps)
    step = 5 + GRID_GAP
    assert mosaic.shape == (2 * step - GRID_GAP, 2 * step - GRID_GAP)
    for layer in range(2):
        for head in range(2):
            tile = mosaic[layer * step : layer * step + 5, head * step : head * step + 5]
            np.testing.assert_array_equal(np.tril(tile), maps[layer, head].numpy())  # the past, exactly
            assert np.isnan(tile[np.triu_indices(5, k=1)]).all()  # the future is left blank
    assert np.isnan(mosaic[5:step, :]).all() and np.isnan(mosaic[:, 5:step]).all()


def test_lean_grid_is_one_trace_and_crops_long_inputs(byte_model):
    maps = attention_maps(byte_model, list(range(16)))
    fig = attention_grid_lean_figure(maps, [str(i) for i in range(16)], max_positions=6)
    assert len(fig.data) == 1
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2 * 6 + GRID_GAP, 2 * 6 + GRID_GAP)
    np.testing.assert_allclose(np.tril(z[:6, :6]), maps[0, 0, 10:, 10:].numpy())
    assert "last 6 of 16 positions" in fig.layout.title.text
    assert json.loads(fig.to_json())["data"][0]["z"]["dtype"] == "f4"  # sent packed, not as text


def test_attention_text_shades_what_the_query_sees_and_escapes_text():
    body = attention_text_html(["<a>", "b", "\n", "c"], torch.tensor([0.2, 0.8, 0.0, 0.0]), query=1)
    assert visible_text(body) == "<a>b↵\nc"
    assert "<a>" not in body
    assert body.count("hidden from it") == 2 and body.count("outline") == 1
    assert "rgba(99, 110, 250, 0.850)" in body  # the most attended token gets full colour
    with pytest.raises(ValueError, match="one weight per piece"):
        attention_text_html(["a"], [0.5, 0.5], query=0)
    with pytest.raises(ValueError):
        attention_text_html(["a", "b"], [1.0, 0.0], query=2)


def test_continuation_html_escapes_and_marks_the_newest_token():
    body = continuation_html("<s>", "&x", newest="y")
    assert visible_text(body) == "<s>&xy"
    assert "<mark" in body and "<s>" not in body


# ---- watch it learn -------------------------------------------------------------------------


def test_snapshot_view_is_repeatable_and_differs_between_weights():
    tokenizer = CharTokenizer.from_text("abcdefgh \n")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=8)
    early, late = GPT(config, seed=0).eval(), GPT(config, seed=1).eval()
    view = snapshot_view(early, tokenizer, "abc abc abc", 12, seed=5, sampling=SamplingConfig(temperature=1.0))
    again = snapshot_view(early, tokenizer, "abc abc abc", 12, seed=5, sampling=SamplingConfig(temperature=1.0))
    assert view.continuation == again.continuation and len(view.continuation) == 12
    assert view.ids == tokenizer.encode("abc abc abc")[-8:]  # the maps are of the last block
    assert view.maps.shape == (2, 2, 8, 8)
    assert view.first_step.index == 0 and len(view.first_step.candidates) == 10
    other = snapshot_view(late, tokenizer, "abc abc abc", 12, seed=5, sampling=SamplingConfig(temperature=1.0))
    assert not torch.equal(other.maps, view.maps)
    empty = snapshot_view(early, tokenizer, "", 3, seed=0)
    assert empty.ids == [tokenizer.encode("\n")[0]]  # an empty prompt starts after a newline
    with pytest.raises(ValueError, match="at least 1 token"):
        snapshot_view(early, tokenizer, "abc", 0, seed=0)


def test_loss_at_step_takes_the_last_measurement_not_after_the_step():
    rows = [
        {"type": "step", "step": 10, "loss": 9.0},
        {"type": "eval", "step": 0, "val_loss": 4.2},
        {"type": "eval", "step": 50, "val_loss": 2.9},
        {"type": "eval", "step": 100, "val_loss": None},
        {"type": "eval", "step": 200, "val_loss": 2.1},
    ]
    assert loss_at_step(rows, 0) == 4.2
    assert loss_at_step(rows, 49) == 4.2
    assert loss_at_step(rows, 150) == 2.9  # step 100's loss was not finite (stored as null)
    assert loss_at_step(rows, 10**6) == 2.1
    assert loss_at_step(rows[:1], 10) is None
