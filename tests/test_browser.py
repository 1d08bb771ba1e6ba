"""End-to-end: the real app in a real browser (Debian's Chromium driven by playwright).

The server runs on a free loopback port with its own runs/ folder; each page is opened, checked
for Streamlit exception boxes and saved as a screenshot under ``$TOYGPT_TEST_ARTIFACTS``
(default ``test-artifacts/``) so a person can look at what a user would see.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-home")
    port = free_port()
    env = {**os.environ, "TOYGPT_RUNS_DIR": str(home / "runs"), "TOYGPT_DATA_DIR": str(home / "data")}
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
    ]
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


PAGES = [
    ("home", ""),
    ("tokenizer", "tokenizer"),
    ("architecture", "architecture"),
    ("train", "train"),
    ("explore", "explore"),
    ("lab", "lab"),
]


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with widget key ``key``."""
    page.locator(f".st-key-{key} [role='combobox']").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
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


def test_train_a_nano_model_then_generate_and_see_its_attention(server, page):
    """The main flow: train for a few seconds → pick the run → generate → attention heatmaps."""
    open_page(page, server, "train")
    choose(page, "train_preset", "nano")
    set_number(page, "train_seconds", 4)
    page.locator(".st-key-train_start button").click()
    use = page.locator(".st-key-train_use button").first
    use.wait_for(timeout=120_000)  # appears when the job has finished
    assert_no_exception(page, "train (finished)")
    screenshot(page, "flow-1-trained")
    use.click()
    wait_idle(page)

    go_to(page, "Sampling & attention")
    prompt = page.locator(".st-key-explore_prompt textarea")
    prompt.fill("cbegdfeny|")  # characters of the built-in copy corpus the run was trained on
    prompt.press("Control+Enter")
    wait_idle(page)
    set_number(page, "explore_max_tokens", 20)
    page.locator(".st-key-explore_generate button").click()
    wait_idle(page)
    assert_no_exception(page, "explore (generated)")
    screenshot(page, "flow-2-generated")

    page.locator(".st-key-explore_view button", has_text="Attention").first.click()
    wait_idle(page)
    grid = page.locator(".st-key-explore_grid_chart .js-plotly-plot")
    grid.wait_for(timeout=30_000)
    assert grid.locator("g.hm image").count() > 0, "the attention grid has no heatmap drawn"
    assert_no_exception(page, "explore (attention)")
    screenshot(page, "flow-3-attention")


def test_concepts_lab_runs_an_experiment_at_its_tiny_setting(server, page):
    """Open the lab, run pre-LN vs post-LN at the quick-look setting, see its charts and reading."""
    open_page(page, server, "lab")
    page.locator(".st-key-lab_experiment button", has_text="Pre-LN vs post-LN").first.click()
    wait_idle(page)
    page.locator(".st-key-lab_norm_position_tiny label").first.click()
    wait_idle(page)
    page.locator(".st-key-lab_norm_position_run button").first.click()
    charts = page.locator(".st-key-lab_norm_position_charts [data-testid='stPlotlyChart']")
    charts.first.wait_for(timeout=120_000)
    wait_idle(page)
    assert charts.count() >= 1
    assert page.get_by_text("What this run showed").count() >= 1
    assert_no_exception(page, "lab (result)")
    screenshot(page, "lab-result")
