"""Benchmark: our trainer's step against a plain eager PyTorch step of the same model.

    python bench/train_speed.py [--batch 12] [--rounds 8] [--steps 15] [--threads 2] [--compile]

The common CPU recipe: `small` preset (4L/4H/128, block 64), batch 12, vocabulary 65. Each
variant takes ``--steps`` steps per round and the rounds alternate between the variants, so a
burst of load from other processes hits them all alike; medians over every timed step.

* plain eager step (baseline): float32, fused-kernel attention, AdamW (default foreach),
  gradient clipping — what a straightforward training loop does;
* our trainer (``Trainer.train_step``: a fresh batch from ``TokenData.get_batch``, the lr
  schedule, clipping, the NaN check) with ``TrainConfig``'s defaults, then forced to float32.

Prints median ms/step, tokens/s, achieved GFLOP/s (``flops_per_token``) and its fraction of the
float32 matmul peak measured in this run (1024² @ 1024²), and the ratio to the plain step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toygpt.data import TokenData  # noqa: E402
from toygpt.model import GPT, flops_per_token, preset  # noqa: E402
from toygpt.train import TrainConfig  # noqa: E402
from toygpt.trainer import Trainer  # noqa: E402

VOCAB = 65
OPEN_SESSIONS: list[object] = []


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 20) -> float:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def random_tokens(n: int = 200_000) -> TokenData:
    return TokenData(torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(0)), VOCAB)


def plain_step(batch: int, data: TokenData) -> Callable[[], None]:
    """A plain eager step: the loop anyone writes first (nanoGPT's, minus its extras)."""
    model = GPT(preset("small", vocab_size=VOCAB), seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        x, y = data.get_batch("train", batch, 64, generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def trainer_step(batch: int, data: TokenData, **changes) -> tuple[Callable[[], None], Trainer]:
    config = TrainConfig(batch_size=batch, max_steps=1_000_000, device="cpu", **changes)
    trainer = Trainer(GPT(preset("small", vocab_size=VOCAB), seed=0), data, config)
    session = trainer.session()
    session.__enter__()  # train mode, attention path, compile: open for the whole benchmark
    OPEN_SESSIONS.append(session)  # (a dropped reference would close it: the finally would run)

    def step() -> None:
        if not trainer.train_step():
            raise RuntimeError("the loss diverged in the benchmark")

    return step, trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant per round")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--compile", action="store_true", help="add our trainer with torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    data = random_tokens()
    config = preset("small", vocab_size=VOCAB)
    tokens = args.batch * config.block_size
    flops = flops_per_token(config)

    variants: dict[str, Callable[[], None]] = {"plain eager step (baseline)": plain_step(args.batch, data)}
    ours, trainer = trainer_step(args.batch, data)
    precision = "bf16 autocast" if trainer.autocast else "fp32"
    variants[f"our trainer, defaults ({precision})"] = ours
    variants["our trainer, precision=fp32"] = trainer_step(args.batch, data, precision="fp32")[0]
    if args.compile:
        step, _ = trainer_step(args.batch, data, compile=True)
        started = time.perf_counter()
        step()  # compiles
        print(f"torch.compile: first step took {time.perf_counter() - started:.1f} s (compilation)")
        variants[f"our trainer, compile=True ({precision})"] = step

    for step in variants.values():  # warm up: allocations, optimizer state, autocast caches
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            for _ in range(args.steps):
                started = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - started)

    peak = matmul_peak_gflops()
    peak_bf16 = matmul_peak_gflops(torch.bfloat16)
    print(f"small preset (4L/4H/128, block 64, vocab {VOCAB}), batch {args.batch} = {tokens} tokens/step, "
          f"{args.threads} threads, load average at start {load:.1f} on {os.cpu_count()} cores")
    print(f"matmul peak (1024², same run): float32 {peak:.0f} GFLOP/s, bfloat16 {peak_bf16:.0f} GFLOP/s; "
          f"{flops / 1e6:.2f} MFLOP/token; {args.rounds} rounds × {args.steps} steps per variant\n")
    print(f"{'variant':42s} {'median ms':>9s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of fp32 peak':>12s} {'vs plain':>8s}")
    baseline = statistics.median(next(iter(times.values())))
    for name, seconds in times.items():
        median = statistics.median(seconds)
        achieved = flops * tokens / median / 1e9
        print(f"{name:42s} {1000 * median:9.1f} {tokens / median:9,.0f} {achieved:8.1f} "
              f"{achieved / peak:12.0%} {baseline / median:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
