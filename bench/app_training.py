"""Benchmark: training from the app against the CLI, and how responsive pages stay meanwhile.

    python bench/app_training.py [--seconds 20] [--rounds 3] [--variants cli,thread:1,process:2:10]

One config, the Training page's defaults: the ``small`` preset, char tokenizer, tiny
shakespeare when ``$TOYGPT_SHAKESPEARE`` points at it (else the built-in ``copy`` corpus),
batch 12, lr 3e-3, warm-up 50, validation and a sample every 200 steps, a time budget of
``--seconds``. Variants (``--variants``, comma-separated):

* ``cli`` — ``python -m toygpt train`` in its own process with its defaults (the baseline);
* ``thread:T`` — an app job on a thread of this process, ``JobRegistry(num_threads=T)``, started
  with ``registry.start(spec)`` as the Training page starts it (``thread:1`` is the app before
  issue 17);
* ``process:T:N`` — an app job in its own worker process (``toygpt.worker``) with T torch
  threads at niceness N (``JobRegistry(worker=WorkerSettings(threads=T, nice=N))``).

Each app variant runs twice per round: alone, and while this process reruns pages in a loop
through Streamlit's AppTest (as the server would, in the same process): the explorer's
attention view on a fresh 64-token prompt, and the tokenizer page on a fresh
``--tok-chars``-character text, alternately. Every round also times the same page reruns with
nothing training (the idle baseline). The variants' order rotates from round to round so a
burst of load from other processes hits them all alike; figures are medians over rounds.

steps/s is the trainer's own measure (1000 / median ``ms_per_step`` of its step events:
validations and samples excluded), the same for every variant; the steps done within the
budget and the start-up (the CLI: process start to training clock start; an app job: Start
to its first logged step) are printed beside it. Ratios: app/CLI steps/s (target ≥ 0.8) and busy/idle page latency
(target ≤ 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE_CONFIG = dict(learning_rate=3e-3, batch_size=12, warmup_steps=50, eval_interval=200, sample_interval=200, seed=0)


def setup_home() -> tuple[Path, str]:
    """A private runs/data folder (set in the environment, so workers and the CLI see it too)
    and the corpus name: tiny shakespeare when available, else ``copy``."""
    home = Path(tempfile.mkdtemp(prefix="toygpt-bench-app-"))
    os.environ["TOYGPT_RUNS_DIR"], os.environ["TOYGPT_DATA_DIR"] = str(home / "runs"), str(home / "data")
    os.environ.setdefault("TOYGPT_OFFLINE", "1")
    from toygpt import data as corpora

    source = Path(os.environ.get("TOYGPT_SHAKESPEARE", ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    if source.is_file():
        corpora.add_corpus_file("shakespeare", source)
        return home, "shakespeare"
    return home, "copy"


def spec_for(corpus: str, seconds: float, name: str) -> Any:
    from toygpt.model import preset
    from toygpt.pipeline import TrainSpec
    from toygpt.train import TrainConfig

    return TrainSpec(corpus=corpus, tokenizer="char", model=preset("small"), name=name,
                     train=TrainConfig(max_seconds=seconds, max_steps=None, **PAGE_CONFIG))  # fmt: skip


def step_rate(events: list[dict[str, Any]], steps: int, seconds: float) -> float:
    """Training steps per second: 1000 / the median of the step events' ``ms_per_step`` (each
    the median of the trainer's last 50 steps), so validations and samples do not count; a job
    too slow to log a step event (one every 10 steps) falls back to ``steps / seconds``."""
    logged = [e["ms_per_step"] for e in events if e.get("type") == "step"]
    return 1000 / median(logged) if logged else steps / seconds


# --------------------------------------------------------------------------------------------
# The variants
# --------------------------------------------------------------------------------------------


def run_cli(corpus: str, seconds: float, name: str) -> dict[str, float]:
    from toygpt.runs import read_metrics

    flags = ["--corpus", corpus, "--tokenizer", "char", "--preset", "small", "--max-seconds", str(seconds),
             "--lr", "0.003", "--batch-size", "12", "--warmup-steps", "50", "--eval-interval", "200",
             "--sample-interval", "200", "--seed", "0", "--name", name, "--quiet"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "toygpt", "train", *flags], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    rows = read_metrics(name)
    end = next(r for r in reversed(rows) if r["type"] == "end")
    return {"steps_per_s": step_rate(rows, end["step"], end["elapsed"]), "budget_steps": end["step"], "startup_s": wall - end["elapsed"]}


def registry_for(variant: str) -> Any:
    from toygpt.jobs import JobRegistry

    kind, *numbers = variant.split(":")
    if kind == "thread":
        return JobRegistry(max_jobs=1, num_threads=int(numbers[0]))
    if kind == "process":
        from toygpt.job_process import WorkerSettings

        return JobRegistry(max_jobs=1, num_threads=int(numbers[0]), worker=WorkerSettings(nice=int(numbers[1])))
    raise SystemExit(f"unknown variant {variant!r}: cli, thread:T or process:T:N")


def run_app(variant: str, corpus: str, seconds: float, name: str, pages: Pages | None) -> dict[str, Any]:
    """One app job (as the Training page starts it); with ``pages``, rerun them until it ends."""
    registry = registry_for(variant)
    started = time.perf_counter()
    job = registry.start(spec_for(corpus, seconds, name))
    first_step = None
    latencies: dict[str, list[float]] = defaultdict(list)
    while not job.done:
        snap = job.snapshot()
        if first_step is None and snap.step > 0:
            first_step = time.perf_counter() - started
        if pages is not None and first_step is not None:
            page, took = pages.rerun()
            if not job.done:  # a rerun that overlapped the end is not a busy sample
                latencies[page].append(took)
        else:
            time.sleep(0.05)
    job.wait(60)
    snap = job.snapshot()
    if snap.status != "finished":
        raise SystemExit(f"{variant}: the job ended {snap.status}: {snap.message}\n{snap.error_detail}")
    return {"steps_per_s": step_rate(snap.metrics, snap.step, snap.elapsed), "budget_steps": snap.step,
            "startup_s": first_step or float("nan"), "latency": latencies}


class Pages:
    """The explorer's attention view and the tokenizer page, rerun through AppTest in this
    process (what a Streamlit server does: scripts run on its threads), each with new input."""

    def __init__(self, text: str, tok_chars: int) -> None:
        from streamlit.testing.v1 import AppTest

        from toygpt.runs import DEMO_RUN

        self.text, self.tok_chars, self.turn = text, tok_chars, 0
        self.explorer = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        self.explorer.session_state["active_run"] = DEMO_RUN
        self.explorer.run()
        self.explorer.switch_page("pages/explore.py").run()
        self.explorer.segmented_control(key="explore_view").set_value("Attention").run()
        self.tokenizer = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        self.tokenizer.run()
        self.tokenizer.switch_page("pages/tokenizer.py").run()
        for at in (self.explorer, self.tokenizer):
            assert not at.exception, at.exception
        for _ in range(4):  # warm what a long-lived server would have warm (imports, caches)
            self.rerun()

    def _window(self, size: int) -> str:
        start = (self.turn * 7919) % max(1, len(self.text) - size)
        return self.text[start:start + size]

    def rerun(self) -> tuple[str, float]:
        """One page rerun with fresh input: (page, seconds)."""
        self.turn += 1
        if self.turn % 2:
            page, at, widget, text = "explorer attention, 64 tokens", self.explorer, "explore_prompt", self._window(64)
        else:
            page, at, widget, text = f"tokenizer, {self.tok_chars:,} chars", self.tokenizer, "tok_text", self._window(self.tok_chars)
        started = time.perf_counter()
        at.text_area(key=widget).input(text).run()
        took = time.perf_counter() - started
        assert not at.exception, at.exception
        return page, took

    def idle(self, count: int) -> dict[str, list[float]]:
        latencies: dict[str, list[float]] = defaultdict(list)
        for _ in range(count):
            page, took = self.rerun()
            latencies[page].append(took)
        return latencies


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, list[dict[str, Any]]], idle: dict[str, list[float]], cli: str) -> None:
    cli_rate = median([r["steps_per_s"] for r in results.get(cli, [])])
    print(f"\n{'variant':<28}{'steps/s':>9}{'× CLI':>8}{'steps done':>12}{'start-up s':>12}   per round")
    for variant, rows in results.items():
        rate = median([r["steps_per_s"] for r in rows])
        rounds = " ".join(f"{r['steps_per_s']:.1f}" for r in rows)
        done, startup = median([r["budget_steps"] for r in rows]), median([r["startup_s"] for r in rows])
        print(f"{variant:<28}{rate:>9.2f}{rate / cli_rate:>8.2f}{done:>12.0f}{startup:>12.1f}   {rounds}")
    print(f"\n{'page rerun (median ms)':<34}{'idle':>8}" + "".join(f"{v:>22}" for v in results if "pages" in v))
    for page, times in idle.items():
        line = f"{page:<34}{1000 * median(times):>8.0f}"
        for variant, rows in results.items():
            if "pages" in variant:
                busy = median([t for r in rows for t in r["latency"].get(page, [])])
                line += f"{1000 * busy:>12.0f} ({busy / median(times):.2f}×)"
        print(line)
    print("\ntargets: app/CLI steps/s ≥ 0.8 (the app variants alone); busy/idle page latency ≤ 1.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each training's time budget")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="cli,thread:1,process:2:10")
    parser.add_argument("--tok-chars", type=int, default=10_000)
    parser.add_argument("--idle-reruns", type=int, default=8, help="idle page reruns per round")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    home, corpus = setup_home()
    from toygpt import data as corpora

    text = corpora.load_corpus(corpus, 0)
    print(f"corpus {corpus}, small preset, {args.seconds:g} s per training, {args.rounds} rounds; "
          f"load before: {os.getloadavg()[0]:.2f}; home {home}", flush=True)  # fmt: skip
    pages = Pages(text, args.tok_chars)
    variants = args.variants.split(",")
    tasks = [v if v == "cli" else t for v in variants for t in ([v] if v == "cli" else [v, f"{v} + pages"])]
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    idle: dict[str, list[float]] = defaultdict(list)
    for round_ in range(args.rounds):
        shift = round_ % (len(tasks) + 1)
        order = ([*tasks, "idle pages"] * 2)[shift:shift + len(tasks) + 1]
        for task in order:
            name = f"r{round_}-{task.replace(':', '-').replace(' + ', '-').replace(' ', '-')}"
            if task == "idle pages":
                for page, times in pages.idle(args.idle_reruns).items():
                    idle[page] += times
            elif task == "cli":
                results[task].append(run_cli(corpus, args.seconds, name))
            else:
                with_pages = pages if task.endswith("+ pages") else None
                results[task].append(run_app(task.split(" ")[0], corpus, args.seconds, name, with_pages))
            done = results[task][-1]["steps_per_s"] if task in results else float("nan")
            print(f"round {round_ + 1}: {task:<24} {done:6.2f} steps/s   load {os.getloadavg()[0]:.2f}", flush=True)
    report(results, idle, "cli")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "idle": idle}, indent=1))


if __name__ == "__main__":
    main()
