"""AppTest: the explorer's Interventions view on a tiny saved run. Each reading is checked
against the chart data it describes, and the charts against the library run directly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.test_page_explore import figure, make_run, open_explorer, run_model, z_array
from toygpt.interventions import (
    ablate_heads,
    activation_patching,
    induction_scores,
    repeated_random_tokens,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "pretrained"))


def interventions(kind: str):
    at = open_explorer(make_run(), "Interventions")
    at.segmented_control(key="explore_intervention").set_value(kind).run()
    assert not at.exception
    return at


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}") or c.proto.id == key]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return figure(found[0])


def readings(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_head_ablation_heatmap_matches_the_library_and_its_reading():
    at = interventions("Head ablation")
    at.text_area(key="explore_ablation_text").set_value("To be, or not to be: that is it.").run()
    assert not at.exception and not at.error
    model, tokenizer = run_model(at.session_state["active_run"])
    ids = tokenizer.encode("To be, or not to be: that is it.")
    expected = ablate_heads(model, torch.tensor([ids]), "zero")
    heat = chart(at, "explore_ablation_chart")["data"][0]
    np.testing.assert_allclose(z_array(heat), expected.loss_change.numpy(), atol=1e-5)
    layer, head, change = expected.top_heads(1)[0]
    text = readings(at)
    assert f"ablating layer {layer} head {head} raised the loss most: by {change:+.3f}" in text
    assert f"On these {len(ids) - 1} predictions (loss {expected.base_loss:.3f}" in text
    assert ("too close to call" in text) or ("clear:" in text)
    # the chosen head's bars are the same numbers as the table's changes, and the heatmap's cell
    bars = chart(at, "explore_ablation_tokens_chart")["data"][0]
    mean_bar = float(np.mean(bars["y"] if isinstance(bars["y"], list) else z_array({"z": bars["y"]})))
    assert f"Layer {layer} head {head} (chosen below): {mean_bar:+.3f}" in text
    assert mean_bar == pytest.approx(change, abs=1e-4)
    # choosing another head redraws the bars for it
    other = next(lh for lh in [(0, 0), (0, 1), (1, 0), (1, 1)] if lh != (layer, head))
    at.selectbox(key="explore_ablation_head").set_value(other).run()
    text = readings(at)
    assert f"Layer {other[0]} head {other[1]} (chosen below): {float(expected.loss_change[other]):+.3f}" in text
    at.radio(key="explore_ablation_method").set_value("mean").run()
    assert not at.exception and "mean-ablating" in readings(at)


def test_activation_patching_heatmaps_and_reading_match_the_library():
    at = interventions("Activation patching")
    assert any("Type the token" in i.value for i in at.info)
    at.text_area(key="explore_prompt").set_value("abcdefgh").run()
    at.selectbox(key="explore_patch_position").set_value(6).run()
    at.text_input(key="explore_patch_with").set_value("Z").run()
    at.text_input(key="explore_patch_clean").set_value("x").run()
    at.text_input(key="explore_patch_corrupted").set_value("y").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    model, tokenizer = run_model(at.session_state["active_run"])
    clean = tokenizer.encode("abcdefgh")
    corrupted = list(clean)
    corrupted[6] = tokenizer.encode("Z")[0]
    expected = activation_patching(model, clean, corrupted, tokenizer.encode("x")[0], tokenizer.encode("y")[0])
    stream = z_array(chart(at, "explore_patch_stream_chart")["data"][0])
    np.testing.assert_allclose(stream, expected.residual.numpy(), atol=1e-4)
    heads = z_array(chart(at, "explore_patch_heads_chart")["data"][0])
    np.testing.assert_allclose(heads, expected.heads.numpy(), atol=1e-4)
    text = readings(at)
    assert f"by {expected.clean_diff:.2f} logits, the corrupted one by {expected.corrupted_diff:.2f}" in text
    best = int(stream[0].argmax())
    assert f"Patching the stream embedding restores most at position {best}" in text
    assert f"{stream[0, best]:.2f}." in text
    assert best == 6  # before the model mixes positions, only the changed token's own stream matters
    layer, head = np.unravel_index(heads.argmax(), heads.shape)
    assert f"layer {layer} head {head}" in text


def test_patching_the_same_token_says_there_is_nothing_to_restore():
    at = interventions("Activation patching")
    at.text_area(key="explore_prompt").set_value("abcd").run()
    at.selectbox(key="explore_patch_position").set_value(1).run()
    at.text_input(key="explore_patch_with").set_value("b").run()  # the token already there
    assert any("Nothing to patch" in e.value for e in at.error)
    at.text_input(key="explore_patch_with").set_value("bc").run()
    assert any("is 2 tokens" in e.value for e in at.error)


def test_induction_scores_match_the_library_and_the_reading_names_the_best_head():
    at = interventions("Induction heads")
    at.slider(key="explore_induction_half").set_value(8).run()
    at.number_input(key="explore_induction_sequences").set_value(4).run()
    assert not at.exception and not at.error
    model, _ = run_model(at.session_state["active_run"])
    expected = induction_scores(model, repeated_random_tokens(model.config.vocab_size, 8, 4, seed=0))
    heat = z_array(chart(at, "explore_induction_chart")["data"][0])
    np.testing.assert_allclose(heat, expected.scores.numpy(), atol=1e-5)
    layer, head = np.unravel_index(heat.argmax(), heat.shape)
    text = readings(at)
    assert f"best induction head is layer {layer} head {head}, scoring {heat.max():.2f}" in text
    losses = chart(at, "explore_induction_loss_chart")["data"][0]["y"]
    first, repeated = np.mean(losses[:7]), np.mean(losses[8:])
    assert f"{first:.2f} nats/token on the first half and {repeated:.2f}" in text
    # an untrained model copies nothing: four sequences cannot tell its drop from noise
    assert re.search(r"too close to call|clear", text)
