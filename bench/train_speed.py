"""Benchmark: toygpt's default training step against nanoGPT's training loop, same run.

    python bench/train_speed.py [--batch 12] [--rounds 8] [--steps 15] [--threads 2]
                                [--nanogpt PATH/TO/nanoGPT/model.py] [--startup]

The common CPU recipe: `small` preset (4L/4H/128, block 64), batch 12, vocabulary 65 (the
characters of tiny shakespeare). Each variant takes ``--steps`` steps per round and the rounds
alternate between the variants, so a burst of load from other processes hits them all alike;
medians over every timed step.

**The baseline** is nanoGPT's loop as written (github.com/karpathy/nanoGPT, ``model.py`` and
``train.py`` with ``config/train_shakespeare_char.py`` and its README's CPU settings: dropout 0,
bias on), re-written here in a few lines with the same maths so this file needs nothing
downloaded: separate ``c_attn``/``c_proj`` Linears, LayerNorm with bias, exact GELU,
``F.scaled_dot_product_attention(is_causal=True)``, tied ``wte``/``lm_head``; its
``configure_optimizers`` (AdamW, weight decay on ≥2-D tensors only, betas (0.9, 0.99); fused
only on CUDA, so the default multi-tensor AdamW on a CPU); and its loop: a batch from a fresh
``np.memmap`` of the token file, forward, backward, ``clip_grad_norm_(1.0)``, step,
``zero_grad(set_to_none=True)``. It runs eagerly in float32 (the README's CPU line passes
``--compile=False``). ``--nanogpt model.py`` also times nanoGPT's own model file in the same
rounds, to check that this re-written baseline takes the same time per step.

**Ours**: ``Trainer.train_step`` (a fresh batch from ``TokenData.get_batch``, the lr schedule,
clipping, the NaN check) with ``TrainConfig``'s defaults — torch.compile where a C++ compiler
is found (``compile="auto"``), fused AdamW — in the precision ``"auto"`` picks on this CPU,
then with the precision forced each way (float32: what a CPU without fast bfloat16 gets;
bfloat16: autocast, fast only with AVX-512 BF16 or AMX), and the eager float32 step for scale.

``--startup`` measures what compilation costs before the first step, each in a fresh process:
with an empty compile cache (the first run on a machine) and then with the cache it left (every
later run).

Also timed in the same rounds: the step's matrix products alone (``matmuls_alone``, float32, no
Python and nothing between them) — a floor under any step of this model here, so
``baseline / floor`` is the most any float32 step could gain on this CPU.

Prints median ms/step, tokens/s, achieved GFLOP/s (``flops_per_token``) and the ratio to the
baseline, with the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toygpt.data import TokenData  # noqa: E402
from toygpt.model import GPT, flops_per_token, preset  # noqa: E402
from toygpt.train import TrainConfig  # noqa: E402
from toygpt.trainer import Trainer  # noqa: E402

VOCAB = 65
OPEN_SESSIONS: list[object] = []

# --------------------------------------------------------------------------------------------
# The baseline: nanoGPT's maths and loop, re-written (the same operations, in the same order)
# --------------------------------------------------------------------------------------------


class NanoAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.attn_dropout, self.resid_dropout = nn.Dropout(0.0), nn.Dropout(0.0)
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class NanoBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)  # with bias, eps 1e-5
        self.attn = NanoAttention(n_embd, n_head)
        self.c_fc, self.gelu, self.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.dropout(self.c_proj(self.gelu(self.c_fc(self.ln_2(x)))))


class NanoGPTBaseline(nn.Module):
    """nanoGPT's GPT with bias and no dropout: embeddings, pre-LN blocks, ln_f, tied head."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(0.0)
        self.h = nn.ModuleList([NanoBlock(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():  # N(0, 0.02), zero biases; residual projections 0.02/sqrt(2·n_layer)
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nanogpt_optimizer(model: nn.Module, weight_decay: float = 0.1, lr: float = 1e-3) -> torch.optim.AdamW:
    """nanoGPT's ``configure_optimizers`` on a CPU: two groups, betas (0.9, 0.99), not fused."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # fmt: skip
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def nanogpt_loop_step(model: nn.Module, token_file: Path, batch: int, block: int = 64) -> Callable[[], None]:
    """One iteration of nanoGPT's ``train.py`` loop (no gradient accumulation, no GradScaler
    work on a CPU in float32): its ``get_batch`` re-opens the token file as a memmap each call."""
    optimizer = nanogpt_optimizer(model)
    model.train()

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(token_file, dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - block, (batch,))
        x = torch.stack([torch.from_numpy(data[i : i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    def step() -> None:
        x, y = get_batch()
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def nanogpt_own_model(path: Path) -> nn.Module:
    """nanoGPT's ``GPT`` from its own model file (given with ``--nanogpt``), same shape."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.GPTConfig(block_size=64, vocab_size=VOCAB, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=True)
    return module.GPT(config)


def matmuls_alone(batch: int, n_layer: int = 4, n_embd: int = 128, n_head: int = 4, block: int = 64) -> Callable[[], None]:
    """Only the matrix products of one training step of this shape, on ready-made inputs: every
    Linear forward (tokens × in @ in × out) and its two backward products (the input's and the
    weight's gradient), and attention's batched products (QKᵀ, AV and their four gradients).
    Nothing else, no Python: a floor under any step of this model on this machine, float32."""
    tokens, head = batch * block, n_embd // n_head
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    linears = [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, 4 * n_embd), (4 * n_embd, n_embd)] * n_layer
    linears.append((n_embd, VOCAB))  # lm_head
    products = []
    for fan_in, fan_out in linears:
        x, w, g = rand(tokens, fan_in), rand(fan_in, fan_out), rand(tokens, fan_out)
        products += [(x, w), (g, w.t()), (g.t(), x)]  # forward, grad of the input, grad of the weight
    bh = batch * n_head
    q, keys_t, v, p = rand(bh, block, head), rand(bh, head, block), rand(bh, block, head), rand(bh, block, block)
    # forward: QKᵀ, then AV; backward: the gradients of A (dY Vᵀ), V (Aᵀ dY), Q (dS K) and K (dSᵀ Q)
    batched = [(q, keys_t), (p, v), (v, keys_t), (p.transpose(1, 2), v), (p, q), (p.transpose(1, 2), q)]
    batched = batched * n_layer

    def step() -> None:
        for a, b in products:
            torch.mm(a, b)
        for a, b in batched:
            torch.bmm(a, b)

    return step


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------


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


def first_step_seconds(precision: str) -> dict[str, float]:
    """In this (fresh) process: seconds from a new Trainer to the end of its first step, and of
    the second step (compiled or not, the steady pace)."""
    data = random_tokens()
    started = time.perf_counter()
    step, trainer = trainer_step(12, data, precision=precision)
    step()
    first = time.perf_counter() - started
    started = time.perf_counter()
    step()
    return {"first": first, "second": time.perf_counter() - started, "compiled": trainer.compiled}


def startup(args: argparse.Namespace) -> None:
    """First-step time in fresh processes: an empty compile cache, then the cache it left."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        rows = []
        for label in ("empty compile cache (first run)", "warm cache (later runs)", "warm cache again"):
            command = [sys.executable, __file__, "--first-step", args.precision, "--threads", str(args.threads)]
            started = time.perf_counter()
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rows.append((label, time.perf_counter() - started, result))
    print(f"start-up, precision {args.precision}, fresh process each (load average {os.getloadavg()[0]:.1f}):")
    print(f"{'':34s} {'process s':>9s} {'new Trainer → 1st step done, s':>31s} {'2nd step ms':>11s} compiled")
    for label, total, r in rows:
        print(f"{label:34s} {total:9.1f} {r['first']:31.1f} {1000 * r['second']:11.1f} {r['compiled']}")


def random_tokens(n: int = 200_000) -> TokenData:
    return TokenData(torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(0)), VOCAB)


def warm_up(name: str, step: Callable[[], None]) -> None:
    started = time.perf_counter()
    for _ in range(3):  # allocations, optimizer state, autocast caches; compilation
        step()
    print(f"  {name}: first 3 steps {time.perf_counter() - started:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant per round")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU seconds per step (steadier on a busy machine; with "
                             "--threads 1 it is the work of the step, without the wait for a core)")
    parser.add_argument("--nanogpt", type=Path, help="nanoGPT's model.py, to time its own model too (a check)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the forced-bfloat16 variants")
    parser.add_argument("--startup", action="store_true", help="measure compile start-up in fresh processes")
    parser.add_argument("--precision", default="fp32", help="precision of --startup")
    parser.add_argument("--first-step", help=argparse.SUPPRESS)  # internal: one fresh-process probe
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.first_step:
        print(json.dumps(first_step_seconds(args.first_step)))
        return 0
    if args.startup:
        startup(args)
        return 0
    load = os.getloadavg()[0]
    data = random_tokens()
    config = preset("small", vocab_size=VOCAB)
    tokens = args.batch * config.block_size
    flops = flops_per_token(config)
    token_file = Path(tempfile.mkstemp(suffix=".bin")[1])
    data.train.numpy().astype(np.uint16).tofile(token_file)  # nanoGPT's train.bin

    variants: dict[str, Callable[[], None]] = {}
    variants["nanoGPT loop, eager fp32 (baseline)"] = nanogpt_loop_step(
        NanoGPTBaseline(VOCAB, 64, 4, 4, 128), token_file, args.batch)
    if args.nanogpt:
        variants["nanoGPT's own model.py (check)"] = nanogpt_loop_step(nanogpt_own_model(args.nanogpt), token_file, args.batch)
    default_step, trainer = trainer_step(args.batch, data)
    precision = "bf16 autocast" if trainer.autocast else "fp32"
    variants[f"toygpt default step ({precision}, {trainer.compile_reason})"] = default_step
    variants["toygpt default, precision=fp32"] = trainer_step(args.batch, data, precision="fp32")[0]
    if not args.no_bf16:
        variants["toygpt default, precision=bf16"] = trainer_step(args.batch, data, precision="bf16")[0]
    variants["toygpt eager (compile=False), fp32"] = trainer_step(args.batch, data, precision="fp32", compile=False)[0]
    variants["its matrix products alone (a floor), fp32"] = matmuls_alone(args.batch)
    if not args.no_bf16:
        variants["toygpt eager (compile=False), bf16"] = trainer_step(args.batch, data, precision="bf16", compile=False)[0]

    print("warming up (the compiled variants compile now):")
    for name, step in variants.items():
        warm_up(name, step)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            for _ in range(args.steps):
                started = clock()
                step()
                times[name].append(clock() - started)
    token_file.unlink()

    fast_bf16 = "has" if trainer_step(1, data, precision="auto")[1].autocast else "has no"
    print(f"\nsmall preset (4L/4H/128, block 64, vocab {VOCAB}), batch {args.batch} = {tokens} tokens/step, "
          f"{args.threads} threads, {args.clock} clock; this CPU {fast_bf16} fast bfloat16; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end, on {os.cpu_count()} cores; {args.rounds} rounds × {args.steps} steps\n")
    print(f"{'variant':52s} {'median ms':>9s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'vs baseline':>11s}")
    baseline = statistics.median(next(iter(times.values())))
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:52s} {1000 * median:9.1f} {tokens / median:9,.0f} {flops * tokens / median / 1e9:8.1f} "
              f"{baseline / median:10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
