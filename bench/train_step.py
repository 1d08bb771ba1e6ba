"""Benchmark: one training step (forward + backward + AdamW) of the `small` preset.

    python bench/train_step.py [--preset small] [--batch 12] [--steps 30] [--threads 2]

Prints the median milliseconds per step, tokens/s, and the achieved GFLOP/s (from
``flops_per_token``) as a fraction of the float32 matmul peak, measured in the same run on
1024×1024 squares. Variants are compared against the plain eager step measured here too.
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

from toygpt.model import GPT, flops_per_token, preset  # noqa: E402


def median_ms(step: Callable[[], None], steps: int, warmup: int) -> float:
    for _ in range(warmup):  # first steps allocate buffers and the optimizer's state
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    ms = median_ms(lambda: torch.mm(a, b), repeats, warmup=3)
    return 2 * size**3 / (ms / 1000) / 1e9


def training_step(model: GPT, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()

    return step


def measure(args: argparse.Namespace, *, fused_adamw: bool = False, fused_attention: bool = True) -> float:
    config = preset(args.preset, vocab_size=args.vocab)
    model = GPT(config, seed=0).train()
    model.set_attention(fused_attention)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused_adamw or None)
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (args.batch, config.block_size), generator=generator)
    y = torch.randint(0, config.vocab_size, (args.batch, config.block_size), generator=generator)
    return median_ms(training_step(model, optimizer, x, y), args.steps, args.warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab", type=int, default=65, help="vocabulary size (65: characters of shakespeare)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = preset(args.preset, vocab_size=args.vocab)
    tokens = args.batch * config.block_size
    flops = flops_per_token(config)

    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > (os.cpu_count() or 1):  # other processes share the cores: every figure below suffers
        print(f"note: load average {busy:.1f} on {os.cpu_count()} cores; expect slow, noisy figures "
              "(more threads than free cores makes each step wait for the slowest thread)\n")
    peak = matmul_peak_gflops()
    print(f"preset {args.preset} ({config.n_layer}L/{config.n_head}H/{config.n_embd}, block {config.block_size}, "
          f"vocab {args.vocab}), batch {args.batch} = {tokens} tokens/step, {args.threads} threads")
    print(f"float32 matmul peak (1024² @ 1024², same run): {peak:.1f} GFLOP/s")
    print(f"training cost: {flops / 1e6:.2f} MFLOP/token (flops_per_token; counts full-T attention)\n")
    print(f"{'variant':34s} {'median ms':>9s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of peak':>8s} {'vs eager':>9s}")
    variants = [
        ("eager step, AdamW (baseline)", {}),
        ("fused AdamW (fused=True)", dict(fused_adamw=True)),
        ("explicit attention (inspectable)", dict(fused_attention=False)),
    ]
    baseline = None
    for name, options in variants:
        ms = measure(args, **options)
        baseline = baseline or ms
        per_second = tokens / (ms / 1000)
        achieved = flops * per_second / 1e9
        print(f"{name:34s} {ms:9.1f} {per_second:9,.0f} {achieved:8.1f} {achieved / peak:8.1%} {baseline / ms:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
