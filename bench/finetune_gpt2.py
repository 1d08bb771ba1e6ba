"""Benchmark: fine-tuning a GPT-2-124M-shaped model on CPU, training only the last k blocks.

    python bench/finetune_gpt2.py [--blocks 1,2,12,all] [--batch 4] [--context 128] [--steps 5] [--threads 2]

Random weights of GPT-2 124M's exact shape (12 layers, 12 heads, 768 channels, 50,257 tokens):
the cost of a step does not depend on the values, so no download is needed. Each setting runs
in its own process (peak RSS is a per-process number), float32, on the `copy` corpus encoded
with GPT-2's tokenizer. Prints the median seconds per step, the process's peak RSS, toygpt's
estimate of the memory, and ratios against training every parameter ("all"), measured in the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(blocks: int | None, batch: int, context: int, steps: int, threads: int) -> dict:
    """One setting, in this process: median s/step over ``steps`` steps after one warm-up step."""
    import torch

    from toygpt import data
    from toygpt.estimates import estimate
    from toygpt.model import GPT, preset
    from toygpt.tokenizers import get_tokenizer
    from toygpt.train import TrainConfig
    from toygpt.trainer import Trainer

    torch.set_num_threads(threads)
    model_config = preset("gpt2")
    config = TrainConfig(batch_size=batch, block_size=context, max_steps=steps + 1, train_last_blocks=blocks,
                         precision="fp32", max_snapshots=0, checkpoint_interval=0, eval_interval=10**6)  # fmt: skip
    tokens = data.prepare(data.load_corpus("copy"), get_tokenizer("gpt2"))
    trainer = Trainer(GPT(model_config, seed=0), tokens, config)
    times = []
    with trainer.session():
        for _ in range(steps + 1):
            started = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - started)
    est = estimate(model_config, config)
    return {"blocks": blocks or "all", "s_per_step": statistics.median(times[1:]),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "estimate_bytes": est["total_memory_bytes"], "trainable": trainer.trainable}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="1,2,12,all", help="comma-separated k values; 'all' trains everything")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one setting, print JSON
    args = parser.parse_args()
    if args.one is not None:
        blocks = None if args.one == "all" else int(args.one)
        print(json.dumps(measure(blocks, args.batch, args.context, args.steps, args.threads)))
        return
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} CPUs; batch {args.batch}, "
          f"context {args.context}, {args.steps} timed steps, {args.threads} threads, float32, random weights")  # fmt: skip
    rows = []
    for blocks in args.blocks.split(","):
        command = [sys.executable, __file__, "--one", blocks, "--batch", str(args.batch), "--context",
                   str(args.context), "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True, cwd=ROOT)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"k={row['blocks']!s:>4}: {row['trainable']:>11,} parameters learn, {row['s_per_step']:6.2f} s/step, "
              f"peak RSS {row['peak_rss_bytes'] / 2**20:7,.0f} MiB (toygpt's estimate "
              f"{row['estimate_bytes'] / 2**20:,.0f} MiB)", flush=True)  # fmt: skip
    base = next((r for r in rows if r["blocks"] == "all"), None)
    if base:
        print("\nagainst training every parameter (k=all), same run:")
        for row in rows:
            print(f"k={row['blocks']!s:>4}: time {row['s_per_step'] / base['s_per_step']:.2f}x, "
                  f"peak RSS {row['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x")


if __name__ == "__main__":
    main()
