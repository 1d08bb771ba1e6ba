"""How fast the dashboard feels, measured in a real browser (Debian's Chromium via playwright).

    python bench/app_latency.py [--repeats 7] [--baseline-ref REF] [--skip-start]

Figures, each the median of ``--repeats`` tries (targets on a 2-core laptop CPU):
1. server start → first page rendered (``streamlit run app.py`` to the home title drawn): ≤ 5 s
2. tokenizer playground on a 10,000-character text with the default tokenizers: ≤ 300 ms
3. explorer forward + attention heatmaps on a 64-token prompt: ≤ 700 ms
4. Architecture page (trace + concept card) on a 64-token prompt: ≤ 700 ms

**What is timed: what a learner waits for.** Each try fills the page's text box and commits it
with Ctrl+Enter. Inside the page, a keydown listener stamps the commit and a MutationObserver
watches Streamlit's own signal (``data-test-script-state`` going ``running`` → ``notRunning``,
which comes after every element of the rerun has arrived); for the tokenizer page it also waits
until a token view shows the new text. Then it waits for the next frame to be laid out and
painted (``requestAnimationFrame`` + ``setTimeout 0``), so sanitising the HTML, building the DOM,
styling and layout all count, not only the server's script. Beside that wall time the bench
prints the renderer's main-thread CPU time for the same try (Chrome's ``ThreadTime`` metric),
which other processes on a shared machine disturb much less than the wall clock.

**Baselines measured in the same run.** Every page is also committed with a 2-character input,
interleaved with the long one: the ratio shows what the long input itself costs over the page's
fixed work and Streamlit's round trip. The targets above were set on a machine where that
2-character tokenizer page took 273 ms (and the 10,000-character one 679 ms): on a slower or
busier machine read the ratio, ≤ 300/273 = 1.10× for the tokenizer page. With
``--baseline-ref REF`` the same pages of an older commit (``git archive REF``, served by a
second server) are timed in the same loop, and each line ends with new/old.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMIUM_ARGS, free_port, wait_healthy  # noqa: E402

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
SAMPLE = (
    "The quick brown fox — naïve café, 東京, 🙂👍🏽 — jumps over 12,345 lazy dogs.\n"
    "def f(x):\n    return x ** 2  # code too\n"
)
REFERENCE_FLOOR_S = 0.273  # the 2-character tokenizer page where the 300 ms target was set

# Installed before each commit: resolves with in-page timestamps (ms) once the rerun the commit
# triggered has finished, the page's own `ready` check holds, and the next frame was painted.
WATCH_JS = """([boxSelector, marker]) => {
  const box = document.querySelector(boxSelector);
  const app = document.querySelector("[data-testid='stApp']");
  window.__latency = new Promise((resolve) => {
    let start = null, sawRunning = false, idleAt = null, done = false;
    const ready = () => !marker || [...document.querySelectorAll('.tg-tokens')]
      .some((view) => view.textContent.includes(marker));
    const finish = () => {
      if (done) return;
      done = true; observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => resolve(
        {start, idle: idleAt, painted: performance.now(), sawRunning}), 0));
    };
    const check = () => {
      const state = app.getAttribute('data-test-script-state');
      if (state === 'running') sawRunning = true;
      if (start === null || !sawRunning || state !== 'notRunning') return;
      if (idleAt === null) idleAt = performance.now();
      if (ready()) finish();
    };
    const observer = new MutationObserver(check);
    observer.observe(app, {attributes: true, childList: true, subtree: true, characterData: true});
    const onKey = (event) => {
      if (event.key === 'Enter' && event.ctrlKey && start === null) {
        start = performance.now();
        box.removeEventListener('keydown', onKey, {capture: true});
        // a rerun so fast that 'running' never reached the DOM: fall back after 3 s
        setTimeout(() => { if (!sawRunning) { sawRunning = true; check(); } }, 3000);
      }
    };
    box.addEventListener('keydown', onKey, {capture: true});
  });
}"""


@dataclass
class Tries:
    """Wall (commit → painted), script-state-only (commit → notRunning) and renderer CPU, in s."""

    painted: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def median(self, what: str = "painted") -> float:
        return statistics.median(getattr(self, what))


@dataclass
class Page:
    """One open browser tab on one server's page, committed again and again."""

    tab: object
    cdp: object
    box: str

    def commit(self, text: str, marker: str | None, tries: Tries) -> None:
        box = self.tab.locator(self.box)
        box.fill(text)
        self.tab.evaluate(WATCH_JS, [self.box, marker])
        cpu0 = self.thread_time()
        box.press("Control+Enter")
        times = self.tab.evaluate(
            "() => Promise.race([window.__latency, new Promise((_, fail) => setTimeout("
            "() => fail(new Error('no finished rerun within 120 s')), 120000))])")
        tries.cpu.append(self.thread_time() - cpu0)
        tries.painted.append((times["painted"] - times["start"]) / 1000)
        tries.idle.append((times["idle"] - times["start"]) / 1000)

    def thread_time(self) -> float:
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "ThreadTime")


@contextlib.contextmanager
def server(root: Path, home: Path) -> Iterator[str]:
    """``streamlit run app.py`` from ``root`` on a free port with its own runs/ and data/."""
    port = free_port()
    env = {**os.environ, "TOYGPT_RUNS_DIR": str(home / "runs"), "TOYGPT_DATA_DIR": str(home / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def checkout(ref: str, into: Path) -> Path:
    """The tree of commit ``ref`` unpacked under ``into`` (``git archive``: no worktree is added)."""
    archive = into / "baseline.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), ref], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "baseline", filter="data")
    return into / "baseline"


def server_start(browser, repeats: int, home: Path) -> list[float]:
    """Seconds from ``streamlit run`` to the home page's title drawn with the script finished."""
    starts = []
    for i in range(repeats):
        t0 = time.perf_counter()
        with server(ROOT, home / f"start{i}") as url:
            tab = browser.new_page()
            tab.goto(url)
            tab.wait_for_selector("h1", timeout=60_000)
            tab.wait_for_selector(IDLE, timeout=60_000)
            starts.append(time.perf_counter() - t0)
            tab.close()
    return starts


def open_page(browser, url: str, path: str, box: str, view: str | None = None) -> Page:
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    cdp = tab.context.new_cdp_session(tab)
    cdp.send("Performance.enable")
    tab.goto(f"{url}/{path}")
    tab.wait_for_selector(IDLE, timeout=120_000)
    if view:  # e.g. the explorer's Attention view, so each rerun draws the heatmaps
        tab.locator(".st-key-explore_view button", has_text=view).first.click()
        tab.wait_for_timeout(300)
        tab.wait_for_selector(IDLE, timeout=120_000)
    return Page(tab, cdp, box)


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    box: str
    long: str  # what the long input is, for the report
    target: float
    view: str | None = None

    def texts(self, i: int) -> tuple[str, str, str | None]:
        """(long text, 2-character text, marker a token view must show) for try ``i``;
        distinct each time, so no cache can answer."""
        if self.path == "tokenizer":
            marker = f"R{i}Q"
            return (marker + " " + SAMPLE * 200)[:10_000], f"{i}!", marker
        # 64 characters = 64 tokens for the char-level demo model
        return f"ROMEO {i}:\nWhat light through yonder window breaks? It is the east, and"[:64], f"{i}!", None


CASES = [
    Case("tokenizer page, 10,000-character text", "tokenizer", ".st-key-tok_text textarea",
         "10,000 characters", 0.3),
    Case("explorer forward + heatmaps, 64 tokens", "explore", ".st-key-explore_prompt textarea",
         "64 tokens", 0.7, view="Attention"),
    Case("Architecture page, 64 tokens", "architecture", ".st-key-arch_prompt textarea",
         "64 tokens", 0.7),
]


def measure(case: Case, pages: dict[str, Page], repeats: int) -> dict[str, Tries]:
    """Interleaved tries: for each i, every server's page gets the long then the short input."""
    results = {f"{who} {size}": Tries() for who in pages for size in ("long", "short")}
    for page in pages.values():  # warm caches and the first layout of both sizes
        long, short, marker = case.texts(repeats + 1)
        page.commit(long, marker, Tries())
        page.commit(short, None, Tries())
    for i in range(repeats):
        long, short, marker = case.texts(i)
        for who, page in pages.items():
            page.commit(long, marker, results[f"{who} long"])
            page.commit(short, None, results[f"{who} short"])
    return results


def report(case: Case, results: dict[str, Tries]) -> None:
    new, floor = results["new long"], results["new short"]
    ratio = new.median() / floor.median()
    verdict = "OK" if new.median() <= case.target else "OVER"
    print(f"\n{case.name}: median of {len(new.painted)} tries", flush=True)
    print(f"  {case.long:<18} {new.median() * 1000:7.0f} ms to painted (target ≤ {case.target * 1000:.0f} ms:"
          f" {verdict}); script state only {new.median('idle') * 1000:.0f} ms; renderer CPU"
          f" {new.median('cpu') * 1000:.0f} ms")
    print(f"  2 characters       {floor.median() * 1000:7.0f} ms to painted; script state only"
          f" {floor.median('idle') * 1000:.0f} ms; renderer CPU {floor.median('cpu') * 1000:.0f} ms")
    line = f"  long / 2-character: {ratio:.2f}× (wall), {new.median('cpu') / floor.median('cpu'):.2f}× (CPU)"
    if case.path == "tokenizer":
        limit = case.target / REFERENCE_FLOOR_S
        line += f"; target on a slower machine ≤ {limit:.2f}×: {'OK' if ratio <= limit else 'OVER'}"
    print(line)
    if "old long" in results:
        old, old_floor = results["old long"], results["old short"]
        print(f"  baseline commit:   {case.long} {old.median() * 1000:.0f} ms (CPU {old.median('cpu') * 1000:.0f} ms),"
              f" 2 characters {old_floor.median() * 1000:.0f} ms, long / 2-character"
              f" {old.median() / old_floor.median():.2f}×")
        print(f"  new / old:         {new.median() / old.median():.2f}× (wall),"
              f" {new.median('cpu') / old.median('cpu'):.2f}× (CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline-ref", help="also time this commit's pages in the same loop")
    parser.add_argument("--skip-start", action="store_true", help="skip the server start figure")
    parser.add_argument("--only", choices=[c.path for c in CASES], action="append",
                        help="time only these pages (repeatable)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p, contextlib.ExitStack() as stack:
        home = Path(tmp)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        if not args.skip_start:
            starts = server_start(browser, args.repeats, home)
            verdict = "OK" if statistics.median(starts) <= 5 else "OVER"
            print(f"server start → first page rendered: median {statistics.median(starts):.2f} s"
                  f" (target ≤ 5 s: {verdict})", flush=True)
        roots = {"new": ROOT}
        if args.baseline_ref:
            roots["old"] = checkout(args.baseline_ref, home)
        urls = {who: stack.enter_context(server(root, home / who)) for who, root in roots.items()}
        for case in CASES:
            if args.only and case.path not in args.only:
                continue
            pages = {who: open_page(browser, url, case.path, case.box, case.view) for who, url in urls.items()}
            report(case, measure(case, pages, args.repeats))
            for page in pages.values():
                page.tab.close()
        browser.close()
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
