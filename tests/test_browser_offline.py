"""End-to-end, offline from a fresh install: no network, an empty tiktoken cache and an empty
pretrained cache. GPT-2's and GPT-4's tokenizers draw their spans in the playground, the lab's
tokenization experiment includes GPT-2, and GPT-2-shaped weights made here are added through the
explorer's "use a local folder" control, picked in the sidebar and sampled. Screenshots go to
``$TOYGPT_TEST_ARTIFACTS`` (default ``test-artifacts/``)."""

from __future__ import annotations

import pytest
from test_browser import (
    CHROMIUM,
    assert_no_exception,
    browser_fixture,
    open_page,
    run_quick_look,
    screenshot,
    set_number,
    streamlit_server,
    wait_idle,
    window_fixture,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def offline_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("offline-home")
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
    transformers.GPT2LMHeadModel(config).save_pretrained(home / "my-gpt2")
    return home


@pytest.fixture(scope="module")
def offline_server(offline_home):
    empty = {"TIKTOKEN_CACHE_DIR": str(offline_home / "tiktoken-empty"), "TOYGPT_OFFLINE": "1",
             "HF_HUB_OFFLINE": "1", "TOYGPT_PRETRAINED_DIR": str(offline_home / "pretrained")}  # fmt: skip
    with streamlit_server(offline_home, **empty) as (url, _):
        yield url


browser = browser_fixture()
page = window_fixture(height=1000)


def test_playground_shows_gpt2_and_cl100k_base_spans(offline_server, offline_home, page):
    open_page(page, offline_server, "tokenizer")
    box = page.locator(".st-key-tok_text textarea")
    box.fill("hello world")
    box.press("Control+Enter")
    wait_idle(page)
    assert_no_exception(page, "tokenizer (offline)")
    assert page.locator("[title^='id 31373']").count() >= 1  # "hello" in GPT-2's vocabulary
    assert page.locator("[title^='id 15339']").count() >= 1  # "hello" in cl100k_base
    assert not (offline_home / "tiktoken-empty").exists()  # nothing was downloaded or cached
    screenshot(page, "offline-tokenizer-gpt2-cl100k")


def test_lab_tokenization_quick_look_includes_gpt2(offline_server, page):
    open_page(page, offline_server, "lab")
    run_quick_look(page, "tokenization", "Tokenization")
    assert_no_exception(page, "lab tokenization (offline)")
    reading = page.get_by_text("tokens per character:").first.inner_text()
    assert "gpt2" in reading and "Left out" not in reading
    screenshot(page, "offline-lab-tokenization-gpt2")


def test_weights_from_a_local_folder_are_added_picked_and_sampled(offline_server, offline_home, page):
    open_page(page, offline_server, "explore")
    page.get_by_text("Add GPT-2 weights you have").first.click()
    folder = page.locator(".st-key-explore_add_folder input")
    folder.fill(str(offline_home / "my-gpt2"))
    folder.press("Enter")
    wait_idle(page)
    page.locator(".st-key-explore_add_button button").click()
    wait_idle(page)
    assert_no_exception(page, "explore (weights added)")
    assert page.get_by_text("Added my-gpt2").count() >= 1
    picked = page.locator(".st-key-sidebar_model input").input_value()  # the sidebar's model now
    assert picked.startswith("my-gpt2 (pretrained GPT-2 family")
    set_number(page, "explore_max_tokens", 10)
    page.locator(".st-key-explore_generate button").click()
    wait_idle(page)
    assert_no_exception(page, "explore (sampled from added weights)")
    assert page.get_by_text("Looking at: my-gpt2").count() >= 1
    screenshot(page, "offline-explore-added-weights")
