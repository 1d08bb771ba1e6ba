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
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
    page.wait_for_timeout(300)  # let the last deltas paint


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


PAGES = [("home", "")]


@pytest.mark.parametrize(("name", "path"), PAGES)
def test_every_page_renders_without_exception(server, page, name, path):
    open_page(page, server, path)
    assert_no_exception(page, name)
    assert page.locator("h1").count() >= 1, f"{name}: no title"
    assert screenshot(page, name).stat().st_size > 10_000
