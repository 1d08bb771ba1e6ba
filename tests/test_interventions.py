"""Known answers for the interventions: ablation of a head that writes nothing, patching all or
nothing, and a hand-built two-layer model with a previous-token head and an induction head."""

from __future__ import annotations

import math

import pytest
import torch

from toygpt.inspection import residual_stream_names, run_with_cache, run_with_hooks
from toygpt.interventions import (
    ablate_heads,
    ablated_token_losses,
    activation_patching,
    head_output_name,
    induction_score_of,
    induction_scores,
    patched_logits,
    repeated_random_tokens,
    uniform_induction_score,
)
from toygpt.model import GPT, GPTConfig


def tiny_model(seed: int = 0) -> GPT:
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return GPT(config, seed=seed).eval()


def windows(seed: int = 1, n: int = 4, length: int = 12) -> torch.Tensor:
    return torch.randint(11, (n, length + 1), generator=torch.Generator().manual_seed(seed))


# ---- head ablation ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["zero", "mean"])
def test_ablating_a_head_that_writes_nothing_changes_nothing(method):
    model = tiny_model()
    hs = model.config.head_size
    with torch.no_grad():  # block 1, head 0 writes nothing: its input columns of c_proj are zero
        model.transformer.h[1].attn.c_proj.weight[:, 0:hs] = 0.0
    result = ablate_heads(model, windows(), method)
    assert result.loss_change[1, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert (result.loss_change.flatten().abs() > 1e-5).sum() == 3  # every other head does move it
    per_token = ablated_token_losses(model, windows(), 1, 0, method)
    torch.testing.assert_close(per_token, result.base_losses, atol=1e-6, rtol=0)


def test_ablation_change_is_the_ablated_mean_minus_the_base():
    model = tiny_model()
    result = ablate_heads(model, windows(), "zero")
    for layer, head in [(0, 1), (1, 1)]:
        ablated = ablated_token_losses(model, windows(), layer, head, "zero")
        assert result.loss_change[layer, head].item() == pytest.approx(float(ablated.mean() - result.base_losses.mean()), abs=1e-6)
    assert result.base_loss == pytest.approx(float(model(windows()[:, :-1], windows()[:, 1:])[1].detach()), abs=1e-5)
    assert result.top_heads(1)[0][2] == pytest.approx(float(result.loss_change.max()))


def test_zero_ablation_sets_the_heads_output_to_zero():
    model = tiny_model()
    seen = {}
    from toygpt.interventions import ablation_hook

    hook = ablation_hook(1, "zero")
    run_with_hooks(model, windows()[:, :-1], {"blocks.0.attn.hook_z": hook,
                                              "blocks.0.hook_attn_out": lambda v, n: seen.setdefault("out", v)})  # fmt: skip
    _, cache = run_with_cache(model, windows()[:, :-1], ["blocks.0.attn.hook_z"])
    z = cache["blocks.0.attn.hook_z"].clone()
    z[:, 1] = 0
    attn = model.transformer.h[0].attn
    expected = attn.c_proj(z.transpose(1, 2).reshape(*z.shape[:1], z.shape[2], -1))
    torch.testing.assert_close(seen["out"], expected, atol=1e-5, rtol=0)


def test_bad_ablation_requests_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="choose one of"):
        ablate_heads(model, windows(), "half")
    with pytest.raises(ValueError, match="no head"):
        ablated_token_losses(model, windows(), 2, 0)
    with pytest.raises(ValueError, match="at least two tokens"):
        ablate_heads(model, torch.tensor([[3]]))


# ---- activation patching ------------------------------------------------------------------


def prompts():
    clean = [1, 2, 3, 4, 5, 6, 7, 8]
    corrupted = [1, 2, 9, 4, 5, 6, 7, 8]
    return torch.tensor([clean]), torch.tensor([corrupted])


def test_patching_everything_restores_the_clean_logits_and_nothing_leaves_the_corrupted():
    model = tiny_model()
    clean, corrupted = prompts()
    clean_logits, cache = run_with_cache(model, clean)
    corrupted_logits = run_with_hooks(model, corrupted, {})
    everything = dict.fromkeys(cache)  # every hook point, every position
    assert torch.equal(patched_logits(model, corrupted, cache, everything), clean_logits)
    assert torch.equal(patched_logits(model, corrupted, cache, {}), corrupted_logits)
    for name in residual_stream_names(model):  # the whole stream at any one layer is enough
        # (read without attention patterns, so both runs take the fused attention path, bit for bit)
        clean_logits, stream = run_with_cache(model, clean, [name])
        assert torch.equal(patched_logits(model, corrupted, stream, {name: None}), clean_logits)


def test_patching_scores_are_normalised_between_the_two_runs():
    model = tiny_model()
    clean, corrupted = prompts()
    result = activation_patching(model, clean, corrupted, clean_token=3, corrupted_token=5)
    # the whole stream after the last block, at the last position, is all the head reads: 1 exactly
    assert result.residual[-1, -1].item() == pytest.approx(1.0, abs=1e-5)
    assert result.residual[:, :2].abs().max().item() < 1e-5  # before the changed token nothing differs
    assert result.residual[0, 2].item() == pytest.approx(1.0, abs=1e-5)  # the embedding of the change itself
    # patching one head's output = patched_logits on that slice, checked by hand for one head
    _, cache = run_with_cache(model, clean, [head_output_name(1)])

    def only_head_1(value, name):
        value = value.clone()
        value[:, 1] = cache[name][:, 1]
        return value

    logits = run_with_hooks(model, corrupted, {head_output_name(1): only_head_1})
    diff = float(logits[0, -1, 3] - logits[0, -1, 5])
    expected = (diff - result.corrupted_diff) / (result.clean_diff - result.corrupted_diff)
    assert result.heads[1, 1].item() == pytest.approx(expected, abs=1e-4)


def test_patching_refuses_prompts_it_cannot_compare():
    model = tiny_model()
    clean, corrupted = prompts()
    with pytest.raises(ValueError, match="without adding or removing"):
        activation_patching(model, clean, corrupted[:, :-1])
    with pytest.raises(ValueError, match="both prompts predict"):
        activation_patching(model, clean, clean)


# ---- induction heads ----------------------------------------------------------------------

V, P = 8, 16  # vocabulary, positions: channels are [token | position | previous token | prediction]
TOK, POS, PREV, PRED = 0, V, V + P, 2 * V + P
LAMBDA = 20.0


def hand_built_induction_model() -> GPT:
    """Two layers, two heads each, MLPs off. Block 0 head 0 attends to the previous position and
    writes that token into PREV; block 1 head 0 matches the current token against PREV (the
    token before each key), so it attends to the token after the previous occurrence and writes
    it into PRED, which the head reads out. Heads (0, 1) and (1, 1) attend to themselves and write
    nothing. Position 0 has no previous token (head (0, 0) reads itself there), so head (1, 0)
    is told to avoid key 0. LayerNorm only scales and shifts these one-hot codes by constants, so the
    comparisons survive it."""
    config = GPTConfig(vocab_size=V, block_size=P, n_layer=2, n_head=2, n_embd=3 * V + P + 8, tie_embeddings=False)
    model = GPT(config, seed=0)
    C, hs = config.n_embd, config.head_size
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in [model.transformer.ln_f] + [m for b in model.transformer.h for m in (b.ln_1, b.ln_2)]:
            ln.weight.fill_(1.0)
        model.transformer.wte.weight[:, TOK:TOK + V] = torch.eye(V)
        model.transformer.wpe.weight[:, POS:POS + P] = torch.eye(P)
        q = lambda layer, head: model.transformer.h[layer].attn.c_attn.weight[head * hs:(head + 1) * hs]  # noqa: E731
        k = lambda layer, head: model.transformer.h[layer].attn.c_attn.weight[C + head * hs:C + (head + 1) * hs]  # noqa: E731
        v = lambda layer, head: model.transformer.h[layer].attn.c_attn.weight[2 * C + head * hs:2 * C + (head + 1) * hs]  # noqa: E731
        for i in range(P):
            q(0, 0)[i, POS + i] = LAMBDA  # query: my position
            if i + 1 < P:
                k(0, 0)[i + 1, POS + i] = 1.0  # key at j answers query j + 1
            for layer in (0, 1):  # heads (0, 1) and (1, 1): attend to themselves
                q(layer, 1)[i, POS + i] = LAMBDA
                k(layer, 1)[i, POS + i] = 1.0
        for t in range(V):
            v(0, 0)[t, TOK + t] = 1.0  # value: the token at the key
            model.transformer.h[0].attn.c_proj.weight[PREV + t, t] = 1.0  # → PREV
            q(1, 0)[t, TOK + t] = LAMBDA  # query: my token
            k(1, 0)[t, PREV + t] = 1.0  # key: the token before the key
            v(1, 0)[t, TOK + t] = 1.0  # value: the key's own token
            model.transformer.h[1].attn.c_proj.weight[PRED + t, t] = 1.0  # → PRED
            model.lm_head.weight[t, PRED + t] = 10.0
            q(1, 0)[V, TOK + t] = LAMBDA  # every query, whatever its token, ...
        k(1, 0)[V, POS + 0] = -4.0  # ... avoids key 0, whose "previous token" is its own token
    return model.eval()


def test_hand_built_previous_token_head_and_induction_head():
    model = hand_built_induction_model()
    tokens = repeated_random_tokens(V, half=6, batch=16, seed=3)
    _, cache = run_with_cache(model, tokens, ["blocks.0.attn.hook_pattern"])
    previous = cache["blocks.0.attn.hook_pattern"][:, 0]
    assert torch.diagonal(previous, offset=-1, dim1=-2, dim2=-1).min().item() > 0.99  # the construction works
    result = induction_scores(model, tokens)
    assert result.scores[1, 0].item() == pytest.approx(1.0, abs=0.01)
    others = [result.scores[0, 0], result.scores[0, 1], result.scores[1, 1]]
    assert max(float(s) for s in others) < 0.01
    assert result.best_head[:2] == (1, 0)
    assert result.repeated_loss < 0.01  # the repeat is predicted perfectly ...
    assert result.first_half_loss > 1.0  # ... the first half is not
    assert result.loss_drop == pytest.approx(result.first_half_loss - result.repeated_loss)


def attending(T: int, key_of) -> torch.Tensor:
    """A (T, T) attention pattern whose query t puts all its weight on key ``key_of(t)``."""
    pattern = torch.zeros(T, T)
    for t in range(T):
        pattern[t, key_of(t)] = 1.0
    return pattern


@pytest.mark.parametrize("half", [4, 6, 9])
def test_induction_score_of_hand_set_patterns(half):
    """Known answers, patterns set by hand (Olsson et al. 2022; TransformerLens's induction score
    uses the same stripe): a head attending from t in the repeat to t − half + 1, the token after
    the earlier copy, scores 1; a previous-token head, a head on the earlier copy itself, and one
    on the token after that score 0; evenly spread attention scores ``uniform_induction_score``."""
    T = 2 * half
    induction = attending(T, lambda t: t - half + 1 if t >= half else t)
    previous = attending(T, lambda t: max(t - 1, 0))
    same_token = attending(T, lambda t: t - half if t >= half else t)
    one_late = attending(T, lambda t: t - half + 2 if t >= half else t)
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    patterns = torch.stack([induction, previous, same_token, one_late, uniform])[None].expand(3, -1, -1, -1)
    scores = induction_score_of(patterns, half)  # (B, nh, T, T) → (nh,)
    assert scores.shape == (5,)
    assert scores[0].item() == pytest.approx(1.0)
    assert scores[1:4].abs().max().item() == 0.0
    assert scores[4].item() == pytest.approx(uniform_induction_score(half))


def test_a_fixed_distance_head_scores_as_induction_only_at_its_own_half():
    """A head that attends a fixed 5 tokens back, whatever the tokens, matches the induction
    stripe of halves of 6 exactly, and misses it at any other half: one half cannot tell it from
    an induction head, two halves can (why the lab scores each head over two halves)."""
    fixed = attending(16, lambda t: max(t - 5, 0))[None, None]
    assert induction_score_of(fixed[..., :12, :12], 6).item() == pytest.approx(1.0)
    assert induction_score_of(fixed, 8).item() == 0.0
    assert induction_score_of(fixed[..., :10, :10], 5).item() == 0.0


def test_induction_score_of_a_random_model_is_small_and_inputs_are_checked():
    model = tiny_model()
    tokens = repeated_random_tokens(11, half=8, batch=4)
    assert torch.equal(tokens[:, :8], tokens[:, 8:])
    assert all(len(set(row[:8].tolist())) == 8 for row in tokens)  # no repeat within a half
    result = induction_scores(model, tokens)
    assert result.scores.max().item() < 0.3  # untrained attention is near uniform: ≈ 1/t
    assert result.loss_by_position.shape == (15,)
    assert abs(result.first_half_loss - math.log(11)) < 0.5
    with pytest.raises(ValueError, match="repeated once"):
        induction_scores(model, torch.randint(11, (2, 10)))
    with pytest.raises(ValueError, match="block_size"):
        induction_scores(model, repeated_random_tokens(11, half=9))


def test_the_explorer_weighs_a_change_with_the_same_rule_as_the_lab():
    """One 2-standard-error rule (toygpt.certainty) for the explorer's readings and the lab's."""
    from toygpt import certainty
    from toygpt.lessons.interventions import per_token_error, sureness

    changes = torch.tensor([0.1, 0.3, 0.2, 0.4])
    se = per_token_error(changes)
    assert se == pytest.approx(certainty.standard_error([0.1, 0.3, 0.2, 0.4]))
    assert sureness(certainty.CALL_RATIO * se * 1.01, se).startswith("clear")
    assert sureness(certainty.CALL_RATIO * se * 0.99, se).startswith("too close to call")
    assert per_token_error(torch.tensor([0.5])) is None and "single token" in sureness(0.5, None)


def test_a_shifted_induction_score_finds_a_head_that_looks_further_on():
    """``shift`` s moves the key s tokens past the token after the earlier copy: a head attending
    there scores 1 at its shift and 0 at the others; shifts outside 0 .. half − 1 are refused."""
    half = 6
    late = attending(2 * half, lambda t: t - half + 3 if t >= half else t)[None, None]
    assert [induction_score_of(late, half, s).item() for s in range(4)] == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="shift"):
        induction_score_of(late, half, half)
