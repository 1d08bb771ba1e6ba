"""AppTest of the Architecture page: config → counts, invalid configs explained, the forward
trace of the active model, and every concept card, with and without a model."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import pages._shared as shared
from toygpt.checkpoint import save_checkpoint
from toygpt.inspection import forward_trace
from toygpt.model import GPT, GPTConfig, preset, total_parameters
from toygpt.tokenizers import CharTokenizer

PAGE = "pages/architecture.py"
CORPUS = "ROMEO:\nBut soft, what light through yonder window breaks? xyz e"
CARDS = ["Attention vs RNN", "Masked attention", "Pre-LN vs post-LN", "Residual init",
         "Positions", "Embeddings", "Weight tying", "Output head"]  # fmt: skip


def open_page(session: dict | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=60)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def chart(at: AppTest, title: str) -> dict:
    """The plotly figure (as JSON) whose title contains ``title``."""
    figures = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return next(f for f in figures if title in f["layout"].get("title", {}).get("text", ""))


def cells(z) -> np.ndarray:
    """A heatmap's z from figure JSON: plotly writes numpy arrays as base64 typed arrays."""
    if isinstance(z, dict):
        data = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
        return data.reshape([int(n) for n in str(z["shape"]).split(",")])
    return np.array(z, dtype=float)


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A saved 2-layer char model, made the active model of the sidebar."""
    tokenizer = CharTokenizer.from_text(CORPUS)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    path = save_checkpoint(tmp_path / "runs" / "tiny-arch", GPT(config, seed=0), tokenizer.to_dict())
    monkeypatch.setattr(shared, "model_choices", lambda: {"tiny-arch": ("tiny-arch (test)", path)})
    return path, tokenizer, config


@pytest.fixture
def no_models(monkeypatch):
    """No run and no demo model (the shipped demo may exist in the checkout)."""
    monkeypatch.setattr(shared, "model_choices", lambda: {})


def test_renders_without_a_model_and_explains(no_models):
    at = open_page()
    assert metric(at, "Parameters") == f"{total_parameters(preset('small', vocab_size=65)):,}"
    assert at.get("graphviz_chart"), "the stack diagram is drawn"
    # no trained model: the trace follows an untrained model of the config, and says so
    assert at.radio(key="arch_trace_source").value == "shaped"
    assert any("an **untrained** model of the shaped config (4 blocks" in m.value for m in at.markdown)


def trace_table(at: AppTest):
    return next(df.value for df in at.dataframe if "dims" in df.value.columns)


def test_the_trace_follows_the_shaped_config_and_the_preset_box_says_custom(tiny_run):
    """Case 2 (issue 13): after shaping 6 layers × 8 heads × 256, post-LN, the trace still
    showed the sidebar model and the Preset box still said "small"."""
    path, tokenizer, config = tiny_run
    at = open_page({"active_run": "tiny-arch"})
    assert at.radio(key="arch_trace_source").value == "sidebar"  # a trained model is active
    for key, value in (("arch_n_layer", 6), ("arch_n_head", 8), ("arch_n_embd", 256)):
        at.number_input(key=key).set_value(value).run()
    at.radio(key="arch_norm_position").set_value("post").run()
    assert not at.exception
    assert at.selectbox(key="arch_preset").value == "custom"
    assert at.radio(key="arch_trace_source").value == "shaped"  # it follows what was just shaped
    shaped = preset("small", vocab_size=65).replace(n_layer=6, n_head=8, n_embd=256, norm_position="post")
    ids = tokenizer.encode(at.text_area(key="arch_prompt").value)  # the sidebar model's tokenizer fits V=65
    expected = forward_trace(GPT(shaped, seed=0).eval(), ids)
    table = trace_table(at)
    assert list(table["name"]) == [step.name for step in expected]
    assert list(table["shape"]) == [" × ".join(map(str, step.shape)) for step in expected]
    assert any("untrained** model of the shaped config (6 blocks × 8 heads × 256, post-LN" in m.value
               for m in at.markdown)  # fmt: skip
    at.radio(key="arch_trace_source").set_value("sidebar").run()  # the other choice, visible
    assert list(trace_table(at)["name"]) == [s.name for s in forward_trace(GPT(config, seed=0).eval(), ids)]
    at.selectbox(key="arch_preset").select("nano").run()
    assert at.selectbox(key="arch_preset").value == "nano" and at.number_input(key="arch_n_layer").value == 2


def test_changing_the_config_updates_the_counts():
    at = open_page()
    at.number_input(key="arch_n_layer").set_value(6).run()
    expected = preset("small", vocab_size=65, n_layer=6)
    assert metric(at, "Parameters") == f"{total_parameters(expected):,}"
    at.checkbox(key="arch_tie").uncheck().run()
    assert metric(at, "Parameters") == f"{total_parameters(expected.replace(tie_embeddings=False)):,}"
    assert "block 5" in at.get("graphviz_chart")[0].proto.spec
    at.selectbox(key="arch_preset").select("gpt2").run()
    assert not at.exception
    assert metric(at, "Parameters") == "124,439,808"  # the preset resets every knob
    treemap = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert treemap["type"] == "treemap" and treemap["values"][0] == 124_439_808


def test_an_invalid_config_shows_the_message_not_a_traceback():
    at = open_page()
    at.number_input(key="arch_n_head").set_value(3).run()
    at.number_input(key="arch_n_embd").set_value(100).run()
    assert not at.exception
    assert any("not divisible" in e.value and "n_embd=99" in e.value for e in at.error)
    assert not [m for m in at.metric if m.label == "Parameters"], "no counts for an impossible config"
    at.number_input(key="arch_n_embd").set_value(102).run()
    assert not at.error and metric(at, "Parameters")


def test_the_trace_follows_the_active_model(tiny_run):
    path, tokenizer, config = tiny_run
    at = open_page({"active_run": "tiny-arch"})
    prompt = at.text_area(key="arch_prompt").value
    ids = tokenizer.encode(prompt)
    expected = forward_trace(GPT(config, seed=0).eval(), ids)
    table = next(df.value for df in at.dataframe if "dims" in df.value.columns)  # the trace table
    assert list(table["name"]) == [step.name for step in expected]
    assert list(table["shape"]) == [" × ".join(map(str, step.shape)) for step in expected]
    scores = table[table["name"] == "block 0: scores"]["shape"].item()
    assert scores == f"1 × {config.n_head} × {len(ids)} × {len(ids)}"
    at.radio(key="arch_trace_part").set_value("block 1").run()
    assert not at.exception
    stages = chart(at, "before the mask, after it, after softmax")
    masked = cells(stages["data"][1]["z"])
    assert np.isnan(masked[0, 1]) and np.isfinite(masked[1, 0]), "the future is blank (-inf)"
    assert np.isfinite(masked).sum() == len(ids) * (len(ids) + 1) // 2


def test_a_prompt_the_tokenizer_cannot_encode_is_explained(tiny_run):
    at = open_page({"active_run": "tiny-arch"})
    at.text_area(key="arch_prompt").input("Ω unknown ☃").run()
    assert not at.exception
    assert any("cannot encode" in e.value for e in at.error)
    at.text_area(key="arch_prompt").input("").run()
    assert not at.exception and any("Type a prompt" in w.value for w in at.warning)
    at.text_area(key="arch_prompt").input("soft " * 40_000).run()  # a 200 kB paste
    assert not at.exception
    assert any("only the first 100,000 are used" in w.value for w in at.warning)
    assert any("the trace follows the first 32" in i.value for i in at.info)  # block_size=32
    table = next(df.value for df in at.dataframe if "dims" in df.value.columns)
    assert table["shape"].iloc[0] == "1 × 32"


@pytest.mark.parametrize("with_model", [False, True])
def test_every_concept_card_renders(tiny_run, monkeypatch, with_model):
    if not with_model:
        monkeypatch.setattr(shared, "model_choices", lambda: {})
    at = open_page({"active_run": "tiny-arch"} if with_model else None)
    for card in CARDS:
        at.session_state["arch_card"] = card
        at.run()
        assert not at.exception, (card, [e.value for e in at.exception])
        if not with_model and card in ("Masked attention", "Embeddings", "Output head"):
            assert any("pick a model" in info.value for info in at.info), card


def test_masked_attention_card_shows_earlier_positions_do_not_move(tiny_run):
    at = open_page({"active_run": "tiny-arch", "arch_card": "Masked attention"})
    at.slider(key="arch_mask_position").set_value(5).run()
    assert any("Positions 0–4: largest logit change 0 " in s.value for s in at.success)
    change = chart(at, "which outputs move?")["data"][0]["y"]
    assert change[:5] == [0.0] * 5 and change[5] > 0
    at.text_input(key="arch_mask_token").input("xy").run()
    assert any("exactly one token" in w.value for w in at.warning)


def test_output_head_card_is_a_distribution(tiny_run):
    at = open_page({"active_run": "tiny-arch", "arch_card": "Output head"})
    assert abs(float(metric(at, "Sum of all probabilities")) - 1.0) < 1e-5
    assert metric(at, "A uniform guess") == f"{torch.log(torch.tensor(float(tiny_run[2].vocab_size))):.2f} nats"


@pytest.mark.parametrize("encoding", ["rope", "alibi"])
def test_rope_and_alibi_can_be_chosen_and_counted(no_models, encoding):
    at = open_page()
    before = metric(at, "Parameters")
    at.selectbox(key="arch_pos_encoding").select(encoding).run()
    assert not at.exception and not at.error
    assert metric(at, "Parameters") != before  # no wpe table: fewer parameters than learned positions
