"""Benchmark: validation loss on tiny shakespeare (characters) after a fixed wall-clock budget.

    python bench/loss_at_budget.py [--seconds 180] [--no-baseline] [--threads 2] [--[no-]compile] [--app]

Trains the `small` preset (4L/4H/128, block 64) for ``--seconds`` with our defaults
(``TrainConfig``: lr 3e-3, 50 warmup steps, cosine to lr/10 *over the time budget*, AdamW
betas (0.9, 0.99), weight decay 0.1, clip 1.0, batch 12, bf16 autocast where the CPU has it,
torch.compile where a C++ compiler is found — its start-up counts against the budget),
then measures the val loss on 200 random batches of 12 × 64 (as nanoGPT's ``estimate_loss``).

The baseline, trained in the same run for the same budget: the well-known CPU recipe (nanoGPT's
shakespeare_char on a laptop: 2000 iterations, lr 1e-3 with 100 warmup steps and a cosine to
1e-4 at step 2000, betas (0.9, 0.99), batch 12, float32, eager), stopped at 2000 steps or the budget.
``--app`` also trains the same budget as the app does: a job started through the server's
``JobRegistry`` as the Training page starts it (its own worker process, 2 threads, nice 10, the
page's defaults: lr 3e-3, batch 12, 50 warmup steps, a validation and a sample every 200 steps,
which count against the budget as they do for a learner), then loads the run's last weights and
measures them with the same 200 batches.

The corpus comes from the toygpt cache, or from ../shared/data/tinyshakespeare.txt (or
$TOYGPT_SHAKESPEARE), which seeds the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toygpt import data  # noqa: E402
from toygpt.model import GPT, preset  # noqa: E402
from toygpt.tokenizers import CharTokenizer  # noqa: E402
from toygpt.train import TrainConfig, estimate_loss  # noqa: E402
from toygpt.trainer import train  # noqa: E402


def shakespeare() -> str:
    if not data.cached_corpus_path("shakespeare").is_file():
        local = Path(os.environ.get("TOYGPT_SHAKESPEARE", ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
        if local.is_file():
            data.add_corpus_file("shakespeare", local)
    return data.load_corpus("shakespeare")


def run(name: str, token_data: data.TokenData, config: TrainConfig) -> dict:
    model = GPT(preset("small", vocab_size=token_data.vocab_size), seed=config.seed)
    started = time.perf_counter()
    end = train(model, token_data, config)
    val = estimate_loss(model, token_data, 12, 64, batches=200, seed=1234, splits=("val",))["val"]
    return {"name": name, "steps": end["step"], "seconds": time.perf_counter() - started, "val": val}


def run_app(seconds: float, token_data: data.TokenData) -> dict:
    """The same budget trained as an app job (see the module docstring), measured like the others."""
    import tempfile

    from toygpt.job_process import WorkerSettings
    from toygpt.jobs import JobRegistry
    from toygpt.pipeline import TrainSpec
    from toygpt.runs import open_run

    name = "bench-loss-app"
    os.environ["TOYGPT_RUNS_DIR"] = tempfile.mkdtemp(prefix="toygpt-bench-loss-")  # the worker inherits it
    config = TrainConfig(max_seconds=seconds, max_steps=None, learning_rate=3e-3, batch_size=12, warmup_steps=50,
                         eval_interval=200, sample_interval=200, seed=0)
    spec = TrainSpec(corpus="shakespeare", tokenizer="char", model=preset("small"), name=name, train=config)
    registry = JobRegistry(max_jobs=1, num_threads=2, worker=WorkerSettings(nice=10, spare=False))  # the server's
    started = time.perf_counter()
    job = registry.start(spec)
    job.wait(seconds + 600)
    snap = job.snapshot()
    if snap.status != "finished":
        raise SystemExit(f"the app job ended {snap.status}: {snap.message}")
    loaded = open_run(snap.run_id or name).load_model("latest")
    val = estimate_loss(loaded.model, token_data, 12, 64, batches=200, seed=1234, splits=("val",))["val"]
    return {"name": "app job (worker, 2 threads, nice 10, page defaults)", "steps": snap.step,
            "seconds": time.perf_counter() - started, "val": val}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile our run (default: TrainConfig's, 'auto': where a C++ compiler is found)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--app", action="store_true", help="also train the budget as an app job (a worker process)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = shakespeare()
    tokenizer = CharTokenizer.from_text(text)
    token_data = data.prepare(text, tokenizer)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    common = dict(max_seconds=args.seconds, eval_interval=10**9, max_snapshots=0, checkpoint_interval=0, device="cpu")
    results = []
    if not args.no_baseline:
        baseline = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_steps=100, max_steps=2000, precision="fp32",
                               compile=False, **common)
        results.append(run("common CPU recipe (2000 steps, lr 1e-3, fp32)", token_data, baseline))
    compile_setting = TrainConfig.compile if args.compile is None else args.compile
    ours = TrainConfig(batch_size=args.batch, learning_rate=args.lr, compile=compile_setting, max_steps=None, **common)
    results.append(run(f"toygpt defaults (lr {args.lr:g}, batch {args.batch}, compile {compile_setting})", token_data, ours))
    if args.app:
        results.append(run_app(args.seconds, token_data))
    print(f"tiny shakespeare, char tokenizer (vocab {tokenizer.vocab_size}), small preset, {args.seconds:g} s "
          f"each, {args.threads} threads, load average at start {load:.1f} on {os.cpu_count()} cores\n")
    print(f"{'run':48s} {'steps':>6s} {'seconds':>8s} {'val loss':>9s}")
    for r in results:
        print(f"{r['name']:48s} {r['steps']:6d} {r['seconds']:8.1f} {r['val']:9.4f}")
    if not args.no_baseline:
        for r in results[1:]:
            print(f"val loss / baseline, {r['name']}: {r['val'] / results[0]['val']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
