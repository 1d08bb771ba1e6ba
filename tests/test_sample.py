"""Sampling: the stages of one step, generation with and without the KV cache, bad input."""

from __future__ import annotations

import functools
import itertools
import math
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from toygpt.model import GPT, POS_ENCODINGS, GPTConfig, KVCache
from toygpt.sample import (
    GenerationStats,
    crop_context,
    decode_step,
    encode_prompt,
    generate,
    generate_text,
    generation_of,
    next_token_distribution,
    start_token_id,
    window_start,
)
from toygpt.sampling import (
    SamplingConfig,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    sample_from,
    stages_from_logits,
)

VARIANTS = [
    dict(),
    dict(norm_position="post"),
    dict(pos_encoding="sinusoidal"),
    dict(pos_encoding="none", bias=False, tie_embeddings=True),
]



def make_model(seed: int = 0, dtype: torch.dtype = torch.float64, **overrides) -> GPT:
    """A tiny model whose weights are 5× GPT-2's init, so attention is not uniform and the
    predictions vary from token to token (at 0.02 every logit is ≈ 0 and ties are near).

    float64 keeps the rounding differences between the cached and full paths (~1e-16) far below
    the gaps between logits, so a token-for-token comparison tests the maths, not luck.
    """
    defaults = dict(vocab_size=24, block_size=8, n_layer=2, n_head=2, n_embd=16, tie_embeddings=False)
    model = GPT(GPTConfig(**{**defaults, **overrides}), seed=seed).eval().to(dtype)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.mul_(5)
    return model


def tokens(steps) -> list[int]:
    return [step.token_id for step in steps]


# --------------------------------------------------------------------------------------------
# KV cache == full recomputation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v}" for k, v in v.items()) or "gpt2")
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0), dict(temperature=0.7, top_k=5, top_p=0.9)])
def test_cache_equals_full_recomputation_beyond_block_size(variant, sampling):
    model = make_model(**variant)
    prompt = [1, 2, 3]
    n = 4 * model.config.block_size  # the window jumps several times
    cached = list(generate(model, prompt, n, seed=7, use_cache=True, record_stages=True, sampling=SamplingConfig(**sampling)))
    full = list(generate(model, prompt, n, seed=7, use_cache=False, record_stages=True, sampling=SamplingConfig(**sampling)))
    assert tokens(cached) == tokens(full)
    for a, b in zip(cached, full, strict=True):
        torch.testing.assert_close(a.stages.raw_logits, b.stages.raw_logits, rtol=0, atol=1e-9)
    assert any(not s.recomputed for s in cached)  # the cache was actually used ...
    assert sum(s.recomputed for s in cached) > 1  # ... and rebuilt when the window moved
    assert all(s.recomputed for s in full)


@settings(max_examples=12, deadline=None)
@given(
    prompt=st.lists(st.integers(0, 23), min_size=0, max_size=20),
    keep=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    temperature=st.sampled_from([0, 0.5, 1.0, 2.0]),
)
def test_cache_equals_full_recomputation_property(prompt, keep, seed, temperature):
    model = make_model(seed=seed % 3)
    kwargs = dict(sampling=SamplingConfig(temperature=temperature), seed=seed, window_keep=keep)
    assert tokens(generate(model, prompt, 20, use_cache=True, **kwargs)) == tokens(
        generate(model, prompt, 20, use_cache=False, **kwargs)
    )


def test_crop_every_step_matches_a_plain_loop():
    """window_keep=block_size is the classic loop: read the last block_size tokens every step."""
    model = make_model()
    block = model.config.block_size
    ids = [5, 6]
    with torch.no_grad():
        for _ in range(3 * block):
            logits, _ = model(torch.tensor([ids[-block:]]))
            ids.append(int(logits[0, -1].argmax()))
    out = tokens(generate(model, [5, 6], 3 * block, sampling=SamplingConfig(temperature=0), window_keep=block))
    assert out == ids[2:]


def test_default_window_matches_a_plain_loop_with_jumps():
    model = make_model(pos_encoding="sinusoidal")
    block, keep = model.config.block_size, 3
    ids, start = [4], 0
    with torch.no_grad():
        for _ in range(3 * block):
            if len(ids) - start > block:
                start = len(ids) - keep
            logits, _ = model(torch.tensor([ids[start:]]))
            ids.append(int(logits[0, -1].argmax()))
    assert tokens(generate(model, [4], 3 * block, sampling=SamplingConfig(temperature=0), window_keep=keep)) == ids[1:]


def test_decode_step_equals_forward_with_cache_in_float32(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, tiny_model.config.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = tiny_model(ids)
        cache = KVCache(tiny_model.config.n_layer)
        steps = [decode_step(tiny_model, int(t), cache) for t in ids[0]]
    torch.testing.assert_close(torch.stack(steps), full[0], rtol=1e-5, atol=1e-6)


ALL_CONFIG_VARIANTS = list(itertools.product(("pre", "post"), POS_ENCODINGS, (True, False), (True, False)))


@functools.cache
def config_variant_model(norm_position: str, pos_encoding: str, tie: bool, bias: bool) -> GPT:
    config = GPTConfig(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=16, norm_position=norm_position,
                       pos_encoding=pos_encoding, tie_embeddings=tie, bias=bias)  # fmt: skip
    model = GPT(config, seed=3).eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():  # biases and LayerNorms all different, so using a wrong one would show
        for weight in model.parameters():
            weight.add_(0.3 * torch.randn(weight.shape, generator=generator))
    return model


@settings(max_examples=80, deadline=None)
@given(
    variant=st.sampled_from(ALL_CONFIG_VARIANTS),
    ids=st.lists(st.integers(0, 39), min_size=1, max_size=12),
    prefix=st.integers(0, 11),
)
def test_decode_step_equals_gpt_forward_for_every_config_variant(variant, ids, prefix):
    """The one-token fast path is GPT.forward (pre/post-LN × every pos_encoding × tied/untied ×
    bias on/off): after a prompt of ``prefix`` tokens run by the model, every further token
    decoded by decode_step gives the logits of the full forward pass at that position."""
    model = config_variant_model(*variant)
    prefix = min(prefix, len(ids) - 1)
    with torch.no_grad():
        full, _ = model(torch.tensor([ids]))
        cache = KVCache(model.config.n_layer)
        pieces = [model(torch.tensor([ids[:prefix]]), kv_cache=cache)[0][0]] if prefix else []
        pieces += [decode_step(model, t, cache)[None] for t in ids[prefix:]]
    torch.testing.assert_close(torch.cat(pieces), full[0], rtol=1e-5, atol=1e-5)


def test_generation_with_hooks_attached_runs_them_on_every_token(tiny_model):
    """A hook attached in this thread applies to cached generation too (no fast path around it)."""
    def favour_token_3(logits, name):
        logits = logits.clone()
        logits[..., 3] = 1e4
        return logits

    with tiny_model.hook_points.attach({"hook_logits": favour_token_3}):
        steps = tokens(generate(tiny_model, [1, 2], 6, sampling=SamplingConfig(temperature=0)))
    assert steps == [3] * 6
    assert tokens(generate(tiny_model, [1, 2], 6, sampling=SamplingConfig(temperature=0))) != [3] * 6  # detached again


def test_decode_step_cannot_go_past_block_size(tiny_model):
    cache = KVCache(tiny_model.config.n_layer)
    with torch.no_grad():
        for t in range(tiny_model.config.block_size):
            decode_step(tiny_model, t % 5, cache)
        with pytest.raises(IndexError):  # no position block_size exists
            decode_step(tiny_model, 0, cache)


def test_window_start():
    assert [window_start(n, 0, block_size=4, keep=2) for n in (1, 4, 5)] == [0, 0, 3]
    assert window_start(6, 3, block_size=4, keep=2) == 3  # 3 tokens in the window: stays
    assert window_start(8, 3, block_size=4, keep=2) == 6
    assert window_start(5, 0, block_size=4, keep=4) == 1  # keep=block_size: crop by one


# --------------------------------------------------------------------------------------------
# Greedy, seeds, top-k, top-p
# --------------------------------------------------------------------------------------------


def test_greedy_is_deterministic_and_picks_the_argmax():
    model = make_model()
    first = list(generate(model, [1], 12, sampling=SamplingConfig(temperature=0), seed=1))
    second = list(generate(model, [1], 12, sampling=SamplingConfig(temperature=0), seed=2))  # the seed is irrelevant
    assert tokens(first) == tokens(second)
    ids = [1]
    for step in first:  # 12 tokens > block_size 8: the window jumps once on the way
        stages = next_token_distribution(model, ids[step.context_start :], sampling=SamplingConfig(temperature=1.0))
        assert step.token_id == int(stages.raw_logits.argmax())
        assert step.rank == 1 and step.probability == 1.0
        ids.append(step.token_id)


def test_seeded_sampling_reproduces_and_seeds_differ():
    model = make_model()
    a = tokens(generate(model, [1], 30, seed=123))
    assert a == tokens(generate(model, [1], 30, seed=123))
    assert a == tokens(generate(model, [1], 30, seed=torch.Generator().manual_seed(123)))
    assert a != tokens(generate(model, [1], 30, seed=124))


def test_top_k_1_equals_greedy():
    model = make_model()
    greedy = tokens(generate(model, [3, 4], 20, sampling=SamplingConfig(temperature=0)))
    assert tokens(generate(model, [3, 4], 20, sampling=SamplingConfig(temperature=1.3, top_k=1), seed=5)) == greedy


def test_tiny_top_p_equals_greedy():
    model = make_model()
    greedy = tokens(generate(model, [3], 20, sampling=SamplingConfig(temperature=0)))
    assert tokens(generate(model, [3], 20, sampling=SamplingConfig(top_p=1e-9), seed=5)) == greedy


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-8, 8), min_size=2, max_size=40),
    top_p=st.floats(0.01, 1.0),
)
def test_top_p_keeps_the_smallest_set_reaching_p(logits, top_p):
    logits = torch.tensor(logits, dtype=torch.float64)
    filtered, n_kept = apply_top_p(logits, top_p)
    probs = F.softmax(logits, dim=-1)
    kept = torch.isfinite(filtered)
    assert int(kept.sum()) == n_kept
    kept_probs = probs[kept]
    assert float(kept_probs.sum()) >= top_p - 1e-9  # the set reaches p ...
    assert float(kept_probs.sum() - kept_probs.min()) < top_p + 1e-9  # ... and no smaller one does
    dropped = probs[~kept]
    assert dropped.numel() == 0 or float(dropped.max()) <= float(kept_probs.min()) + 1e-12  # the best
    torch.testing.assert_close(filtered[kept], logits[kept])


def test_top_p_worked_example():
    filtered, n_kept = apply_top_p(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.7)
    assert n_kept == 2
    assert torch.isfinite(filtered).tolist() == [True, True, False, False]
    assert apply_top_p(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.81)[1] == 3
    # mass exactly equal to p (binary fractions, no rounding): two tokens already reach it
    assert apply_top_p(torch.tensor([0.5, 0.25, 0.25]).log(), 0.75)[1] == 2


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0, 2.5])
    assert torch.isfinite(apply_top_k(logits, 2)).tolist() == [False, True, False, False, True]
    assert apply_top_k(logits, 99) is logits  # k ≥ vocabulary keeps everything


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-20, 20), min_size=2, max_size=50),
    temperature=st.sampled_from([0, 1e-30, 1e-6, 0.3, 1.0, 5.0, 1e6]),
    top_k=st.one_of(st.none(), st.integers(1, 60)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
)
def test_filtered_probabilities_sum_to_one(logits, temperature, top_k, top_p):
    stages = stages_from_logits(torch.tensor(logits), SamplingConfig(temperature, top_k, top_p))
    assert not torch.isnan(stages.probs).any()
    assert float(stages.probs.sum()) == pytest.approx(1.0, abs=1e-5)
    for name, probs in stages.stage_probs().items():
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5), name
    assert int((stages.probs > 0).sum()) <= stages.top_p_cutoff_rank <= stages.top_k_kept
    alive = int(torch.isfinite(stages.scaled_logits).sum())  # temperature 0 leaves one
    assert stages.top_k_kept == (alive if top_k is None else min(top_k, alive))


def test_temperature_zero_is_greedy_without_dividing():
    logits = torch.tensor([1.0, 3.0, 2.0, 3.0])
    stages = stages_from_logits(logits, SamplingConfig(temperature=0))
    assert stages.probs.tolist() == [0.0, 1.0, 0.0, 0.0]  # the first of tied maxima, as argmax
    assert apply_temperature(torch.tensor([1.0, 3.0, 2.0]), 0.5).tolist() == [-4.0, 0.0, -2.0]


@pytest.mark.parametrize("temperature", [1e-3, 1e-8, 1e-30, 1e-45, 5e-324])
def test_tiny_temperatures_stay_finite(temperature):
    logits = torch.tensor([10.0, 10.5, -3.0, 10.4], dtype=torch.float64)
    probs = stages_from_logits(logits, SamplingConfig(temperature)).probs
    assert torch.isfinite(probs).all()
    assert float(probs[1]) == pytest.approx(1.0, abs=1e-6)


def test_huge_temperature_is_nearly_uniform():
    probs = stages_from_logits(torch.tensor([5.0, -5.0, 0.0]), SamplingConfig(1e9)).probs
    torch.testing.assert_close(probs, torch.full((3,), 1 / 3))


def test_sample_from_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.0, 0.2])
    generator = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([sample_from(probs, generator) for _ in range(20_000)]), minlength=4)
    frequency = counts / counts.sum()
    assert counts[2] == 0  # a zero-probability token is never drawn
    torch.testing.assert_close(frequency, probs, atol=0.015, rtol=0)


def test_sample_from_never_draws_past_the_end():
    # the cumulative total rounds to below 1: a draw above it falls back to the last live token
    probs = torch.tensor([0.3, 0.3, 0.3, 0.0])
    generator = torch.Generator().manual_seed(0)
    assert {sample_from(probs, generator) for _ in range(2000)} <= {0, 1, 2}


# --------------------------------------------------------------------------------------------
# Numerics at the limits: every stage is a distribution for any accepted setting and any
# finite-or-−inf logits; temperature → 0 is greedy and top_p → 0 keeps exactly the top token
# --------------------------------------------------------------------------------------------

NEG_INF = float("-inf")
ANY_FLOAT32 = st.floats(allow_nan=False, allow_infinity=False, width=32)  # ±3.4e38 and subnormals


@st.composite
def finite_or_neg_inf_logits(draw, max_size: int = 50) -> torch.Tensor:
    """Logits anywhere in float32's range, some of them -inf, at least one finite."""
    values = draw(st.lists(st.one_of(ANY_FLOAT32, st.just(NEG_INF)), min_size=1, max_size=max_size))
    values[draw(st.integers(0, len(values) - 1))] = draw(ANY_FLOAT32)
    return torch.tensor(values, dtype=draw(st.sampled_from([torch.float32, torch.float64])))


ANY_TEMPERATURE = st.one_of(st.just(0.0), st.floats(0, 1e300, exclude_min=True), st.sampled_from([1e-50, 5e-324, 1e38]))
ANY_TOP_P = st.one_of(st.none(), st.floats(0, 1, exclude_min=True), st.just(5e-324))


@settings(max_examples=300, deadline=None)
@given(logits=finite_or_neg_inf_logits(), temperature=ANY_TEMPERATURE,
       top_k=st.one_of(st.none(), st.integers(1, 60)), top_p=ANY_TOP_P, seed=st.integers(0, 2**31 - 1))  # fmt: skip
def test_every_stage_is_a_distribution_at_any_setting(logits, temperature, top_k, top_p, seed):
    stages = stages_from_logits(logits, SamplingConfig(temperature, top_k, top_p))
    removed = torch.isneginf(logits)
    for name, probs in stages.stage_probs().items():
        assert bool(torch.isfinite(probs).all()) and bool((probs >= 0).all()), (name, probs)
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5), name
        assert not bool(probs[removed].any()), name  # a -inf logit is never revived
    token = sample_from(stages.probs, torch.Generator().manual_seed(seed))
    assert stages.probs[token] > 0  # the draw lands on a token the last stage allows
    assert 1 <= int((stages.probs > 0).sum()) <= stages.top_p_cutoff_rank <= stages.top_k_kept


@settings(max_examples=200, deadline=None)
@given(logits=finite_or_neg_inf_logits(), fraction=st.floats(0, 1e-3, exclude_min=True))
def test_temperature_to_zero_is_greedy(logits, fraction):
    """Below a thousandth of the smallest gap between the best logit and another, every other
    token is ≥ 1000 nats behind: exp(-1000) is 0 even in float64, so the distribution is the
    greedy one (split evenly between exactly tied best tokens)."""
    gaps = (logits - logits.max()).double()
    behind = gaps[(gaps < 0) & torch.isfinite(gaps)]
    temperature = float(behind.max().abs()) * fraction if behind.numel() else fraction
    assume(temperature > 0)
    probs = stages_from_logits(logits, SamplingConfig(temperature)).probs
    best = logits == logits.max()
    assert probs.tolist() == (best.to(probs.dtype) / best.sum()).tolist()
    if int(best.sum()) == 1:
        assert probs.tolist() == stages_from_logits(logits, SamplingConfig(0)).probs.tolist()


def test_temperature_1e_minus_50_is_greedy_not_nan():
    """1e-50 rounds to 0.0 in float32: the best token's 0 / 0 used to be NaN (issue 10)."""
    probs = stages_from_logits(torch.tensor([1.0, 3.0, 2.0]), SamplingConfig(temperature=1e-50)).probs
    assert probs.tolist() == [0.0, 1.0, 0.0]
    model = make_model(dtype=torch.float32)
    cold = list(generate(model, [1, 2], 5, sampling=SamplingConfig(temperature=1e-50), seed=0))
    assert tokens(cold) == tokens(generate(model, [1, 2], 5, sampling=SamplingConfig(temperature=0)))
    assert [step.probability for step in cold] == [1.0] * 5


def test_temperature_falls_continuously_to_greedy():
    logits = torch.tensor([0.3, 2.0, 1.999, -1.0])
    temperatures = [10.0, 1.0, 0.1, 1e-3, 1e-4, 1e-10, 1e-40, 1e-50, 1e-300, 5e-324, 0.0]
    best = [float(stages_from_logits(logits, SamplingConfig(t)).probs[1]) for t in temperatures]
    assert best == sorted(best) and best[3] < 0.75 < best[4] and best[5:] == [1.0] * 6


def test_huge_temperature_keeps_removed_tokens_removed():
    """1e300 is inf in float32: -inf / inf used to be NaN."""
    probs = stages_from_logits(torch.tensor([1.0, NEG_INF, 2.0]), SamplingConfig(1e300)).probs
    assert probs.tolist() == [0.5, 0.0, 0.5]


@settings(max_examples=200, deadline=None)
@given(logits=finite_or_neg_inf_logits(), top_p=st.floats(0, 1e-300, exclude_min=True))
def test_top_p_to_zero_keeps_exactly_the_top_token(logits, top_p):
    filtered, n_kept = apply_top_p(logits, top_p)
    assert n_kept == 1
    assert torch.isfinite(filtered).nonzero().flatten().tolist() == [int(logits.argmax())]


@pytest.mark.parametrize("logits, message", [
    ([1.0, float("nan")], "NaN or \\+inf"),
    ([1.0, float("inf")], "NaN or \\+inf"),
    ([NEG_INF, NEG_INF], "every logit is -inf"),
])  # fmt: skip
def test_logits_without_a_distribution_are_refused(logits, message):
    with pytest.raises(ValueError, match=message):
        stages_from_logits(torch.tensor(logits), SamplingConfig())


# --------------------------------------------------------------------------------------------
# Step records
# --------------------------------------------------------------------------------------------


def test_step_records_are_consistent():
    model = make_model()
    steps = list(generate(model, [1, 2], 10, sampling=SamplingConfig(temperature=0.8, top_k=6), seed=3, record_stages=True))
    for step in steps:
        assert step.stages.probs[step.token_id] == pytest.approx(step.probability, rel=1e-6)
        model_probs = step.stages.model_probs
        assert step.model_probability == pytest.approx(float(model_probs[step.token_id]), rel=1e-6)
        assert step.rank == int((model_probs > model_probs[step.token_id]).sum()) + 1
        assert [p for _, p in step.candidates] == sorted((p for _, p in step.candidates), reverse=True)
        assert 1 <= step.context_length <= model.config.block_size
    assert [s.stop_reason for s in steps] == [None] * 9 + ["max_new_tokens"]
    assert [s.index for s in steps] == list(range(10))


def test_plain_sampling_probability_is_the_models():
    for step in generate(make_model(), [1], 5, seed=0):
        assert step.probability == pytest.approx(step.model_probability)


def test_zero_new_tokens_yields_nothing():
    assert list(generate(make_model(), [1], 0)) == []


def test_generation_does_not_leak_inference_mode():
    steps = generate(make_model(), [1], 3, seed=0)
    next(steps)
    assert not torch.is_inference_mode_enabled()
    assert torch.is_grad_enabled()


# --------------------------------------------------------------------------------------------
# Prompts: empty, too long, unknown characters, stop strings
# --------------------------------------------------------------------------------------------


class FakeTokenizer:
    """Characters a-z are ids 0..25, newline 26: enough to test the text-facing paths."""

    alphabet = "abcdefghijklmnopqrstuvwxyz\n"
    special_tokens: dict[str, int] = {}
    vocab_size = len(alphabet)

    def encode(self, text: str) -> list[int]:
        unknown = [ch for ch in text if ch not in self.alphabet]
        if unknown:
            raise ValueError(f"unknown characters {unknown}")
        return [self.alphabet.index(ch) for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i] for i in ids)


def test_empty_prompt_starts_from_the_documented_start_token():
    tok = FakeTokenizer()
    assert start_token_id(tok) == 26  # a newline
    assert encode_prompt(tok, "") == [26]
    assert start_token_id(None) == 0
    eot = FakeTokenizer()
    eot.special_tokens = {"<|endoftext|>": 3}
    assert start_token_id(eot) == 26  # a newline still: toygpt's training data has no <|endoftext|>
    assert start_token_id(eot, make_model(vocab_size=27, bos_token_id=3)) == 3  # unless the model says so
    model = make_model(vocab_size=27)
    assert tokens(generate(model, [], 5, sampling=SamplingConfig(temperature=0))) == tokens(generate(model, [0], 5, sampling=SamplingConfig(temperature=0)))
    greedy = generate_text(model, tok, "", max_new_tokens=5, sampling=SamplingConfig(temperature=0)).text
    assert greedy == tok.decode(tokens(generate(model, [26], 5, sampling=SamplingConfig(temperature=0))))


def test_long_prompt_is_cropped_and_the_caller_is_told():
    model = make_model()
    block = model.config.block_size
    prompt = list(range(20)) + list(range(3))  # 23 tokens > block_size 8
    steps = list(generate(model, prompt, 3, sampling=SamplingConfig(temperature=0)))
    assert steps[0].prompt_dropped == len(prompt) - block
    assert steps[0].context_start == len(prompt) - block
    assert tokens(steps) == tokens(generate(model, prompt[-block:], 3, sampling=SamplingConfig(temperature=0)))
    stages = next_token_distribution(model, prompt)
    assert stages.context_dropped == len(prompt) - block
    torch.testing.assert_close(stages.raw_logits, next_token_distribution(model, prompt[-block:]).raw_logits)
    assert crop_context(prompt, block) == (prompt[-block:], len(prompt) - block)


def test_unknown_characters_are_named():
    tokenizers = pytest.importorskip("toygpt.tokenizers")
    tok = tokenizers.CharTokenizer.from_text("hello world\n")
    model = make_model(vocab_size=tok.vocab_size)
    with pytest.raises(ValueError, match="'z'"):
        generate_text(model, tok, "hello z", max_new_tokens=3)


def test_stop_string_ends_generation():
    tok = FakeTokenizer()
    model = make_model(vocab_size=27)
    free = generate_text(model, tok, "ab", max_new_tokens=40, seed=11).text
    stop = free[6:8]
    cut = free.index(stop)
    steps = list(generate(model, encode_prompt(tok, "ab"), 40, seed=11, stop=stop, tokenizer=tok))
    assert len(steps) == cut + len(stop)
    assert steps[-1].stop_reason == f"stop string {stop!r}"
    assert generate_text(model, tok, "ab", max_new_tokens=40, seed=11, stop=[stop, "never"]).text == free[:cut]


# --------------------------------------------------------------------------------------------
# Bad input gets a ValueError that names the allowed range
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(top_p=0.0), r"\(0, 1\]"),
        (dict(top_p=1.5), r"\(0, 1\]"),
        (dict(top_p=float("nan")), r"\(0, 1\]"),
        (dict(temperature=-0.1), "≥ 0"),
        (dict(temperature=float("inf")), "≥ 0"),
        (dict(temperature=10**400), "≥ 0"),  # an int no float can hold: OverflowError before
        (dict(top_p=10**400), r"\(0, 1\]"),
        (dict(top_k=0), "≥ 1"),
        (dict(top_k=2.5), "≥ 1"),
        (dict(top_k=True), "≥ 1"),
    ],
)
def test_bad_sampling_settings(kwargs, message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        next_token_distribution(model, [1], SamplingConfig(**kwargs))
    with pytest.raises(ValueError, match=message):
        generate(model, [1], 5, sampling=SamplingConfig(**kwargs))  # at the call, not at the first step


@pytest.mark.parametrize(
    "ids, kwargs, message",
    [
        ([1], dict(max_new_tokens=-1), "max_new_tokens"),
        ([1], dict(max_new_tokens=5, window_keep=0), "window_keep"),
        ([1], dict(max_new_tokens=5, window_keep=9), "window_keep"),
        ([1], dict(max_new_tokens=5, stop="x"), "tokenizer"),
        ([1], dict(max_new_tokens=5, n_candidates=0), "n_candidates"),
        ([99], dict(max_new_tokens=5), r"vocabulary \[0, 23\]"),
        ([-1], dict(max_new_tokens=5), "vocabulary"),
        ("hello", dict(max_new_tokens=5), "encode it first"),
        (torch.tensor([1.0]), dict(max_new_tokens=5), "integers"),
        (torch.zeros(2, 3, dtype=torch.long), dict(max_new_tokens=5), "one sequence"),
    ],
)
def test_bad_generation_arguments(ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(make_model(), ids, **kwargs)


def test_nan_weights_are_reported():
    model = make_model()
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        next(generate(model, [1], 3))
    with pytest.raises(ValueError, match="NaN"):
        next_token_distribution(model, [1])


def test_training_mode_with_dropout_is_refused():
    model = make_model(dropout=0.1).train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        generate(model, [1], 3)


def test_generation_runs_beside_another_thread():
    """Two generations at once on one shared model (a cached model in the app) do not interfere."""
    model = make_model()
    expected = tokens(generate(model, [1], 30, seed=9))
    results: list[list[int]] = []
    worker = threading.Thread(target=lambda: results.append(tokens(generate(model, [1], 30, seed=9))))
    worker.start()
    mine = tokens(generate(model, [1], 30, seed=9))
    worker.join()
    assert mine == expected and results == [expected]


def test_sampling_config_is_frozen_and_named_in_learner_words():
    config = SamplingConfig(0.8, 40, 0.9)
    with pytest.raises(AttributeError):
        config.temperature = 1.0  # type: ignore[misc]
    assert SamplingConfig().plain and SamplingConfig(0).greedy
    assert math.isclose(config.temperature, 0.8)


def test_sampling_settings_travel_as_one_object_through_every_entry_point():
    """generate, generate_text and next_token_distribution read the same SamplingConfig; the
    old loose keywords are gone (one way to say it), and a non-config is refused with the fix."""
    from toygpt.tokenizers import CharTokenizer

    model = make_model(vocab_size=27)
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
    config = SamplingConfig(temperature=0.7, top_k=4, top_p=0.9)
    steps = list(generate(model, [1, 2], 12, sampling=config, seed=3, record_stages=True, tokenizer=tok))
    assert all(step.stages.config == config for step in steps)
    assert all(step.stages.top_k_kept <= 4 for step in steps)  # the filter really ran
    text = generate_text(model, tok, tok.decode([1, 2]), 12, sampling=config, seed=3)
    assert text.tokens == tokens(steps) and text.text == tok.decode(tokens(steps))
    assert next_token_distribution(model, [1, 2], config).config == config
    default = tokens(generate(model, [1, 2], 12, seed=3))  # the default: the model's own distribution
    assert default == tokens(generate(model, [1, 2], 12, sampling=SamplingConfig(1.0, None, None), seed=3))
    with pytest.raises(TypeError, match="temperature"):
        generate(model, [1], 3, temperature=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"SamplingConfig\(temperature=0.8"):
        generate(model, [1], 3, sampling={"temperature": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a SamplingConfig"):
        generate_text(model, tok, "ab", 3, sampling=0.5)  # type: ignore[arg-type]


class FakeClock:
    """A perf_counter that moves 1 s per reading, and as much as the test says between readings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_generation_stats_count_the_models_time_only_and_match_the_tokens(monkeypatch):
    """Each step takes exactly 1 s on the fake clock (one reading at its start, one at its end);
    the 100 s the caller spends between steps is never counted."""
    import toygpt.sample

    clock = FakeClock()
    monkeypatch.setattr(toygpt.sample.time, "perf_counter", clock)
    steps = []
    for step in generate(make_model(), [1, 2], 6, seed=0):
        steps.append(step)
        clock.now += 100.0  # the caller draws the token: not the model's time
    stats = GenerationStats.of(steps)
    assert [step.seconds for step in steps] == [1.0] * 6
    assert (stats.tokens, stats.first_token_seconds, stats.seconds_per_token, stats.total_seconds) == (6, 1.0, 1.0, 6.0)
    assert stats.tokens_per_second == 1.0 and stats.recomputed_steps == sum(s.recomputed for s in steps) >= 1
    generation = generation_of(steps, use_cache=True)
    assert generation.tokens == tokens(steps) and generation.text is None and generation.stats == stats


def test_generate_text_reports_what_it_generated():
    from toygpt.tokenizers import CharTokenizer

    tok = CharTokenizer.from_text("abcdefgh \n")
    model = make_model(vocab_size=tok.vocab_size)
    free = generate_text(model, tok, "ab", 30, seed=11)
    assert free.stats.tokens == len(free.tokens) == 30 and free.stop_reason == "max_new_tokens"
    assert free.stats.total_seconds > 0 and free.stats.first_token_seconds > 0 and free.use_cache
    stop = free.text[4:6]
    cut = generate_text(model, tok, "ab", 30, seed=11, stop=stop)
    assert cut.text == free.text[: free.text.index(stop)] and cut.stop_reason == f"stop string {stop!r}"
    assert cut.stats.tokens == len(cut.tokens) < 30
    assert generate_text(model, tok, "ab", 0).text == "" and generate_text(model, tok, "ab", 0).stats.tokens == 0
    with pytest.raises(ValueError, match="at least 1 token"):
        GenerationStats.of([])


# --------------------------------------------------------------------------------------------
# The command line: python -m toygpt sample
# --------------------------------------------------------------------------------------------


@pytest.fixture
def saved_run(isolated_dirs):
    """A tiny run saved with toygpt.checkpoint under $TOYGPT_RUNS_DIR/tiny-run."""
    checkpoint = pytest.importorskip("toygpt.checkpoint")
    tokenizers = pytest.importorskip("toygpt.tokenizers")
    tok = tokenizers.CharTokenizer.from_text("abcdefgh \n")
    model = make_model(vocab_size=tok.vocab_size, dtype=torch.float32)
    folder = isolated_dirs / "runs" / "tiny-run"
    checkpoint.save_checkpoint(folder, model, tok.to_dict())
    return folder, model, tok


def run_cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from toygpt.__main__ import build_parser

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):  # a bad argument: one line from argparse, exit 2
            args = build_parser(["sample"]).parse_args(["sample", *argv])
    except SystemExit as exit_:
        return exit_.code, "", err.getvalue()
    code = args.func(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_samples_a_run_by_id_and_by_folder(saved_run):
    folder, model, tok = saved_run
    expected = "abc" + generate_text(model, tok, "abc", max_new_tokens=12, sampling=SamplingConfig(temperature=0.9, top_k=5), seed=4).text
    for run in ("tiny-run", str(folder)):
        code, out, err = run_cli("--run", run, "--prompt", "abc", "--max-tokens", "12", "--temperature", "0.9",
                                 "--top-k", "5", "--seed", "4")  # fmt: skip
        assert (code, out, err) == (0, expected + "\n", "")


def test_cli_stop_string_is_never_printed(saved_run):
    folder, model, tok = saved_run
    free = generate_text(model, tok, "a", max_new_tokens=40, seed=2).text
    stop = free[5:7]
    code, out, _ = run_cli("--run", "tiny-run", "--prompt", "a", "--max-tokens", "40", "--seed", "2", "--stop", stop)
    assert code == 0 and out == "a" + free[: free.index(stop)] + "\n"


def test_cli_tells_about_a_cropped_prompt(saved_run):
    code, out, err = run_cli("--run", "tiny-run", "--prompt", "abcdefgh" * 3, "--max-tokens", "2", "--stats")
    assert code == 0 and "16 dropped" in err and "tokens/s" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run", "no-such-run"], "no run 'no-such-run'"),
        (["--run", "../tiny-run"], "no such run folder"),
        (["--run", "tiny-run", "--prompt", "xyz"], "'x'"),
        (["--run", "tiny-run", "--top-p", "1.5"], "argument --top-p: 1.5 is not in (0, 1]"),
        (["--run", "tiny-run", "--temperature", "-1"], "argument --temperature: -1 is not in [0, 100]"),
        (["--run", "tiny-run", "--top-k", "0"], "argument --top-k: 0 is not in [1, "),
        (["--run", "tiny-run", "--max-tokens", "-3"], "argument --max-tokens: -3 is not in [0, "),
    ],
)
def test_cli_explains_bad_input(saved_run, argv, message):
    code, out, err = run_cli(*argv)
    if message.startswith("argument"):  # refused while parsing: one line, argparse's status 2
        assert code == 2 and err.startswith("python -m toygpt sample: error: ") and message in err
        assert len(err.strip().splitlines()) == 1
    else:
        assert code == 1 and err.startswith("error: ") and message in err


def test_cli_refuses_a_run_without_tokenizer(saved_run):
    folder, _, _ = saved_run
    (folder / "tokenizer.json").unlink()
    code, _, err = run_cli("--run", "tiny-run")
    assert code == 1 and "no tokenizer.json" in err


def test_docstring_examples_hold():
    import doctest

    import toygpt.sample
    import toygpt.sampling

    results = [doctest.testmod(module) for module in (toygpt.sampling, toygpt.sample)]
    assert sum(r.attempted for r in results) >= 5 and sum(r.failed for r in results) == 0


def test_cli_samples_the_shipped_demo_by_its_id():
    from toygpt.runs import DEMO_RUN, demo_run_dir

    if not (demo_run_dir() / "model.safetensors").exists():
        pytest.skip("the demo checkpoint is not in this checkout")
    code, out, err = run_cli("--run", DEMO_RUN, "--prompt", "ROMEO:", "--max-tokens", "20", "--seed", "1")
    assert code == 0 and out.startswith("ROMEO:") and len(out) > len("ROMEO:") + 5, err


def test_cli_temperature_1e_minus_50_is_greedy_on_the_demo():
    """Issue 10: this printed ROMEO:zzzz… (the last id, drawn from NaN probabilities) and exited 0."""
    from toygpt.runs import DEMO_RUN, demo_run_dir

    if not (demo_run_dir() / "model.safetensors").exists():
        pytest.skip("the demo checkpoint is not in this checkout")
    argv = ("--run", DEMO_RUN, "--prompt", "ROMEO:", "--max-tokens", "30", "--seed", "1")
    cold = run_cli(*argv, "--temperature", "1e-50")
    assert cold == run_cli(*argv, "--temperature", "0")
    assert cold[0] == 0 and "zzzz" not in cold[1], cold
