"""AppTest: the sampling & attention explorer, driven through its widgets on a tiny saved run.

The run is made here (a char vocabulary, a 2-layer model, three int8 snapshots) in the per-test
runs folder, and picked the way the sidebar picks it (``st.session_state["active_run"]``).
Every check compares the page with the library computing the same thing directly.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import string

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import toygpt.pretrained as pretrained_module
import toygpt.runs as runs_module
import toygpt.tokenizers as tokenizers_module
import toygpt.tokenizers.tiktoken_ as tiktoken_module
from toygpt import viz
from toygpt.checkpoint import save_tensors, write_json_atomic
from toygpt.hf_format import config_to_hf, toygpt_to_hf_state_dict
from toygpt.inspection import attention_maps
from toygpt.lessons.explore import GRID_GAP
from toygpt.model import GPT, GPTConfig
from toygpt.runs import create_run, open_run, snapshot_name, snapshot_tensors
from toygpt.sample import encode_prompt, generate, generate_text
from toygpt.sampling import SamplingConfig
from toygpt.tokenizers import ByteTokenizer, CharTokenizer, TokenizerUnavailable
from toygpt.train import TrainConfig

CORPUS = string.ascii_letters + string.digits + " \n.,:;'!?-<>&"
SNAPSHOTS = (0, 50, 200)


def make_run(snapshots: tuple[int, ...] = SNAPSHOTS) -> str:
    """A finished run whose snapshot i has weights GPT(seed=i) and val loss 4 - i."""
    tokenizer = CharTokenizer.from_text(CORPUS)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    run = create_run(name="explore test", corpus="test", tokenizer_spec="char", tokenizer=tokenizer,
                     model=GPT(config, seed=0), train_config=TrainConfig(max_steps=200))  # fmt: skip
    shutil.rmtree(run.path / "snapshots", ignore_errors=True)  # create_run keeps step 0; start bare
    for i, step in enumerate(snapshots):
        save_tensors(run.path / "snapshots" / snapshot_name(step), snapshot_tensors(GPT(config, seed=i)))
        run.on_event({"type": "eval", "step": step, "val_loss": 4.0 - i, "train_loss": 4.0 - i})
    run.update_info(status="finished")
    return run.id


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the network: GPT-2 and tiktoken must answer from local state."""
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))


@pytest.fixture
def run_id() -> str:
    return make_run()


def open_explorer(run_id: str | None, view: str | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=30)
    if run_id is not None:
        at.session_state["active_run"] = run_id
    at.run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception
    if view is not None:
        at.segmented_control(key="explore_view").set_value(view).run()
        assert not at.exception
    return at


def run_model(run_id: str) -> tuple[GPT, CharTokenizer]:
    loaded = open_run(run_id).load_model("latest")
    return loaded.model, CharTokenizer.from_dict(loaded.tokenizer)


def figure(chart) -> dict:
    return json.loads(chart.proto.spec)


def z_array(trace: dict) -> np.ndarray:
    """A heatmap's z, whether plotly sent nested lists or a packed binary array; blank cells
    (the future the causal mask hides) read as 0, as attention_maps has them."""
    z = trace["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in z["shape"].split(","))
        array = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    else:
        array = np.array(z, dtype=float)  # None → nan
    return np.nan_to_num(array, nan=0.0)


def messages(at: AppTest) -> str:
    return " ".join(e.value for e in [*at.error, *at.warning, *at.info])


def test_every_view_renders_without_exception_or_error(run_id):
    at = open_explorer(run_id)
    at.number_input(key="explore_max_tokens").set_value(20).run()  # keeps the snapshot sample short
    for view in ["Generate", "Step by step", "Attention", "Logit lens", "Surprisal", "Watch it learn", "Interventions"]:
        at.segmented_control(key="explore_view").set_value(view).run()
        assert not at.exception, view
        assert not at.error, (view, [e.value for e in at.error])


def test_generate_streams_the_requested_number_of_tokens_and_the_models_own_text(run_id):
    at = open_explorer(run_id, "Generate")
    at.number_input(key="explore_max_tokens").set_value(17).run()
    at.button(key="explore_generate").click().run()
    assert not at.exception
    result = at.session_state["explore_generated"]
    assert len(result.generation.tokens) == 17
    assert at.metric[0].value == "17"
    model, tokenizer = run_model(run_id)
    expected = generate_text(model, tokenizer, "ROMEO:\n", 17, sampling=SamplingConfig(temperature=0.8), seed=0).text
    assert result.text == expected
    shown = " ".join(h.proto.body for h in at.html)
    assert "ROMEO:" in shown and expected.replace("\n", "")[:5].replace("&", "&amp;") in shown.replace("\n", "")


def test_kv_cache_timing_shows_both_ways_and_the_same_tokens(run_id):
    at = open_explorer(run_id, "Generate")
    at.number_input(key="explore_max_tokens").set_value(12).run()
    at.button(key="explore_kv_compare").click().run()
    assert not at.exception
    _, without, with_cache = at.session_state["explore_kv_timing"]
    assert len(without.tokens) == len(with_cache.tokens) == 12
    assert [m.label for m in at.metric][:3] == ["Without cache", "With KV cache", "Speed-up"]
    assert any("the same tokens" in c.value for c in at.caption)


def test_attention_figures_have_the_models_shape_and_values(run_id):
    at = open_explorer(run_id, "Attention")
    at.text_area(key="explore_prompt").input("ROMEO: hi").run()
    model, tokenizer = run_model(run_id)
    ids = tokenizer.encode("ROMEO: hi")
    maps = attention_maps(model, ids)  # (layers, heads, T, T)
    L, H, T = 2, 2, len(ids)
    assert maps.shape == (L, H, T, T)
    assert any(f"{L} × {H} × {T} × {T}" in c.value for c in at.caption)
    grid, head = (figure(c) for c in at.get("plotly_chart")[:2])
    mosaic = z_array(grid["data"][0])  # gaps and the future read as 0
    step = T + GRID_GAP
    assert mosaic.shape == (L * step - GRID_GAP, H * step - GRID_GAP)
    for layer in range(L):
        for h in range(H):
            tile = mosaic[layer * step : layer * step + T, h * step : h * step + T]
            np.testing.assert_allclose(tile, maps[layer, h].numpy(), atol=1e-6)
    at.selectbox(key="explore_layer").select(1).run()
    at.selectbox(key="explore_head").select(1).run()
    head = figure(at.get("plotly_chart")[1])
    np.testing.assert_allclose(z_array(head["data"][0]), maps[1, 1].numpy(), atol=1e-6)


def test_choosing_a_token_shades_the_text_by_its_attention(run_id):
    at = open_explorer(run_id, "Attention")
    at.text_area(key="explore_prompt").input("ab<i>\nc").run()
    at.select_slider(key="explore_query").set_value(2).run()
    assert not at.exception
    body = at.html[-1].proto.body
    assert html.unescape(re.sub(r"<[^>]*>", "", body)) == "ab<i>↵\nc"  # the prompt, escaped, ↵ shown
    assert body.count("hidden from it") == 4  # "i", ">", newline, "c" come after the query "<"
    assert body.count("outline") == 1


def test_step_mode_draws_every_stage_and_advances_on_click(run_id):
    at = open_explorer(run_id, "Step by step")
    records = at.session_state["explore_step_records"]
    assert len(records) == 1 and records[0].stages is not None
    stages_chart = figure(at.get("plotly_chart")[0])
    assert len(stages_chart["data"]) == 4  # model, temperature, top-k, top-p
    at.button(key="explore_step_next").click().run()
    at.button(key="explore_step_next").click().run()
    assert not at.exception
    records = at.session_state["explore_step_records"]
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].stages is None and records[-1].stages is not None  # old stages are dropped
    assert any(m.value.startswith("**Step 3**") for m in at.markdown)
    model, tokenizer = run_model(run_id)
    expected = [s.token_id for s in generate(model, encode_prompt(tokenizer, "ROMEO:\n"), 3, sampling=SamplingConfig(temperature=0.8), seed=0)]
    assert [r.token_id for r in records] == expected  # the same draws as Generate
    at.button(key="explore_step_reset").click().run()
    assert len(at.session_state["explore_step_records"]) == 1


def test_bad_input_gets_a_message_not_a_traceback(run_id):
    at = open_explorer(run_id, "Attention")
    at.text_area(key="explore_prompt").input("").run()
    assert not at.exception
    assert "prompt is empty" in messages(at)
    at.text_area(key="explore_prompt").input("ROMEO: ✨ héllo").run()
    assert not at.exception
    assert "not in this character vocabulary" in messages(at) and "U+2728" in messages(at)
    at.text_area(key="explore_prompt").input("ROMEO:").run()
    at.segmented_control(key="explore_view").set_value("Generate").run()
    at.number_input(key="explore_top_p").set_value(0.0).run()
    assert not at.exception
    assert "top_p=0.0" in messages(at)
    assert "Fix the sampling settings" in messages(at)


def test_surprisal_colours_pasted_text_and_refuses_what_it_cannot_score(run_id):
    at = open_explorer(run_id, "Surprisal")
    at.text_area(key="explore_surprisal_text").input("a <b> c").run()
    assert not at.exception and not at.error
    assert at.metric[0].value == "7"
    body = at.html[-1].proto.body
    assert "&lt;" in body and "<b>" not in body and "nats" in body
    at.text_area(key="explore_surprisal_text").input("ok ✨").run()
    assert "not in this character vocabulary" in messages(at)
    at.text_area(key="explore_surprisal_text").input("ab " * 400_000).run()  # a 1.2 MB paste
    assert not at.exception
    assert "only the first 100,000 are used" in messages(at) and "too long" in messages(at)


def test_watch_it_learn_walks_the_snapshots(run_id):
    at = open_explorer(run_id, "Watch it learn")
    slider = at.select_slider(key="explore_snapshot_step")
    assert list(slider.options) == [str(s) for s in SNAPSHOTS] and slider.value == SNAPSHOTS[-1]
    assert at.metric[0].value == "2.000"  # val loss logged at the last snapshot
    last_sample = at.html[0].proto.body
    at.select_slider(key="explore_snapshot_step").set_value(0).run()
    assert not at.exception
    assert at.metric[0].value == "4.000"
    assert at.html[0].proto.body != last_sample  # other weights, other text (same seed)
    assert len(at.get("plotly_chart")) == 2  # next-token bars and the attention grid


def test_a_run_without_snapshots_still_shows_its_latest_weights():
    # list_snapshots always ends with the latest weights, so a run that kept no snapshot files
    # still has a one-step timeline (step 0 here) rather than an empty page
    at = open_explorer(make_run(snapshots=()), "Watch it learn")
    assert not at.exception
    assert "kept no snapshots" not in messages(at)
    assert len(at.get("plotly_chart")) == 2


def test_no_model_at_all_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(runs_module, "demo_run_dir", lambda: tmp_path / "no-demo")  # and no runs
    at = open_explorer(None)
    assert "No model is picked yet" in messages(at)


def test_gpt2_offline_says_why_and_offers_no_download(run_id):
    at = open_explorer(run_id)
    at.radio(key="explore_source").set_value("gpt2").run()
    assert not at.exception
    text = messages(at)
    assert "offline mode (TOYGPT_OFFLINE=1)" in text
    assert "gpt2's weights are about 548 MB" in text and "pretrained add PATH" in text  # weights, size, how
    assert "tokenizer" not in text  # GPT-2's tokenizer ships with the pinned package: only weights are missing
    assert at.file_uploader(key="explore_add_upload") is not None  # the upload is offered right there
    assert not [b for b in at.button if b.key == "explore_gpt2_download"]
    assert not at.get("plotly_chart")


def save_tiny_gpt2(folder) -> GPT:
    """A GPT-2-layout folder (config.json + model.safetensors, Conv1D weights) with tiny shapes."""
    config = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, seed=0).eval()
    save_tensors(folder / "model.safetensors", toygpt_to_hf_state_dict(model))
    write_json_atomic(folder / "config.json", config_to_hf(config))
    return model


@pytest.fixture
def fresh_caches():
    yield
    st.cache_resource.clear()  # the fake GPT-2 must not outlive its test
    st.cache_data.clear()


def test_gpt2_when_its_files_are_here_is_explored_like_any_model(run_id, tmp_path, monkeypatch, fresh_caches):
    model = save_tiny_gpt2(tmp_path / "pretrained" / "gpt2")
    # tiktoken's GPT-2 files cannot be had offline: a byte tokenizer stands in (ids < 256)
    monkeypatch.setattr(tiktoken_module, "missing_files", lambda name: [])
    monkeypatch.setattr(tokenizers_module, "get_tokenizer", lambda spec: ByteTokenizer())
    at = open_explorer(run_id)
    at.radio(key="explore_source").set_value("gpt2").run()
    assert not at.exception and not at.error
    assert any("GPT-2 124M" in c.value for c in at.caption)
    at.segmented_control(key="explore_view").set_value("Attention").run()
    at.text_area(key="explore_prompt").input("héllo").run()
    grid = figure(at.get("plotly_chart")[0])
    T = len("héllo".encode())
    assert z_array(grid["data"][0]).shape == (2 * (T + GRID_GAP) - GRID_GAP,) * 2
    np.testing.assert_allclose(
        z_array(figure(at.get("plotly_chart")[1])["data"][0]), attention_maps(model, list("héllo".encode()))[0, 0], atol=1e-6
    )
    at.segmented_control(key="explore_view").set_value("Watch it learn").run()
    assert "never published" in messages(at)


def test_a_failed_gpt2_download_is_an_error_message(run_id, monkeypatch, fresh_caches):
    monkeypatch.delenv("TOYGPT_OFFLINE")
    monkeypatch.setattr(pretrained_module, "offline_reason", lambda: None)

    def no_network(spec):
        raise TokenizerUnavailable("no network in this test; copy the files into the cache")

    monkeypatch.setattr(tokenizers_module, "get_tokenizer", no_network)
    at = open_explorer(run_id)
    at.radio(key="explore_source").set_value("gpt2").run()
    assert "not downloaded yet" in messages(at)
    at.button(key="explore_gpt2_download").click().run()
    assert not at.exception
    assert "GPT-2 could not be downloaded: no network in this test" in messages(at)


def test_logit_lens_caption_names_the_rows_as_drawn(run_id):
    """Case 3 (issue 13): the caption said "the last row is the model's real prediction" while
    the chart drew the last block at the top. Now the rows run top to bottom through the model
    and the caption names the bottom row, which is the model's own prediction."""
    at = open_explorer(run_id, "Logit lens")
    at.text_area(key="explore_prompt").input("ROMEO: hi").run()
    lens_chart = figure(at.get("plotly_chart")[0])
    yaxis = lens_chart["layout"]["yaxis"]
    assert yaxis["autorange"] == "reversed"  # index 0 (the embedding) drawn on top
    assert yaxis["ticktext"] == ["embedding", "block 0", "block 1"]
    caption = "\n".join(c.value for c in at.caption)
    assert "the top row reads the embedding" in caption and "bottom row (block 1, the last)" in caption
    model, tokenizer = run_model(run_id)
    with torch.inference_mode():
        real = model(torch.tensor([tokenizer.encode("ROMEO: hi")]))[0][0].argmax(-1).tolist()
    bottom = lens_chart["data"][0]["text"][-1]  # the bottom row's labels: the real prediction
    assert bottom == [tokenizer.token_label(i) for i in real]


def test_watch_it_learn_title_quotes_the_probability_its_bars_draw(run_id):
    """Case 3 (issue 13): the title quoted the probability after top-k/top-p above bars of the
    model's own probability. Title and bars now name one quantity."""
    at = open_explorer(run_id, "Watch it learn")
    at.number_input(key="explore_top_k").set_value(3).run()
    bars = figure(at.get("plotly_chart")[0])
    title = bars["layout"]["title"]["text"]
    chosen = [c for c in bars["data"][0]["marker"]["color"]].index(viz.CHOSEN_COLOUR)
    drawn = bars["data"][0]["y"][chosen]
    assert bars["layout"]["yaxis"]["title"]["text"] == "model probability"
    assert f"model p={drawn:.3f}" in title
    assert "after the sampling settings" in title  # top-k=3 renormalised it: said, and named


def test_the_attention_grid_outlines_the_head_drawn_large(run_id):
    """Case 7 (issue 13): the grid did not mark which layer/head the big heatmap shows."""
    at = open_explorer(run_id, "Attention")
    at.text_area(key="explore_prompt").input("ROMEO: hi").run()
    at.selectbox(key="explore_layer").select(1).run()
    at.selectbox(key="explore_head").select(0).run()
    grid = figure(at.get("plotly_chart")[0])
    T = len(run_model(run_id)[1].encode("ROMEO: hi"))
    (box,) = grid["layout"]["shapes"]
    step = T + GRID_GAP
    assert (box["x0"], box["y0"]) == (0 * step - 0.5, 1 * step - 0.5)  # head 0 across, layer 1 down
    assert (box["x1"] - box["x0"], box["y1"] - box["y0"]) == (T, T)
    assert "outlined: layer 1, head 0" in grid["layout"]["title"]["text"]


def test_long_unbroken_samples_wrap_inside_their_column():
    """Case 7 (issue 13): an untrained model's line without spaces ran over the attention grid."""
    from toygpt.lessons.explore import attention_text_html, continuation_html

    assert "overflow-wrap: anywhere" in continuation_html("p", "x" * 500)
    assert "overflow-wrap: anywhere" in attention_text_html(["x" * 500], [1.0], 0)
    assert "overflow-wrap: anywhere" in viz.surprisal_html(["x" * 500, "y"], [float("nan"), 1.0])


def test_an_unknown_character_is_explained_without_python(run_id):
    """Case 8 (issue 13): the warning told the learner to call CharTokenizer.from_text(…)."""
    at = open_explorer(run_id, "Generate")
    at.text_area(key="explore_prompt").input("ROMEO: ☃").run()
    text = messages(at)
    assert "not in this character vocabulary" in text and "U+2603" in text
    assert "CharTokenizer" not in text and "unk=True" not in text
    assert "pick (or train, on the Training page) a model" in text


# ---- weights the learner brings, through the page's control ---------------------------------


def save_pretrained_folder(folder) -> torch.nn.Module:
    """A GPT-2-shaped folder made by transformers' save_pretrained (random weights, tiny shape)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    return model


def test_added_weights_are_listed_in_the_sidebar(tmp_path, fresh_caches):
    from pages._shared import model_choices
    from toygpt.pretrained import add_pretrained, files_in_folder

    save_pretrained_folder(tmp_path / "hf")
    add_pretrained(files_in_folder(tmp_path / "hf"), "listed")
    label, folder = model_choices()["pretrained:listed"]
    assert label.startswith("listed (pretrained GPT-2 family") and folder == tmp_path / "pretrained" / "listed"


def test_uploaded_weights_are_added_listed_in_the_sidebar_and_sampled(run_id, tmp_path, fresh_caches):
    hf_model = save_pretrained_folder(tmp_path / "hf")
    uploads = [(name, (tmp_path / "hf" / name).read_bytes(), "application/octet-stream")
               for name in ("config.json", "model.safetensors")]  # fmt: skip
    at = open_explorer(run_id)
    at.file_uploader(key="explore_add_upload").set_value(uploads).run()
    at.text_input(key="explore_add_name").input("tiny-gpt2").run()
    at.button(key="explore_add_button").click().run()
    assert not at.exception and not at.error
    assert "Added **tiny-gpt2" in " ".join(s.value for s in at.success)
    assert at.session_state["active_run"] == "pretrained:tiny-gpt2"  # the sidebar's model now
    assert any("tiny-gpt2 (pretrained GPT-2 family" in c.value for c in at.caption)
    assert (tmp_path / "pretrained" / "tiny-gpt2" / "pretrained.json").is_file()
    at.text_area(key="explore_prompt").input("Hello").run()
    at.number_input(key="explore_max_tokens").set_value(5).run()
    at.button(key="explore_generate").click().run()
    assert not at.exception and not at.error
    from toygpt.pretrained import load_pretrained
    from toygpt.tokenizers import get_tokenizer

    ours, _ = load_pretrained("tiny-gpt2")
    expected = generate_text(ours, get_tokenizer("gpt2"), "Hello", 5, sampling=SamplingConfig(temperature=0.8), seed=0).text
    assert at.session_state["explore_generated"].text == expected  # sampled from the added weights
    ids = torch.tensor([[31373, 995]])
    with torch.no_grad():
        assert (ours(ids)[0] - hf_model(ids).logits).abs().max().item() <= 1e-5


def test_a_local_folder_can_be_added_and_bad_input_is_refused_with_nothing_added(run_id, tmp_path, fresh_caches):
    save_pretrained_folder(tmp_path / "distil-ish")
    at = open_explorer(run_id)
    at.file_uploader(key="explore_add_upload").set_value(("notes.txt", b"hi", "text/plain")).run()
    at.button(key="explore_add_button").click().run()
    assert not at.exception and "Not added: notes.txt is not a file of a GPT-2 model folder" in messages(at)
    assert not (tmp_path / "pretrained").exists() or not any((tmp_path / "pretrained").iterdir())
    at.file_uploader(key="explore_add_upload").set_value(None).run()
    at.text_input(key="explore_add_folder").input(str(tmp_path / "distil-ish")).run()
    at.button(key="explore_add_button").click().run()
    assert not at.exception and not at.error
    assert at.session_state["active_run"] == "pretrained:distil-ish"
    assert any("distil-ish (pretrained GPT-2 family" in c.value for c in at.caption)
