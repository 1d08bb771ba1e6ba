"""The model's promises: known answers (initial loss, FLOPs, parameter counts), properties
(causality, attention rows, KV cache = full recompute) and clear errors on bad input."""

from __future__ import annotations

import doctest
import itertools
import math
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import toygpt.model
import toygpt.positions
from toygpt.model import (
    GPT,
    POS_ENCODINGS,
    CausalSelfAttention,
    GPTConfig,
    KVCache,
    causal_mask,
    flops_per_token,
    parameter_counts,
    preset,
    total_parameters,
)
from toygpt.positions import alibi_slopes, apply_rope, rope_angles

VARIANTS = list(itertools.product(("pre", "post"), POS_ENCODINGS))
VARIANT_IDS = [f"{norm}-LN/{pos}" for norm, pos in VARIANTS]


@cache
def variant_model(norm_position: str, pos_encoding: str, fused: bool = True) -> GPT:
    """One small model per variant, built once (hypothesis calls the tests many times)."""
    config = GPTConfig(
        vocab_size=48, block_size=12, n_layer=2, n_head=2, n_embd=16,
        norm_position=norm_position, pos_encoding=pos_encoding,
    )  # fmt: skip
    model = GPT(config, seed=7).eval()
    model.set_attention(fused)
    return model


def logits_of(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


# ---- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(vocab_size=65),  # the small preset's shape, char-level shakespeare
        GPTConfig(vocab_size=1000, block_size=32, n_layer=2, n_head=2, n_embd=64),
        GPTConfig(vocab_size=256, block_size=32, n_layer=3, n_head=2, n_embd=32, norm_position="post"),
        GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=4, n_embd=32, tie_embeddings=False),
    ],
    ids=["small-65", "vocab-1000", "post-LN", "untied"],
)
def test_fresh_model_loss_on_random_tokens_is_ln_vocab_size(config):
    # N(0, 0.02) weights make every logit ≈ 0, so the model starts out guessing uniformly.
    model = GPT(config, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(0, config.vocab_size, (8, config.block_size), generator=generator)
    targets = torch.randint(0, config.vocab_size, (8, config.block_size), generator=generator)
    with torch.no_grad():
        _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(config.vocab_size)) < 0.1


def test_flops_per_token_for_gpt2_124m():
    # Worked by hand from the docstring's formula, C=768, T=1024, L=12, V=50257:
    #   per layer 2·12·768² + 2·2·1024·768 = 14,155,776 + 3,145,728 = 17,301,504
    #   12 layers 207,618,048; head 2·768·50,257 = 77,194,752; forward 284,812,800
    config = preset("gpt2")
    assert flops_per_token(config, training=False) == 284_812_800
    assert flops_per_token(config) == 3 * 284_812_800


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_flops_per_token_equals_what_torch_counts(tie_embeddings):
    # The explicit path materialises the full T×T attention, which is what the formula counts.
    config = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16, tie_embeddings=tie_embeddings)
    model = GPT(config, seed=0)
    model.set_attention(fused=False)
    idx = torch.randint(0, 40, (3, 16), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as forward_count:
        model(idx)
    with FlopCounterMode(display=False) as training_count:
        _, loss = model(idx, idx)
        loss.backward()
    tokens = idx.numel()
    assert forward_count.get_total_flops() == flops_per_token(config, training=False) * tokens
    assert training_count.get_total_flops() == flops_per_token(config, training=True) * tokens


CONFIGS_TO_COUNT = [
    GPTConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=2, n_embd=embd, bias=bias,
              norm_position=norm, pos_encoding=pos, tie_embeddings=tie)
    for (vocab, block, layers, embd), bias, norm, pos, tie in itertools.product(
        [(32, 16, 1, 8), (65, 64, 3, 24)], [True, False], ["pre", "post"],
        POS_ENCODINGS, [True, False],
    )
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS_TO_COUNT)
def test_parameter_counts_match_the_model(config):
    model = GPT(config, seed=0)
    assert total_parameters(config) == sum(p.numel() for p in model.parameters()) == model.num_parameters()
    modules = dict(model.named_modules())
    for row in parameter_counts(config):
        if row["module"] in modules:  # every real module's row is exactly its parameter count
            assert row["params"] == sum(p.numel() for p in modules[row["module"]].parameters()), row


def test_parameter_counts_of_gpt2_124m():
    # the famous figure: 124,439,808 parameters with the head tied to wte
    assert total_parameters(preset("gpt2")) == 124_439_808


# ---- initialisation ------------------------------------------------------------------------


def test_same_seed_same_weights_and_different_seed_different_weights(tiny_config):
    first, again, other = GPT(tiny_config, seed=3), GPT(tiny_config, seed=3), GPT(tiny_config, seed=4)
    for (name, a), b, c in zip(first.named_parameters(), again.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b), name
        if name.endswith("weight") and "ln" not in name:
            assert not torch.equal(a, c), name


def test_scale_residual_init_changes_exactly_the_residual_projections():
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=8, n_head=4, n_embd=128)
    scaled = GPT(config, seed=0)
    plain = GPT(config.replace(scale_residual_init=False), seed=0)
    factor = 1 / math.sqrt(2 * config.n_layer)  # 0.02/sqrt(2·n_layer) instead of 0.02
    residual = [f"transformer.h.{i}.{part}.c_proj.weight" for i in range(8) for part in ("attn", "mlp")]
    for (name, a), b in zip(scaled.named_parameters(), plain.parameters(), strict=True):
        if name in residual:
            # the same random draws, scaled: so exactly the std changes, by exactly the factor
            torch.testing.assert_close(a, b * factor, rtol=1e-6, atol=0)
            assert abs(a.std().item() - 0.02 * factor) < 0.1 * 0.02 * factor
            assert abs(b.std().item() - 0.02) < 0.1 * 0.02
        else:
            assert torch.equal(a, b), f"{name} should not depend on scale_residual_init"


def test_tied_head_is_the_token_embedding(tiny_config):
    tied, untied = GPT(tiny_config), GPT(tiny_config.replace(tie_embeddings=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight


# ---- properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
@pytest.mark.parametrize("norm_position,pos_encoding", VARIANTS, ids=VARIANT_IDS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_changing_a_later_token_never_changes_earlier_logits(norm_position, pos_encoding, fused, data):
    model = variant_model(norm_position, pos_encoding, fused)
    T = data.draw(st.integers(2, model.config.block_size), label="T")
    tokens = data.draw(st.lists(st.integers(0, 47), min_size=T, max_size=T), label="tokens")
    j = data.draw(st.integers(1, T - 1), label="j")
    replacement = data.draw(st.integers(0, 47).filter(lambda t: t != tokens[j]), label="new token")
    changed = list(tokens)
    changed[j] = replacement
    before = logits_of(model, torch.tensor([tokens]))
    after = logits_of(model, torch.tensor([changed]))
    torch.testing.assert_close(after[:, :j], before[:, :j], rtol=0, atol=1e-6)
    # and the test can see a change: position j itself reads the new token
    assert not torch.allclose(after[:, j], before[:, j], atol=1e-4)


@pytest.mark.parametrize("norm_position,pos_encoding", VARIANTS, ids=VARIANT_IDS)
def test_explicit_and_fused_attention_give_the_same_logits(norm_position, pos_encoding):
    model = variant_model(norm_position, pos_encoding, True)
    idx = torch.randint(0, 48, (4, 12), generator=torch.Generator().manual_seed(1))
    fused = logits_of(model, idx)
    model.set_attention(fused=False)
    try:
        explicit = logits_of(model, idx)
    finally:
        model.set_attention(fused=True)
    torch.testing.assert_close(explicit, fused, rtol=0, atol=1e-5)


def test_attention_probabilities_sum_to_one_and_never_look_ahead(tiny_model):
    captured = []
    patterns = {f"blocks.{i}.attn.hook_pattern": lambda probs, name: captured.append(probs) for i in range(2)}
    idx = torch.randint(0, 32, (3, 10), generator=torch.Generator().manual_seed(0))
    with tiny_model.hook_points.attach(patterns):  # a hook on the pattern takes the explicit path
        logits_of(tiny_model, idx)
    assert len(captured) == tiny_model.config.n_layer
    above_diagonal = ~causal_mask(10)
    for probs in captured:
        assert probs.shape == (3, 2, 10, 10)  # (B, nh, T, T)
        torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 10), rtol=0, atol=1e-6)
        assert torch.all(probs[..., above_diagonal] == 0)
        assert torch.all(probs[..., ~above_diagonal] > 0)  # softmax: everything allowed gets weight


def test_probe_sees_the_same_attention_as_the_fused_path_computes(tiny_model):
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(2))
    fused = logits_of(tiny_model, idx)
    with tiny_model.hook_points.attach({"blocks.0.attn.hook_pattern": lambda probs, name: None}):  # explicit path
        torch.testing.assert_close(logits_of(tiny_model, idx), fused, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 3, 3], [12]], ids=["token-by-token", "chunks", "whole"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
@pytest.mark.parametrize("norm_position,pos_encoding", VARIANTS, ids=VARIANT_IDS)
def test_kv_cache_forward_equals_the_full_forward(norm_position, pos_encoding, fused, chunks):
    model = variant_model(norm_position, pos_encoding, fused)
    idx = torch.randint(0, 48, (2, 12), generator=torch.Generator().manual_seed(3))
    full = logits_of(model, idx)
    cache_, start, pieces = KVCache(model.config.n_layer), 0, []
    with torch.no_grad():
        for size in chunks:
            pieces.append(model(idx[:, start : start + size], kv_cache=cache_)[0])
            start += size
    assert cache_.length == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "idx,words",
    [
        (torch.tensor([[1, 2, 32]]), ["32", "[0, 31]"]),
        (torch.tensor([[-1, 2, 3]]), ["-1", "[0, 31]"]),
        (torch.zeros(1, 17, dtype=torch.long), ["17", "block_size=16"]),
        (torch.zeros(1, 4), ["float32", "integers"]),
        (torch.zeros(4, dtype=torch.long), ["(4,)", "(batch, time)"]),
        (torch.zeros(1, 0, dtype=torch.long), ["(1, 0)", "time ≥ 1"]),
        ([[1, 2, 3]], ["list", "torch.Tensor"]),
    ],
    ids=["id-too-big", "negative-id", "too-long", "float-dtype", "1-d", "empty", "a-list"],
)
def test_bad_input_says_what_was_given_and_what_is_allowed(tiny_model, idx, words):
    with pytest.raises(ValueError) as error:
        tiny_model(idx)
    for word in words:
        assert word in str(error.value)


def test_kv_cache_cannot_grow_past_block_size(tiny_model):
    cache_ = KVCache(tiny_model.config.n_layer)
    with torch.no_grad():
        tiny_model(torch.zeros(1, 16, dtype=torch.long), kv_cache=cache_)
        with pytest.raises(ValueError, match="17 tokens is longer than block_size=16"):
            tiny_model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache_)


@pytest.mark.parametrize(
    "changes,fix",
    [
        (dict(n_embd=100, n_head=3), "try n_embd=99"),
        (dict(n_layer=0), "n_layer=0"),
        (dict(n_layer=True), "n_layer=True"),
        (dict(vocab_size=2.5), "vocab_size=2.5"),
        (dict(dropout=1.0), "try 0.0"),
        (dict(norm_position="middle"), "('pre', 'post')"),
        (dict(pos_encoding="rotary"), "('learned', 'sinusoidal', 'none', 'rope', 'alibi')"),
        (dict(pos_encoding="sinusoidal", n_embd=15, n_head=1), "try n_embd=16"),
    ],
)
def test_impossible_configs_get_a_message_naming_the_fix(changes, fix):
    with pytest.raises(ValueError) as error:
        GPTConfig(**changes)
    assert fix in str(error.value)


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys(tiny_config):
    assert GPTConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(ValueError, match="unknown model config keys \\['n_embed'\\]"):
        GPTConfig.from_dict({**tiny_config.to_dict(), "n_embed": 16})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_model_docstring_examples_hold():
    """The model's examples, and those of the position encodings it is built on."""
    results = [doctest.testmod(m, optionflags=doctest.NORMALIZE_WHITESPACE) for m in (toygpt.model, toygpt.positions)]
    assert sum(r.attempted for r in results) >= 2 and sum(r.failed for r in results) == 0


# ---- RoPE and ALiBi, from first principles -------------------------------------------------


def rope_attention(n_head: int = 2, n_embd: int = 16, block_size: int = 12) -> CausalSelfAttention:
    model = GPT(GPTConfig(vocab_size=8, block_size=block_size, n_layer=1, n_head=n_head, n_embd=n_embd,
                          pos_encoding="rope"), seed=0)  # fmt: skip
    return model.transformer.h[0].attn


@settings(max_examples=25, deadline=None)
@given(offset=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_rope_scores_depend_only_on_the_distance(offset, seed):
    """Shift every position by the same offset (past block_size too): q·k stays the same."""
    attn = rope_attention()
    generator = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 2, 6, 8, generator=generator)
    q0, k0 = attn.rotate(q, k, start=0)
    q1, k1 = attn.rotate(q, k, start=offset)
    torch.testing.assert_close(q1 @ k1.transpose(-2, -1), q0 @ k0.transpose(-2, -1), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(q1, q0, atol=1e-3)  # the vectors themselves did turn


def test_rope_rotation_preserves_norms():
    cos, sin = rope_angles(torch.arange(50), 8)
    x = torch.randn(3, 2, 50, 8, generator=torch.Generator().manual_seed(0))
    rotated = apply_rope(x, cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    pairs = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # noqa: E731 (each (i, i + hs/2) pair keeps its length)
    torch.testing.assert_close(pairs(rotated), pairs(x))
    torch.testing.assert_close(apply_rope(x, *rope_angles(torch.zeros(50), 8)), x)  # position 0: no turn


def test_rope_matches_transformers_rotary_helper():
    """The same inputs through Llama's rotary embedding in transformers (GPT-NeoX half split)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    n_head, head_size, T = 4, 16, 40
    attn = rope_attention(n_head=n_head, n_embd=n_head * head_size, block_size=24)  # 40 > 24: computed angles too
    q, k = torch.randn(2, 2, n_head, T, head_size, generator=torch.Generator().manual_seed(3))
    config = LlamaConfig(hidden_size=n_head * head_size, num_attention_heads=n_head, head_dim=head_size,
                         max_position_embeddings=64, rope_theta=10000.0)  # fmt: skip
    cos, sin = LlamaRotaryEmbedding(config)(q, torch.arange(T)[None].expand(2, T))
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    ours_q, ours_k = attn.rotate(q, k, start=0)
    torch.testing.assert_close(ours_q, expected_q, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_k, expected_k, rtol=0, atol=1e-6)


def test_alibi_slopes_as_the_paper_lists_them():
    assert alibi_slopes(8).tolist() == [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    assert alibi_slopes(1).tolist() == [1 / 256]
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other 8-head slope: 2^-1, 2^-3
    assert alibi_slopes(6).tolist() == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]


def test_alibi_adds_minus_slope_times_distance_to_each_score():
    from toygpt.inspection import run_with_cache

    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=8, n_embd=32, pos_encoding="alibi")
    model = GPT(config, seed=1).eval()
    _, cache = run_with_cache(model, list(range(1, 8)))
    added = cache["blocks.0.attn.hook_masked"] - cache["blocks.0.attn.hook_scores"]  # (1, 8, 7, 7)
    i, j = torch.arange(7)[:, None], torch.arange(7)[None, :]
    for head, slope in enumerate([2.0**-n for n in range(1, 9)]):
        allowed = j <= i
        torch.testing.assert_close(added[0, head][allowed], (-slope * (i - j)).float()[allowed])
        assert torch.isinf(added[0, head][~allowed]).all()  # the future stays hidden
    assert cache["blocks.0.attn.hook_alibi"].shape == (8, 7, 7)


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "none", "rope", "alibi"])
def test_encodings_defined_everywhere_read_past_block_size(pos_encoding):
    model = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16, pos_encoding=pos_encoding),
                seed=0).eval()  # fmt: skip
    idx = torch.randint(0, 30, (2, 20), generator=torch.Generator().manual_seed(0))
    long = logits_of(model, idx)
    assert long.shape == (2, 20, 30) and torch.isfinite(long).all()
    # causal: the first 8 positions are what the model computes on 8 tokens
    torch.testing.assert_close(long[:, :8], logits_of(model, idx[:, :8]), rtol=0, atol=1e-5)
    cache_, pieces = KVCache(2), []
    with torch.no_grad():
        for start in range(0, 20, 5):  # and the KV cache past block_size gives the same logits
            pieces.append(model(idx[:, start : start + 5], kv_cache=cache_)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), long, rtol=0, atol=1e-5)


def test_learned_positions_refuse_to_read_past_block_size():
    model = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    with pytest.raises(ValueError, match="9 tokens is longer than block_size=8, where learned positions"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_rope_needs_an_even_head_size():
    with pytest.raises(ValueError, match="head_size = n_embd / n_head = 5 must be even; try n_embd=12"):
        GPTConfig(n_embd=10, n_head=2, pos_encoding="rope")
    GPTConfig(n_embd=12, n_head=2, pos_encoding="rope")  # the suggested fix works
