"""End-to-end: the real app in a real browser (Debian's Chromium driven by playwright).

The server runs on a free loopback port with its own runs/ folder; each page is opened, checked
for Streamlit exception boxes and saved as a screenshot under ``$TOYGPT_TEST_ARTIFACTS``
(default ``test-artifacts/``) so a person can look at what a user would see.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from toygpt.model import GPTConfig, preset, total_parameters

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TOYGPT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


SERVER_LOGS: dict[str, Path] = {}  # server url -> its log (stdout and stderr)
expect = None  # playwright's expect, set by launched_chromium (playwright is optional)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@contextlib.contextmanager
def streamlit_server(home: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app on a free loopback port with its own runs/ and data/ under ``home`` (``env`` adds
    or overrides variables); its log goes to ``home/server.log``. Yields (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TOYGPT_RUNS_DIR": str(home / "runs"), "TOYGPT_DATA_DIR": str(home / "data"), **env}
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
    ]
    SERVER_LOGS[url] = home / "server.log"
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, proc)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def launched_chromium() -> Iterator:
    """Debian's Chromium driven by playwright (skips the test when playwright is missing)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    global expect
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("browser-home")) as (url, _):
        yield url


def browser_fixture():
    """A module's ``browser`` fixture: one Chromium for all its tests (``browser =
    browser_fixture()`` at module level; the test is skipped where playwright is missing)."""

    @pytest.fixture(scope="module")
    def browser():
        """Debian's Chromium, shared by the module's tests."""
        with launched_chromium() as chromium:
            yield chromium

    return browser


def window_fixture(height: int, width: int = 1400):
    """A fixture giving each test a fresh window of ``width`` × ``height`` px (its own browser
    context, so its own Streamlit session), closed after the test: ``page = window_fixture(900)``
    at module level; the fixture's name is the name it is given there. Needs ``browser``."""

    @pytest.fixture
    def window(browser):
        """A fresh browser window of the size the module chose (window_fixture)."""
        context = browser.new_context(viewport={"width": width, "height": height})
        yield context.new_page()
        context.close()

    return window


browser = browser_fixture()
page = window_fixture(height=900)
narrow_page = window_fixture(height=900, width=800)  # where charts and their labels run out of room first


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the script has finished running (Streamlit marks the app element)."""
    idle = "[data-testid='stApp'][data-test-script-state='notRunning']"
    for _ in range(3):  # a rerun can start right after a run ends (e.g. the deep-link rerun)
        page.wait_for_selector(idle, timeout=timeout)
        page.wait_for_function(
            "() => !document.querySelector(\"[data-testid='stSkeleton']\")", timeout=timeout
        )
        page.wait_for_timeout(300)  # let the last deltas paint
        if page.locator(idle).count():
            return


def open_page(page, url: str, path: str = "") -> None:
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    wait_idle(page)


def assert_no_exception(page, name: str) -> None:
    errors = page.locator("[data-testid='stException']")
    if errors.count():
        raise AssertionError(f"{name}: exception on the page: {errors.first.inner_text()[:2000]}")


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so the window is made as
    tall as the content for the picture, then put back."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\")?.scrollHeight || 0")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height), 12_000))})
    page.wait_for_timeout(400)  # charts re-lay out to the new size
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


PAGES = [
    ("home", ""),
    ("tokenizer", "tokenizer"),
    ("architecture", "architecture"),
    ("train", "train"),
    ("runs", "runs"),
    ("explore", "explore"),
    ("lab", "lab"),
]


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with widget key ``key``."""
    box = page.locator(f".st-key-{key} [role='combobox']")
    box.evaluate("element => element.scrollIntoView({block: 'center'})")  # room for the list below
    box.click()
    box.fill(option)  # filters the list (long lists are virtualised)
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def run_quick_look(page, experiment: str, title: str) -> None:
    """On the Concepts lab page: open ``experiment`` (its button says ``title``), tick its tiny
    setting, press Run and wait until its charts are drawn."""
    page.locator(".st-key-lab_experiment button", has_text=title).first.click()
    wait_idle(page)
    page.locator(f".st-key-lab_{experiment}_tiny label").first.click()
    wait_idle(page)
    page.locator(f".st-key-lab_{experiment}_run button").first.click()
    charts = page.locator(f".st-key-lab_{experiment}_charts [data-testid='stPlotlyChart']")
    charts.first.wait_for(timeout=180_000)
    wait_idle(page)


def go_to(page, title: str) -> None:
    """Navigate inside the app (same session) through the sidebar's page links."""
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
    page.wait_for_timeout(500)
    wait_idle(page)


@pytest.mark.parametrize(("name", "path"), PAGES)
def test_every_page_renders_without_exception(server, page, name, path):
    open_page(page, server, path)
    assert_no_exception(page, name)
    assert page.locator("h1").count() >= 1, f"{name}: no title"
    assert screenshot(page, name).stat().st_size > 10_000


@pytest.mark.parametrize(("name", "path"), PAGES)
def test_every_page_renders_at_800_px(server, narrow_page, name, path):
    open_page(narrow_page, server, path)
    assert_no_exception(narrow_page, f"{name} (800 px)")
    assert screenshot(narrow_page, f"{name}-800").stat().st_size > 10_000


def metric_value(page, label: str) -> str:
    """The value of the st.metric whose label starts with ``label``."""
    box = page.locator("[data-testid='stMetric']", has=page.locator(
        "[data-testid='stMetricLabel']", has_text=label)).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def shown_choice(page, key: str) -> str:
    """What the selectbox with widget key ``key`` shows in the browser (not what the server holds)."""
    return page.locator(f".st-key-{key} input[role='combobox']").first.input_value().strip()


def page_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def our_warnings(url: str) -> list[str]:
    """Warning and error lines in the server's log (Streamlit's own, ours, torch's)."""
    lines = SERVER_LOGS[url].read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if re.search(r"\b(WARNING|ERROR|Warning:|Traceback)", line)]


def test_a_learners_walk_shows_true_numbers_and_leaves_a_clean_log(server, page):
    """The main flow, asserting on what is shown: tokenize → shape → train ~20 s → use this
    model → generate → attention → logit lens → lab quick look → delete the run; then the
    server log has no warning. Screenshots: walk-*.png."""
    open_page(page, server, "tokenizer")
    text = page.locator(".st-key-tok_text textarea")
    text.fill("hello world")
    text.press("Control+Enter")
    wait_idle(page)
    assert "11 tokens · 11 characters" in page_text(page)  # char: one token per character
    screenshot(page, "walk-1-tokenize")

    go_to(page, "Architecture")
    set_number(page, "arch_n_layer", 3)
    shaped = GPTConfig(**{**preset("small", vocab_size=65).to_dict(), "n_layer": 3})
    assert metric_value(page, "Parameters") == f"{total_parameters(shaped):,}"
    assert "custom" in shown_choice(page, "arch_preset")  # 3 layers is no preset any more
    assert "an untrained model of the shaped config (3 blocks" in page_text(page)  # the trace follows it
    assert_no_exception(page, "architecture (shaped)")
    screenshot(page, "walk-2-shape")

    go_to(page, "Training")
    choose(page, "train_corpus", "copy (built-in)")
    choose(page, "train_preset", "nano")
    set_number(page, "train_seconds", 20)
    name = page.locator(".st-key-train_name input")
    name.fill("walk-model")
    name.press("Enter")
    wait_idle(page)
    page.locator(".st-key-train_start button").click()
    use = page.locator(".st-key-train_use button").first
    use.wait_for(timeout=180_000)  # appears when the job has finished
    wait_idle(page)
    assert_no_exception(page, "train (finished)")
    steps = int(metric_value(page, "Step").replace(",", ""))
    assert steps > 0
    assert float(metric_value(page, "Steps / s")) > 0  # measured while it trained
    assert f"It did {steps:,} steps in" in page_text(page)  # beside the estimate made before it
    assert "Estimated before starting (measured pace)" in page_text(page)
    screenshot(page, "walk-3-trained")
    use.click()
    wait_idle(page)

    go_to(page, "Sampling & attention")
    assert "walk-model" in page_text(page)  # "Looking at: walk-model (copy…)"
    prompt = page.locator(".st-key-explore_prompt textarea")
    prompt.fill("cbegdfeny|")  # characters of the built-in copy corpus the run was trained on
    prompt.press("Control+Enter")
    wait_idle(page)
    set_number(page, "explore_max_tokens", 20)
    page.locator(".st-key-explore_generate button").click()
    wait_idle(page)
    assert metric_value(page, "New tokens") == "20"
    assert_no_exception(page, "explore (generated)")
    screenshot(page, "walk-4-generated")

    page.locator(".st-key-explore_view button", has_text="Attention").first.click()
    wait_idle(page)
    grid = page.locator(".st-key-explore_grid_chart .js-plotly-plot")
    grid.wait_for(timeout=30_000)
    assert grid.locator("g.hm image").count() > 0, "the attention grid has no heatmap drawn"
    assert_no_exception(page, "explore (attention)")
    screenshot(page, "walk-5-attention")

    page.locator(".st-key-explore_view button", has_text="Logit lens").first.click()
    wait_idle(page)
    assert "the bottom row (block 1, the last) is the model's real prediction" in page_text(page)
    screenshot(page, "walk-6-logit-lens")

    go_to(page, "Concepts lab")
    run_quick_look(page, "norm_position", "Pre-LN vs post-LN")
    assert "What this run showed. Quick look: a tiny setting for trying the page, not for conclusions" in page_text(page)
    assert_no_exception(page, "lab (result)")
    screenshot(page, "walk-7-lab")

    go_to(page, "Runs")
    choose(page, "runs_manage", "walk-model")
    page.locator(".st-key-runs_delete button").click()
    wait_idle(page)
    assert "Delete walk-model and all its files for good?" in page_text(page)
    page.locator(".st-key-runs_delete_yes button").click()
    wait_idle(page)
    shown = page_text(page)
    assert "Deleted walk-model." in shown, shown  # in full: a "Not deleted: …" would say why
    box = page.locator(".st-key-runs_manage input[role='combobox']").first
    expect(box).not_to_have_value("walk-model", timeout=15_000)  # the page's rerun sends the new choice
    wait_idle(page)
    shown = shown_choice(page, "runs_manage")
    assert shown in page_text(page)  # the browser shows a run that is listed…
    assert page.locator(".st-key-runs_delete button").first.inner_text().strip() == f"Delete {shown}…"  # …and acts on it
    screenshot(page, "walk-8-deleted")

    assert our_warnings(server) == []
