"""Figures build for tiny and block_size-long inputs; user text is escaped in HTML."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch

from toygpt import viz
from toygpt.inspection import (
    attention_maps,
    embedding_pca,
    forward_trace,
    logit_lens,
    mean_attention_distance,
    nearest_tokens,
    position_similarity,
    residual_stats,
    surprisal,
)
from toygpt.model import GPT, GPTConfig
from toygpt.sample import generate, next_token_distribution
from toygpt.sampling import SamplingConfig


@pytest.fixture(scope="module")
def model() -> GPT:
    return GPT(GPTConfig(vocab_size=20, block_size=24, n_layer=2, n_head=2, n_embd=16), seed=0).eval()


VOCAB_LABELS = [f"t{i}" for i in range(19)] + ["t1"]  # a repeated label, as "e" in real text


def labels_of(ids: list[int]) -> list[str]:
    return [VOCAB_LABELS[i] for i in ids]


def built(fig: go.Figure) -> dict:
    """The figure must be a Figure and must serialise (what st.plotly_chart does with it)."""
    assert isinstance(fig, go.Figure)
    return fig.to_plotly_json()


@pytest.mark.parametrize("T", [1, 3, 24])
def test_every_figure_builds(model, T):
    ids = [i % 20 for i in range(T)]
    labels = labels_of(ids)
    maps = attention_maps(model, ids)
    built(viz.attention_heatmap_figure(maps, labels, layer=1, head=1))
    built(viz.attention_heatmap_figure(maps[0, 0]))
    built(viz.attention_grid_figure(maps, labels))
    built(viz.attention_distance_figure(mean_attention_distance(model, ids)))
    built(viz.logit_lens_figure(logit_lens(model, ids, k=3), labels, VOCAB_LABELS))
    built(viz.logit_lens_figure(logit_lens(model, ids)))
    result = surprisal(model, ids)
    built(viz.surprisal_figure(result, labels))
    assert viz.surprisal_html(labels, result).startswith("<div")
    built(viz.residual_stats_figure(residual_stats(model, ids)))
    built(viz.trace_figure(forward_trace(model, ids)))
    stages = next_token_distribution(model, ids, sampling=SamplingConfig(temperature=0.7, top_k=5, top_p=0.8))
    built(viz.sampling_stages_figure(stages, VOCAB_LABELS, chosen=int(stages.probs.argmax())))
    built(viz.sampling_stages_figure(stages))
    step = next(generate(model, ids, 1, seed=0))
    built(viz.generation_step_figure(step, VOCAB_LABELS))


def test_embedding_and_position_figures(model):
    built(viz.embedding_figure(embedding_pca(model), VOCAB_LABELS))
    built(viz.embedding_figure(embedding_pca(model, ids=[1, 2]), max_text=1))
    built(viz.nearest_tokens_figure(nearest_tokens(model, 3, k=4), VOCAB_LABELS, token="t3"))
    fig = built(viz.position_similarity_figure(position_similarity(model), "learned"))
    assert len(fig["data"][0]["z"]) == 24


def test_repeated_labels_keep_their_positions(model):
    ids = [1, 19, 1, 5]  # ids 1 and 19 are both labelled "t1"
    fig = built(viz.attention_heatmap_figure(attention_maps(model, ids), labels_of(ids)))
    assert fig["layout"]["xaxis"]["ticktext"] == ["t1", "t1", "t1", "t5"]
    assert fig["layout"]["xaxis"]["tickvals"] == [0, 1, 2, 3]
    assert len(fig["data"][0]["z"]) == 4


def test_attention_grid_has_one_panel_per_head_and_crops_long_inputs(model):
    maps = torch.softmax(torch.randn(2, 2, 100, 100), -1)
    fig = built(viz.attention_grid_figure(maps, max_positions=10))
    assert len(fig["data"]) == 4
    assert len(fig["data"][0]["z"]) == 10
    assert "last 10 of 100" in fig["layout"]["title"]["text"]


def test_chosen_token_is_marked(model):
    stages = next_token_distribution(model, [1, 2, 3])
    worst = int(stages.model_probs.argmin())  # not among the top 5: gets an extra bar
    fig = built(viz.sampling_stages_figure(stages, VOCAB_LABELS, chosen=worst, top_n=5))
    assert len(fig["data"]) == 4  # model, temperature, top-k, top-p
    colours = fig["data"][0]["marker"]["color"]
    assert len(colours) == 6 and colours[-1] == viz.CHOSEN_COLOUR and colours.count(viz.CHOSEN_COLOUR) == 1
    assert fig["data"][-1]["y"][-1] == pytest.approx(float(stages.probs[worst]))


def test_label_count_must_match(model):
    maps = attention_maps(model, [1, 2, 3])
    with pytest.raises(ValueError, match="one label per token"):
        viz.attention_heatmap_figure(maps, ["a", "b"])
    with pytest.raises(ValueError, match="one per token"):
        viz.surprisal_html(["a"], [1.0, 2.0])


def test_surprisal_html_escapes_user_text():
    pieces = ["<script>", "alert('x')", "</script>", ' "quoted" & <b>', "\n", "é🙂"]
    page = viz.surprisal_html(pieces, [float("nan"), 1.0, 2.0, 0.0, 3.0, 0.5])
    assert "<script>" not in page and "</script>" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page and "&lt;/script&gt;" in page
    assert "alert(&#x27;x&#x27;)" in page and "&quot;quoted&quot; &amp; &lt;b&gt;" in page
    assert "é🙂" in page and "\n" in page  # text kept as is, whitespace shown by pre-wrap
    assert page.count("<span") == len(pieces)
    assert "rgba(239, 85, 59, 0.850)" in page  # the most surprising token gets full colour
    assert "nothing predicts it" in page  # the first token is left uncoloured


def test_surprisal_html_colours_grow_with_surprisal(model):
    result = surprisal(model, [1, 2, 3, 4])
    page = viz.surprisal_html(["a", "b", "c", "d"], result, max_nats=2 * float(result.nats[1:].max()))
    alphas = [float(part.split(")")[0]) for part in page.split("rgba(239, 85, 59, ")[1:]]
    order = torch.argsort(result.nats[1:]).tolist()
    assert [alphas[i] for i in order] == sorted(alphas)
    assert max(alphas) == pytest.approx(0.85 / 2, abs=1e-3)


def test_loss_curves(model):
    runs = {
        "lr 1e-3": [
            {"step": 0, "train_loss": 3.0, "val_loss": 3.1},
            {"step": 10, "train_loss": 2.5},
            {"step": 20, "train_loss": 2.0, "val_loss": None},
            {"step": 30, "train_loss": float("nan"), "val_loss": 2.2},
        ],
        "lr 3e-3": [{"step": 0, "train_loss": 3.0}, {"step": 10, "train_loss": 1.8}],
        "empty": [],
    }
    fig = built(viz.loss_curves_figure(runs, log_y=True))
    names = [trace["name"] for trace in fig["data"]]
    assert names == ["lr 1e-3 · train", "lr 1e-3 · val", "lr 3e-3 · train"]
    assert list(fig["data"][0]["x"]) == [0, 10, 20] and list(fig["data"][1]["y"]) == [3.1, 2.2]
    assert fig["data"][0]["line"]["color"] == fig["data"][1]["line"]["color"]
    assert fig["data"][1]["line"]["dash"] == "dash"
    assert len(built(viz.loss_curves_figure({}))["data"]) == 0


def test_surprisal_figure_leaves_the_first_token_out(model):
    fig = built(viz.surprisal_figure(surprisal(model, [1, 2, 3])))
    y = fig["data"][0]["y"]
    assert y[0] is None and all(math.isfinite(v) for v in y[1:])


def test_token_labels_helper():
    class Tok:
        def token_label(self, i: int) -> str:
            return f"<{i}>"

    assert viz.token_labels([1, 2]) == ["1", "2"]
    assert viz.token_labels([1, 2], Tok()) == ["<1>", "<2>"]


def test_the_masked_future_is_blank_not_zero(model):
    fig = built(viz.attention_heatmap_figure(attention_maps(model, [1, 2, 3])))
    z = fig["data"][0]["z"]
    assert z[0][1] is None and z[0][2] is None and z[1][2] is None
    assert z[0][0] == pytest.approx(1.0) and all(v is not None for v in z[2])


def test_log_ticks_label_one_two_five_per_decade_or_plain_ends():
    """Case 7 (issue 13): no cluttered minor labels on log axes."""
    assert viz.log_ticks([0.3, 4.0])["ticktext"] == ["0.2", "0.5", "1", "2", "5"]
    assert viz.log_ticks([1e-5, 10])["ticktext"] == ["1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10"]
    assert viz.log_ticks([1.5, 1.7])["ticktext"] == ["1.5", "1.6", "1.7"]  # inside one step
    assert viz.log_ticks([0.0, float("nan")]) == {}


def test_tidy_log_axes_ticks_each_log_axis_from_its_own_data():
    fig = go.Figure([go.Bar(x=[0, 1], y=[0.5, 40.0]), go.Scatter(x=[1, 2], y=[3.0, 4.0], yaxis="y2")])
    fig.update_layout(yaxis=dict(type="log"), yaxis2=dict(type="log", overlaying="y", side="right"),
                      xaxis=dict(type="linear"))
    viz.tidy_log_axes(fig)
    assert list(fig.layout.yaxis.tickvals) == [0.5, 1, 2, 5, 10, 20, 50]
    assert list(fig.layout.yaxis2.ticktext) == ["3", "3.5", "4"]
    assert fig.layout.xaxis.tickvals is None  # linear axes are left alone
