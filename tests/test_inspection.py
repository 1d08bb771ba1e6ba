"""Inspection: attention maps, logit lens, surprisal, the forward trace, residual stats, embeddings."""

from __future__ import annotations

import copy
import inspect as std_inspect
import math
import threading

import pytest
import torch
import torch.nn.functional as F

from toygpt.inspection import (
    MAX_SURPRISAL_TOKENS,
    attention_distance,
    attention_maps,
    attention_probes,
    embedding_pca,
    forward_trace,
    logit_lens,
    mean_attention_distance,
    nearest_tokens,
    position_similarity,
    residual_stats,
    run_with_cache,
    run_with_hooks,
    surprisal,
)
from toygpt.model import GPT, GPTConfig, causal_mask, hook_names

VARIANTS = [
    dict(),
    dict(norm_position="post"),
    dict(pos_encoding="sinusoidal"),
    dict(pos_encoding="none", bias=False),
    dict(n_head=4, n_embd=32, n_layer=3),
]



def make_model(seed: int = 0, **overrides) -> GPT:
    """A tiny model with weights 5× GPT-2's init, so attention is far from uniform."""
    defaults = dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(GPTConfig(**{**defaults, **overrides}), seed=seed).eval()
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.mul_(5)
    return model


def some_ids(n: int, vocab: int = 32, seed: int = 0) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def variant_id(v: dict) -> str:
    return ",".join(f"{k}={x}" for k, x in v.items()) or "gpt2"


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("T", [1, 7, 16])
def test_attention_maps_shape_rows_and_mask(variant, T):
    model = make_model(**variant)
    maps = attention_maps(model, some_ids(T))
    config = model.config
    assert maps.shape == (config.n_layer, config.n_head, T, T)
    torch.testing.assert_close(maps.sum(-1), torch.ones(config.n_layer, config.n_head, T))
    assert (maps.masked_select(~causal_mask(T)) == 0).all()
    assert (maps >= 0).all()


def test_attention_maps_equal_the_explicit_computation():
    """Recompute every layer's attention by hand from the blocks' own modules."""
    model = make_model()
    ids = some_ids(12)
    maps = attention_maps(model, ids)
    with torch.no_grad():
        x = model.transformer.wte(torch.tensor([ids])) + model.transformer.wpe.weight[:12]
        for layer, block in enumerate(model.transformer.h):
            q, k, _ = block.attn.split_heads(block.ln_1(x))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(block.attn.head_size)
            expected = scores.masked_fill(~causal_mask(12), float("-inf")).softmax(-1)[0]
            torch.testing.assert_close(maps[layer], expected)
            x = block(x)


def test_probes_leave_the_model_as_it_was():
    model = make_model()
    ids = torch.tensor([some_ids(10)])
    with torch.no_grad():
        before, _ = model(ids)
    attention_maps(model, ids)
    assert model.hook_points.active == 0 and not model.hook_points.attached_here()  # nothing left attached
    with pytest.raises(RuntimeError, match="boom"), attention_probes(model):
        raise RuntimeError("boom")
    assert model.hook_points.active == 0 and not model.hook_points.attached_here()  # nothing left attached
    with torch.no_grad():
        after, _ = model(ids)
    torch.testing.assert_close(after, before)


def test_probe_path_gives_the_fused_logits():
    model = make_model()
    ids = torch.tensor([some_ids(16)])
    with torch.no_grad():
        fused, _ = model(ids)
        with attention_probes(model) as captured:
            probed, _ = model(ids)
    assert len(captured) == model.config.n_layer
    torch.testing.assert_close(probed, fused, rtol=1e-5, atol=1e-5)


def test_probes_ignore_other_threads():
    """A shared cached model: another visitor's forward pass must not land in my maps."""
    model = make_model()
    ids = torch.tensor([some_ids(6)])
    with torch.no_grad(), attention_probes(model) as captured:
        other = threading.Thread(target=lambda: model(ids))
        other.start()
        other.join()
        assert captured == []
        model(ids)
    assert len(captured) == model.config.n_layer


def test_probes_and_hooks_nest_in_one_thread():
    from toygpt.inspection import residual_stream_hooks

    model = make_model()
    with torch.no_grad(), attention_probes(model) as maps, residual_stream_hooks(model) as stream:
        model(torch.tensor([some_ids(4)]))
    assert len(maps) == model.config.n_layer and len(stream) == model.config.n_layer + 1


def test_attention_distance_known_answers():
    T = 6
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(0, T - 1)] = 1  # every query reads the token before
    uniform = causal_mask(T).float()
    uniform = uniform / uniform.sum(-1, keepdim=True)  # every query reads its prefix evenly
    own = torch.eye(T)
    maps = torch.stack([torch.stack([previous, uniform, own])])  # (1, 3, T, T)
    distance = attention_distance(maps)
    assert distance.shape == (1, 3)
    torch.testing.assert_close(distance[0], torch.tensor([(T - 1) / T, (T - 1) / 4, 0.0]))


def test_mean_attention_distance_of_a_model():
    model = make_model(n_layer=3, n_head=4, n_embd=32)
    distance = mean_attention_distance(model, some_ids(16))
    assert distance.shape == (3, 4)
    assert ((distance >= 0) & (distance <= 15)).all()
    torch.testing.assert_close(distance, attention_distance(attention_maps(model, some_ids(16))))


# --------------------------------------------------------------------------------------------
# Logit lens and residual stream
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_logit_lens_last_layer_is_the_models_prediction(variant):
    model = make_model(**variant)
    ids = some_ids(9)
    lens = logit_lens(model, ids, k=4)
    L = model.config.n_layer
    assert lens.top_ids.shape == lens.top_probs.shape == (L + 1, 9, 4)
    assert lens.next_token_probs.shape == (L + 1, 8)
    assert lens.layer_names == ["embedding"] + [f"block {i}" for i in range(L)]
    with torch.no_grad():
        probs = F.softmax(model(torch.tensor([ids]))[0][0], dim=-1)  # (T, V)
    values, indices = probs.topk(4, dim=-1)
    assert torch.equal(lens.top_ids[-1], indices)
    torch.testing.assert_close(lens.top_probs[-1], values)
    torch.testing.assert_close(lens.next_token_probs[-1], probs[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0])
    assert (lens.top_probs[:, :, :-1] >= lens.top_probs[:, :, 1:]).all()  # best first


def test_logit_lens_early_layers_differ_from_the_last():
    lens = logit_lens(make_model(n_layer=3), some_ids(12), k=1)
    assert not torch.equal(lens.top_ids[0], lens.top_ids[-1])


def test_residual_scaling_keeps_the_stream_from_growing():
    deep = dict(n_layer=8, n_embd=32, n_head=2)
    ids = some_ids(16)
    scaled = residual_stats(GPT(GPTConfig(vocab_size=32, block_size=16, scale_residual_init=True, **deep), seed=0).eval(), ids)
    unscaled = residual_stats(GPT(GPTConfig(vocab_size=32, block_size=16, scale_residual_init=False, **deep), seed=0).eval(), ids)
    assert scaled.norm.shape == scaled.std.shape == (9,)
    assert unscaled.std[-1] / unscaled.std[0] > scaled.std[-1] / scaled.std[0]
    assert unscaled.norm[-1] > scaled.norm[-1]


# --------------------------------------------------------------------------------------------
# Surprisal
# --------------------------------------------------------------------------------------------


def test_surprisal_equals_the_loss():
    model = make_model()
    ids = some_ids(16)
    result = surprisal(model, ids)
    with torch.no_grad():
        logits, loss = model(torch.tensor([ids[:-1]]), targets=torch.tensor([ids[1:]]))
    assert math.isnan(float(result.nats[0]))
    assert result.mean_nats == pytest.approx(float(loss), rel=1e-5)
    expected = -F.log_softmax(logits[0], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    torch.testing.assert_close(result.nats[1:], expected)
    torch.testing.assert_close(result.bits, result.nats / math.log(2), equal_nan=True)


@pytest.mark.parametrize("stride", [1, 5, 8, 16])
def test_surprisal_of_a_long_text_uses_enough_context(stride):
    model = make_model()
    block = model.config.block_size
    ids = some_ids(3 * block + 5, seed=2)
    result = surprisal(model, ids, stride=stride)
    assert result.nats.shape == (len(ids),)
    assert torch.isfinite(result.nats[1:]).all()
    # reference: each token t in the window that first predicts it, read from that window's start
    begin, scored, reference = 0, 1, {}
    while scored < len(ids):
        end = min(begin + block, len(ids) - 1)
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids[begin:end]]))
        for t in range(scored, end + 1):
            assert t - begin >= min(t, block - stride)  # context: at least block - stride tokens
            reference[t] = -float(F.log_softmax(logits[0, t - 1 - begin], -1)[ids[t]])
        scored, begin = end + 1, begin + stride
    torch.testing.assert_close(result.nats[1:], torch.tensor([reference[t] for t in range(1, len(ids))]))


def test_surprisal_of_one_token_and_bad_input():
    model = make_model()
    one = surprisal(model, [3])
    assert one.ids == [3] and math.isnan(one.mean_nats)
    with pytest.raises(ValueError, match="no tokens"):
        surprisal(model, [])
    with pytest.raises(ValueError, match="stride"):
        surprisal(model, [1, 2], stride=0)
    with pytest.raises(ValueError, match=str(MAX_SURPRISAL_TOKENS)):
        surprisal(model, [1] * (MAX_SURPRISAL_TOKENS + 1))


# --------------------------------------------------------------------------------------------
# Forward trace
# --------------------------------------------------------------------------------------------


PRE_LN_BLOCK = ["ln_1", "q/k/v split", "scores", "causal mask", "softmax", "weighted sum", "merge heads", "c_proj",
                "residual add", "ln_2", "MLP up", "GELU", "MLP down", "residual add"]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_trace_shapes_match_the_config(variant):
    model = make_model(**variant)
    c = model.config
    T = 11
    steps = forward_trace(model, some_ids(T))
    by_dims = {"(B, T)": (1, T), "(B, T, C)": (1, T, c.n_embd), "(T, C)": (T, c.n_embd),
               "(3, B, nh, T, hs)": (3, 1, c.n_head, T, c.head_size), "(B, nh, T, T)": (1, c.n_head, T, T),
               "(B, nh, T, hs)": (1, c.n_head, T, c.head_size), "(B, T, 4C)": (1, T, 4 * c.n_embd),
               "(B, T, vocab)": (1, T, c.vocab_size)}  # fmt: skip
    for step in steps:
        assert step.shape == by_dims[step.dims], step.name
        assert callable(step.source) and std_inspect.getsource(step.source)
        assert len(step.sample) <= 8
    names = [s.name for s in steps]
    head = ["token ids", "token embedding lookup"]
    if c.pos_encoding == "sinusoidal":
        head += ["scale by sqrt(n_embd)"]  # as the original Transformer, before adding sinusoids
    if c.pos_encoding != "none":
        head += ["position embedding", "add"]
    assert names[: len(head)] == head
    block_0 = [n.removeprefix("block 0: ") for n in names if n.startswith("block 0: ")]
    if c.norm_position == "pre":
        assert block_0 == PRE_LN_BLOCK
        assert names[-3:] == ["ln_f", "logits", "softmax"]
    else:
        assert block_0[-1] == "ln_2" and "ln_f" not in names
    assert sum(n.startswith(f"block {c.n_layer - 1}: ") for n in names) == len(block_0)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_trace_logits_equal_the_model(variant):
    model = make_model(**variant)
    ids = some_ids(16)
    steps = {s.name: s for s in forward_trace(model, ids, keep_values=True)}
    with torch.no_grad():
        model.set_attention(fused=False)  # same operations as the trace: equal to the last bit
        explicit, _ = model(torch.tensor([ids]))
        model.set_attention(fused=True)
        fused, _ = model(torch.tensor([ids]))
    torch.testing.assert_close(steps["logits"].value, explicit, rtol=0, atol=1e-6)
    torch.testing.assert_close(steps["logits"].value, fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(steps["softmax"].value[0].sum(-1), torch.ones(16))


def test_trace_summaries_and_mask():
    steps = {s.name: s for s in forward_trace(make_model(), some_ids(5))}
    mask = steps["block 0: causal mask"]
    assert mask.summary["masked"] == 2 * (5 * 4 / 2)  # two heads × the 10 cells above the diagonal
    assert math.isfinite(mask.summary["mean"])
    probs = steps["block 0: softmax"]
    assert probs.summary["min"] == 0.0 and probs.summary["max"] <= 1.0
    assert probs.value is None  # values only when asked for
    assert steps["token ids"].sample == [float(i) for i in some_ids(5)]


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def test_nearest_tokens_finds_a_parallel_embedding():
    model = make_model()
    with torch.no_grad():
        model.transformer.wte.weight[7] = 3 * model.transformer.wte.weight[2]  # same direction
    pairs = nearest_tokens(model, 2, k=5)
    assert pairs[0][0] == 7 and pairs[0][1] == pytest.approx(1.0, abs=1e-5)
    assert 2 not in [i for i, _ in pairs] and len(pairs) == 5
    assert [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)
    with pytest.raises(ValueError, match="vocabulary"):
        nearest_tokens(model, 32)


def test_embedding_pca_recovers_a_plane():
    model = make_model(n_embd=16)
    generator = torch.Generator().manual_seed(0)
    plane = torch.randn(32, 2, generator=generator) @ torch.randn(2, 16, generator=generator)
    with torch.no_grad():
        model.transformer.wte.weight.copy_(plane)
    pca = embedding_pca(model)
    assert pca.coords.shape == (32, 2) and pca.ids == list(range(32))
    assert float(pca.explained.sum()) == pytest.approx(1.0, abs=1e-5)  # all variance in 2-D
    centred = plane - plane.mean(0)
    # distances between points survive a projection onto the plane they lie in
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(
        torch.cdist(pca.coords, pca.coords, compute_mode=exact), torch.cdist(centred, centred, compute_mode=exact), rtol=1e-4, atol=1e-4
    )
    again = embedding_pca(model)
    assert torch.equal(pca.coords, again.coords)  # signs are fixed: no flipping between calls
    subset = embedding_pca(model, ids=[5, 3, 3, 9])
    assert subset.ids == [3, 5, 9] and subset.coords.shape == (3, 2)
    with pytest.raises(ValueError, match="2 distinct"):
        embedding_pca(model, ids=[4, 4])


def test_position_similarity_learned_vs_sinusoidal():
    sinusoidal = position_similarity(make_model(pos_encoding="sinusoidal", block_size=32, n_embd=32))
    assert sinusoidal.shape == (32, 32)
    torch.testing.assert_close(torch.diagonal(sinusoidal), torch.ones(32))
    torch.testing.assert_close(sinusoidal, sinusoidal.T)
    assert sinusoidal[10, 11] > sinusoidal[10, 25]  # nearby positions look alike
    learned = position_similarity(make_model())
    assert learned.shape == (16, 16)
    with pytest.raises(ValueError, match="no position encoding"):
        position_similarity(make_model(pos_encoding="none"))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_inputs_are_checked():
    model = make_model()
    with pytest.raises(ValueError, match="crop_context"):
        attention_maps(model, some_ids(17))
    with pytest.raises(ValueError, match="no tokens"):
        forward_trace(model, [])
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        logit_lens(model, [40])
    with pytest.raises(ValueError, match="k=0"):
        logit_lens(model, [1], k=0)
    with pytest.raises(ValueError, match="encode it first"):
        residual_stats(model, "text")


# --------------------------------------------------------------------------------------------
# Hook points: one forward pass read (run_with_cache) or changed (run_with_hooks)
# --------------------------------------------------------------------------------------------


INSIDE_ATTENTION = [dict(pos_encoding="rope"), dict(pos_encoding="alibi", norm_position="post")]


@pytest.mark.parametrize("variant", VARIANTS + INSIDE_ATTENTION, ids=variant_id)
def test_cache_has_every_hook_point_in_the_order_computed(variant):
    model = make_model(**variant)
    _, cache = run_with_cache(model, some_ids(7))
    assert list(cache) == hook_names(model.config)
    T, c = 7, model.config
    assert cache["hook_embed"].shape == (1, T, c.n_embd)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, c.n_head, T, T)
    assert cache["blocks.0.mlp.hook_pre"].shape == (1, T, 4 * c.n_embd)
    assert cache["hook_logits"].shape == (1, T, c.vocab_size)


@pytest.mark.parametrize("variant", VARIANTS + INSIDE_ATTENTION, ids=variant_id)
def test_trace_logits_cache_and_model_are_identical(variant):
    """One forward pass serves all: the trace's values ARE the cache's, which ARE model(idx)."""
    model = make_model(**variant)
    ids = some_ids(13)
    idx = torch.tensor([ids])
    steps = {s.name: s for s in forward_trace(model, ids, keep_values=True)}
    logits, cache = run_with_cache(model, ids)
    assert torch.equal(steps["logits"].value, cache["hook_logits"])
    assert torch.equal(logits, cache["hook_logits"])
    assert torch.equal(steps["block 1: softmax"].value, cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(steps["block 0: MLP up"].value, cache["blocks.0.mlp.hook_pre"])
    with torch.no_grad():
        model.set_attention(fused=False)  # the path a cache of the attention matrix takes
        try:
            explicit, _ = model(idx)
        finally:
            model.set_attention(fused=True)
        fused, _ = model(idx)
    assert torch.equal(logits, explicit)
    # a cache that needs no attention matrix leaves the model on its fused path: the same bits
    stream_logits, stream = run_with_cache(model, ids, ["blocks.0.hook_resid_pre", "hook_ln_f"])
    assert list(stream) == ["blocks.0.hook_resid_pre", "hook_ln_f"]
    assert torch.equal(stream_logits, fused)


def test_replacing_one_heads_pattern_changes_the_logits():
    model = make_model()
    ids = some_ids(10)
    plain, cache = run_with_cache(model, ids)
    seen = {}

    def look_only_at_itself(pattern: torch.Tensor, name: str) -> torch.Tensor:
        pattern = pattern.clone()
        pattern[:, 1] = torch.eye(pattern.shape[-1])  # head 1 attends to its own position only
        return pattern

    def keep(value: torch.Tensor, name: str) -> None:
        seen[name] = value

    hooked = run_with_hooks(model, ids, {"blocks.0.attn.hook_pattern": look_only_at_itself,
                                         "blocks.0.attn.hook_v": keep, "blocks.0.attn.hook_z": keep})  # fmt: skip
    assert (hooked - plain).abs().max() > 1e-3  # the replacement reached the logits
    # and it is what the model used: head 1's output is now each position's own value vector
    torch.testing.assert_close(seen["blocks.0.attn.hook_z"][:, 1], seen["blocks.0.attn.hook_v"][:, 1])
    torch.testing.assert_close(seen["blocks.0.attn.hook_z"][:, 0], cache["blocks.0.attn.hook_z"][:, 0])
    # replacing a value with itself changes nothing
    itself = {f"blocks.{i}.attn.hook_pattern": lambda p, name: p.clone() for i in range(model.config.n_layer)}
    same = run_with_hooks(model, ids, itself)
    assert torch.equal(same, plain)
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([ids]))[0], model(torch.tensor([ids]))[0])
    assert model.hook_points.active == 0


def test_a_hook_in_one_thread_is_not_seen_by_another():
    """A shared cached model: my hooks neither run in, nor change, another visitor's pass."""
    model = make_model()
    idx = torch.tensor([some_ids(9)])
    with torch.no_grad():
        expected, _ = model(idx)
    calls, other = [], {}
    attached, other_done = threading.Event(), threading.Event()

    def ablate(value: torch.Tensor, name: str) -> torch.Tensor:
        calls.append(threading.get_ident())
        return torch.zeros_like(value)

    def visitor() -> None:
        attached.wait(10)
        with torch.no_grad():
            other["logits"], _ = model(idx)
        other["explicit path"] = model.transformer.h[0].attn.hooks_want("hook_pattern")  # as this thread sees it
        other_done.set()

    thread = threading.Thread(target=visitor)
    thread.start()
    with model.hook_points.attach({"blocks.0.attn.hook_pattern": ablate, "hook_logits": ablate}):
        attached.set()
        assert other_done.wait(10)
        with torch.no_grad():
            mine, _ = model(idx)
    thread.join()
    assert torch.equal(other["logits"], expected)  # bit for bit: the other thread kept the fused path
    assert other["explicit path"] is False
    assert calls == [threading.get_ident()] * 2  # only my own pass called my functions
    assert torch.equal(mine, torch.zeros_like(mine))
    assert model.hook_points.active == 0


def test_hook_errors_name_the_fix():
    model = make_model()
    with pytest.raises(ValueError, match="no hook point named 'blocks.9.hook_resid_pre'"):
        run_with_cache(model, some_ids(3), ["blocks.9.hook_resid_pre"])
    with pytest.raises(ValueError, match="no hook point named 'blocks.0.attn.hook_pattern_'"):
        run_with_hooks(model, some_ids(3), {"blocks.0.attn.hook_pattern_": lambda v, n: None})
    with pytest.raises(ValueError, match=r"return None to only read the value, or a tensor of its shape \(1, 3, 16\)"):
        run_with_hooks(model, some_ids(3), {"hook_embed": lambda v, n: v[:, :1]})
    assert model.hook_points.active == 0 and not model.hook_points.attached_here()


def test_a_copied_model_has_its_own_hook_points():
    model = make_model()
    with model.hook_points.attach({"hook_logits": lambda v, n: torch.zeros_like(v)}):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            assert twin(torch.tensor([[1, 2]]))[0].abs().max() > 0
    assert twin.transformer.h[1].attn.hook_points is twin.hook_points is not model.hook_points


@pytest.mark.parametrize("pos_encoding", ["rope", "alibi"])
def test_trace_shows_rope_and_alibi_as_named_steps_with_the_models_values(pos_encoding):
    model = make_model(pos_encoding=pos_encoding)
    ids = some_ids(6)
    steps = forward_trace(model, ids, keep_values=True)
    names = [s.name for s in steps]
    _, cache = run_with_cache(model, ids)
    assert "position embedding" not in names and "add" not in names  # nothing added to the stream
    block_0 = [n.removeprefix("block 0: ") for n in names if n.startswith("block 0: ")]
    by_name = {s.name: s for s in steps}
    if pos_encoding == "rope":
        assert block_0[:3] == ["ln_1", "q/k/v split", "rotate q, k (RoPE)"]
        step = by_name["block 1: rotate q, k (RoPE)"]
        assert step.shape == (2, 1, 2, 6, 8) and step.dims == "(2, B, nh, T, hs)"
        assert torch.equal(step.value[1], cache["blocks.1.attn.hook_rot_k"])
        # a rotation: each query keeps its length
        torch.testing.assert_close(step.value[0].norm(dim=-1), cache["blocks.1.attn.hook_q"].norm(dim=-1))
    else:
        assert block_0[:4] == ["ln_1", "q/k/v split", "ALiBi bias", "scores"]
        step = by_name["block 0: ALiBi bias"]
        assert step.shape == (2, 6, 6) and step.dims == "(nh, T, T)"
        assert step.value[0, 5, 0] == -5 * 2**-4 and step.value[1, 5, 0] == -5 * 2**-8  # 2 heads: 1/16, 1/256
        assert "ALiBi" in by_name["block 0: causal mask"].note
    for step in steps:
        assert callable(step.source) and std_inspect.getsource(step.source)
    with pytest.raises(ValueError, match=f"pos_encoding='{pos_encoding}' adds no position vectors"):
        position_similarity(model)
