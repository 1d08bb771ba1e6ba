"""The walkthrough's computations: sizes, the diagram, the drawable trace and the concept demos."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toygpt.formatting import human_bytes, human_count
from toygpt.inspection import forward_trace, residual_stats
from toygpt.lessons.walkthrough import (
    cosine_similarity_matrix,
    future_change,
    init_residual_comparison,
    memory_estimate,
    output_distribution,
    parameter_tree,
    parameter_treemap_figure,
    part_figures,
    positions_at_init,
    residual_comparison_figure,
    sequence_mixing,
    shares_embedding,
    stack_dot,
    step_matrix,
    trace_parts,
    trace_table,
    tying_saving,
)
from toygpt.model import GPT, GPTConfig, preset, total_parameters

TINY = dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16)
VARIANTS = [
    dict(),
    dict(norm_position="post"),
    dict(pos_encoding="sinusoidal", tie_embeddings=False),
    dict(pos_encoding="none", bias=False, scale_residual_init=False),
]



def tiny(**overrides) -> GPTConfig:
    return GPTConfig(**{**TINY, **overrides})


# --------------------------------------------------------------------------------------------
# Size and cost
# --------------------------------------------------------------------------------------------

configs = st.builds(
    lambda layers, heads, width, tie, norm, pos, bias: GPTConfig(
        vocab_size=50, block_size=8, n_layer=layers, n_head=heads, n_embd=2 * heads * width,
        tie_embeddings=tie, norm_position=norm, pos_encoding=pos, bias=bias),
    st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.booleans(),
    st.sampled_from(["pre", "post"]), st.sampled_from(["learned", "sinusoidal", "none"]), st.booleans(),
)  # fmt: skip


@given(configs)
@settings(max_examples=40, deadline=None)
def test_parameter_tree_adds_up_to_the_model(config):
    tree = parameter_tree(config)
    by_id = {node["id"]: node for node in tree}
    assert by_id["GPT"]["params"] == total_parameters(config) == sum(p.numel() for p in GPT(config).parameters())
    for node in tree:
        children = [child["params"] for child in tree if child["parent"] == node["id"]]
        assert node["params"] >= 0
        if children:
            assert sum(children) == node["params"], node["id"]
    assert ("lm_head" in by_id) != config.tie_embeddings


def test_memory_and_tying_known_answers():
    gpt2 = preset("gpt2")
    memory = memory_estimate(gpt2)
    assert memory.params == 124_439_808
    assert memory.weights == 4 * 124_439_808 and memory.training == 4 * memory.weights
    assert memory_estimate(gpt2, bytes_per_value=2).weights == 2 * 124_439_808
    saving = tying_saving(gpt2)
    assert saving.saved == 50257 * 768 and saving.tied == 124_439_808
    assert saving.share == pytest.approx(38_597_376 / 163_037_184)
    with pytest.raises(ValueError, match="bytes_per_value"):
        memory_estimate(gpt2, bytes_per_value=3)


def test_human_numbers():
    assert human_bytes(512) == "512 B"
    assert human_bytes(3_239_424) == "3.09 MiB"
    assert human_bytes(2 * 1024**4 * 1024) == "2.05e+03 TiB"
    assert human_count(999) == "999" and human_count(1_234_567) == "1.23 M" and human_count(85e9) == "85 G"


def test_shares_embedding_sees_the_tie():
    assert shares_embedding(GPT(tiny(), seed=0))
    assert not shares_embedding(GPT(tiny(tie_embeddings=False), seed=0))


# --------------------------------------------------------------------------------------------
# The diagram
# --------------------------------------------------------------------------------------------


def dot_graph(dot: str) -> tuple[set[str], list[tuple[str, str]]]:
    nodes = set(re.findall(r"^\s+(\w+) \[label=", dot, flags=re.M))
    edges = re.findall(r"^\s+(\w+) -> (\w+)", dot, flags=re.M)
    return nodes, edges


@pytest.mark.parametrize("overrides", [*VARIANTS, dict(n_layer=1), dict(n_layer=12)])
def test_stack_dot_follows_the_config(overrides):
    config = tiny(**overrides)
    dot = stack_dot(config)
    nodes, edges = dot_graph(dot)
    assert dot.count("{") == dot.count("}")
    assert {a for a, _ in edges} | {b for _, b in edges} <= nodes, "every edge joins declared nodes"
    drawn = min(config.n_layer, 3)
    assert dot.count("subgraph cluster_") == drawn
    assert f'label="block {config.n_layer - 1}"' in dot
    assert ("more" in nodes) == (config.n_layer > 3)
    assert ("ln_f" in nodes) == (config.norm_position == "pre")
    assert ("same matrix (tied)" in dot) == config.tie_embeddings
    assert ("wpe: learned" in dot) == (config.pos_encoding == "learned")
    assert ("sinusoidal positions" in dot) == (config.pos_encoding == "sinusoidal")
    last = f"b{config.n_layer - 1}_"
    if config.norm_position == "pre":
        assert ("b0_ln1", "b0_attn") in edges and (last + "add2", "ln_f") in edges
    else:  # the norm comes after the residual add
        assert ("b0_attn", "b0_add1") in edges and ("b0_add1", "b0_ln1") in edges and (last + "ln2", "lm_head") in edges
    if config.n_layer == 2:
        assert ("b0_add2", "b1_ln1") in edges or ("b0_ln2", "b1_attn") in edges, "block 0 feeds block 1"
    with pytest.raises(ValueError, match="max_blocks"):
        stack_dot(config, max_blocks=1)


# --------------------------------------------------------------------------------------------
# The trace, drawable
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", VARIANTS)
def test_trace_parts_table_and_matrices(overrides):
    model = GPT(tiny(**overrides), seed=0).eval()
    ids = [3, 1, 4, 1, 5, 9]
    steps = forward_trace(model, ids, keep_values=True)
    parts = trace_parts(steps)
    assert [name for name, _ in parts] == ["embeddings", "block 0", "block 1", "output head"]
    assert [i for _, indices in parts for i in indices] == list(range(len(steps)))
    assert [row["shape"] for row in trace_table(steps)] == [" × ".join(map(str, s.shape)) for s in steps]
    by_name = {step.name: step for step in steps}
    T, C, hs = len(ids), model.config.n_embd, model.config.head_size
    assert step_matrix(by_name["block 0: scores"], head=1).values.shape == (T, T)
    assert step_matrix(by_name["block 0: q/k/v split"], head=1).values.shape == (T, 3 * hs)
    qkv = by_name["block 1: q/k/v split"]
    assert torch.equal(step_matrix(qkv, head=1).values[:, :hs], qkv.value[0, 0, 1])  # q of head 1
    cut = step_matrix(qkv, head=1, max_cols=3)  # each of q, k, v cut alike, so v stays visible
    assert cut.values.shape == (T, 9) and torch.equal(cut.values[:, 6:], qkv.value[2, 0, 1, :, :3])
    assert "first 3 of 8 channels each" in cut.caption
    assert step_matrix(by_name["logits"]).values.shape == (T, 32)
    assert step_matrix(by_name["logits"], max_cols=10).values.shape == (T, 10)
    assert step_matrix(by_name["token ids"]).values.tolist() == [[float(i) for i in ids]]
    masked = step_matrix(by_name["block 0: causal mask"]).values
    assert torch.isinf(masked).sum() == T * (T - 1) // 2
    if "ln_f" in by_name:
        assert step_matrix(by_name["ln_f"]).values.shape == (T, C)
    with pytest.raises(ValueError, match="head=2"):
        step_matrix(by_name["block 0: scores"], head=2)
    figures = part_figures(steps, "block 1", head=1)
    assert set(figures) == set(dict(parts)["block 1"]) | {"attention"}
    assert "attention" not in part_figures(steps, "embeddings")
    with pytest.raises(ValueError, match="block 7"):
        part_figures(steps, "block 7")


def test_step_matrix_needs_kept_values():
    steps = forward_trace(GPT(tiny(), seed=0).eval(), [1, 2, 3])
    with pytest.raises(ValueError, match="keep_values=True"):
        step_matrix(steps[0])


# --------------------------------------------------------------------------------------------
# Concept demos
# --------------------------------------------------------------------------------------------


def test_sequence_mixing_rnn_fades_attention_does_not():
    mixing = sequence_mixing(length=12, width=8, seed=3)
    for matrix in (mixing.rnn, mixing.attention):
        assert torch.all(matrix.triu(diagonal=1) == 0), "no output depends on a later input"
        assert torch.allclose(matrix.amax(dim=1), torch.ones(12))
    assert mixing.rnn[-1, 0] < 0.1 < mixing.attention[-1, 0]
    assert mixing.rnn[-1, 0] < mixing.rnn[-1, 5] < mixing.rnn[-1, 10], "influence fades with distance"
    assert (mixing.rnn_sequential_steps, mixing.attention_sequential_steps) == (12, 1)
    assert torch.equal(sequence_mixing(length=12, width=8, seed=3).rnn, mixing.rnn)
    with pytest.raises(ValueError, match="length"):
        sequence_mixing(length=1)
    with pytest.raises(ValueError, match="recurrent_gain"):
        sequence_mixing(recurrent_gain=0)


@pytest.mark.parametrize("overrides", VARIANTS)
@given(data=st.data())
@settings(max_examples=10, deadline=None)
def test_changing_a_later_token_leaves_earlier_outputs_alone(overrides, data):
    model = GPT(tiny(**overrides), seed=1).eval()
    with torch.no_grad():  # bigger weights than init, so a change shows clearly downstream
        for weight in model.parameters():
            weight.mul_(5)
    ids = data.draw(st.lists(st.integers(0, 31), min_size=2, max_size=16))
    position = data.draw(st.integers(0, len(ids) - 1))
    new_id = (ids[position] + data.draw(st.integers(1, 31))) % 32
    result = future_change(model, ids, position, new_id)
    assert result.change.shape == (len(ids),)
    assert result.largest_change_before == 0.0
    assert result.change[position] > 1e-4
    assert result.changed_ids[position] == new_id and result.ids == ids


def test_future_change_rejects_what_shows_nothing():
    model = GPT(tiny(), seed=0).eval()
    with pytest.raises(ValueError, match="already holds"):
        future_change(model, [1, 2, 3], 1, 2)
    with pytest.raises(ValueError, match="position"):
        future_change(model, [1, 2, 3], 3, 0)
    with pytest.raises(ValueError, match="vocabulary"):
        future_change(model, [1, 2, 3], 0, 32)


def fresh_stats(config: GPTConfig, seed: int, n_tokens: int, **variant) -> torch.Tensor:
    """What init_residual_comparison promises each variant equals: a fresh GPT of that variant."""
    small = config.replace(vocab_size=min(config.vocab_size, 1024), block_size=min(config.block_size, n_tokens), **variant)
    ids = torch.randint(0, small.vocab_size, (min(n_tokens, small.block_size),), generator=torch.Generator().manual_seed(seed))
    return residual_stats(GPT(small, seed=seed).eval(), ids.tolist())


def test_init_comparison_equals_fresh_models_of_each_variant():
    config = tiny(n_layer=6, vocab_size=2000)
    stats = init_residual_comparison(config, seed=4, n_tokens=12)
    assert list(stats) == ["pre-LN, scaled init (GPT-2)", "post-LN, scaled init (GPT-2)",
                           "pre-LN, plain 0.02 init", "post-LN, plain 0.02 init"]  # fmt: skip
    for key, variant in {
        "pre-LN, scaled init (GPT-2)": dict(),
        "post-LN, scaled init (GPT-2)": dict(norm_position="post"),
        "pre-LN, plain 0.02 init": dict(scale_residual_init=False),
        "post-LN, plain 0.02 init": dict(norm_position="post", scale_residual_init=False),
    }.items():
        expected = fresh_stats(config, 4, 12, **variant)
        assert torch.allclose(stats[key].std, expected.std, rtol=1e-4), key
        assert torch.allclose(stats[key].norm, expected.norm, rtol=1e-4), key


def test_init_comparison_shows_what_the_cards_claim():
    stats = init_residual_comparison(preset("small", vocab_size=65, n_layer=8), seed=0)
    scaled, plain = stats["pre-LN, scaled init (GPT-2)"].std, stats["pre-LN, plain 0.02 init"].std
    assert plain[-1] > 1.5 * scaled[-1], "without the scaling the stream grows faster with depth"
    assert torch.all(scaled[1:] > scaled[:-1]), "pre-LN: every block adds to the stream"
    post = stats["post-LN, scaled init (GPT-2)"]
    assert torch.allclose(post.norm[1:], torch.full((8,), math.sqrt(128)), rtol=1e-3), "post-LN resets the size"
    figure = residual_comparison_figure(stats, "norm", log_y=True)
    assert len(figure.data) == 4 and figure.layout.yaxis.type == "log"
    ticks = figure.layout.yaxis.tickvals
    norms = torch.cat([result.norm for result in stats.values()])
    assert ticks[0] <= float(norms.min()) and ticks[-1] >= float(norms.max()), "the ticks span every line"
    with pytest.raises(ValueError, match="field"):
        residual_comparison_figure(stats, "mean")
    with pytest.raises(ValueError, match="too long"):
        init_residual_comparison(GPTConfig(n_layer=96, n_head=96, n_embd=12288, vocab_size=50257))
    with pytest.raises(ValueError, match="n_tokens"):
        init_residual_comparison(tiny(), n_tokens=0)


def test_position_similarities():
    tables = positions_at_init(block_size=300, n_embd=32, seed=0)
    assert list(tables) == ["sinusoidal (fixed)", "learned, at init"]
    for similarity in tables.values():
        assert similarity.shape == (128, 128)
        assert torch.allclose(similarity.diagonal(), torch.ones(128), atol=1e-5)
        assert torch.allclose(similarity, similarity.T, atol=1e-6)
    neighbours = {name: float(sim.diagonal(offset=1).mean()) for name, sim in tables.items()}
    assert neighbours["sinusoidal (fixed)"] > 0.8 > 0.3 > abs(neighbours["learned, at init"])
    assert list(positions_at_init(16, 15)) == ["learned, at init"], "sin/cos pairs need an even width"
    with pytest.raises(ValueError, match="table"):
        cosine_similarity_matrix(torch.zeros(3))


def test_output_distribution_is_the_softmax_of_the_last_position():
    model = GPT(tiny(), seed=2).eval()
    ids = [5, 6, 7, 8]
    result = output_distribution(model, ids, k=5)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids]))[0][0, -1].double(), dim=-1)
    assert result.total == pytest.approx(1.0, abs=1e-6)
    assert result.top_ids == probs.topk(5).indices.tolist()
    assert result.top_probs == sorted(result.top_probs, reverse=True)
    assert 0 < result.entropy_nats <= result.uniform_entropy_nats == pytest.approx(math.log(32))
    with pytest.raises(ValueError, match="k="):
        output_distribution(model, ids, k=0)
    with pytest.raises(ValueError, match="no tokens"):
        output_distribution(model, [], k=3)


def test_treemap_figure_matches_the_tree():
    config = preset("small", vocab_size=65)
    trace = parameter_treemap_figure(config).data[0]
    assert trace.values[0] == total_parameters(config) and trace.branchvalues == "total"


@pytest.mark.parametrize("pos_encoding,words", [("rope", "q and k are turned"), ("alibi", "−slope × distance")])
def test_diagram_says_where_rope_and_alibi_act(pos_encoding, words):
    dot = stack_dot(tiny(pos_encoding=pos_encoding))
    assert words in dot and "sinusoidal positions" not in dot and "wpe: learned" not in dot
    assert ("RoPE on q, k" in dot) == (pos_encoding == "rope") and ("ALiBi bias on scores" in dot) == (pos_encoding == "alibi")
