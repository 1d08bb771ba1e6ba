"""Generation speed: tokens/s for 500 new tokens with the ``small`` preset (vocab 65), with and
without the KV cache, measured in the same run.

    python bench/generate.py                  # 1 and 2 threads, 5 rounds each
    python bench/generate.py --threads 2 --rounds 3 --tokens 300

Ways to generate the same kind of text:
* ``cache``      ``generate(use_cache=True)``: one position per token, the window jumps when full;
                 each new token through ``sample.decode_step`` (the one-token fast path)
* ``cache, fwd`` the same, each new token through the model's own ``GPT.forward`` with the KV
                 cache instead of the fast path (same tokens, checked): what the fast path buys
* ``no cache``   ``generate(use_cache=False)``: the same windows, recomputed in full every token
                 (it produces exactly the same tokens, which is checked)
* ``crop/step``  no cache, cropping to the last block_size tokens at every step: the classic
                 nanoGPT loop (``window_keep=block_size``), so every step reads 64 tokens
* ``nanoGPT``    the same crop-every-step loop written as nanoGPT writes it (``torch.no_grad``,
                 ``torch.multinomial``, ``torch.cat`` on the ids), outside toygpt.sample: the
                 reference point for "a plain full-recompute loop"

Rounds interleave the modes, so a neighbour's load on a shared machine hits them alike; each
figure is the median over rounds. Ratios are against the two full-recompute baselines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

import toygpt.sample  # noqa: E402
from toygpt.model import GPT, KVCache, preset  # noqa: E402
from toygpt.sample import generate  # noqa: E402

MODES = {
    "cache": dict(use_cache=True),
    "cache, fwd": dict(use_cache=True),
    "no cache": dict(use_cache=False),
    "crop/step": dict(use_cache=False, window_keep=64),
    "nanoGPT": None,
}


@torch.no_grad()
def nanogpt_loop(model: GPT, n_tokens: int, seed: int) -> list[int]:
    """nanoGPT's ``GPT.generate``: crop, full forward, softmax, multinomial, append."""
    generator = torch.Generator().manual_seed(seed)
    idx = torch.zeros((1, 1), dtype=torch.long)
    for _ in range(n_tokens):
        logits, _ = model(idx[:, -model.config.block_size :])
        probs = torch.softmax(logits[:, -1, :], dim=-1)
        idx = torch.cat((idx, torch.multinomial(probs, 1, generator=generator)), dim=1)
    return idx[0, 1:].tolist()


def forward_step(model: GPT, token_id: int, cache: KVCache, params: object = None) -> torch.Tensor:
    """``decode_step``'s job done by the model's own forward pass with the KV cache."""
    return model(torch.tensor([[token_id]]), kv_cache=cache)[0][0, -1]


def tokens_per_second(model: GPT, n_tokens: int, seed: int, mode: str) -> tuple[float, list[int]]:
    kwargs = MODES[mode]
    fast_path = toygpt.sample.decode_step
    if mode == "cache, fwd":
        toygpt.sample.decode_step = forward_step
    try:
        started = time.perf_counter()
        if kwargs is None:
            ids = nanogpt_loop(model, n_tokens, seed)
        else:
            ids = [step.token_id for step in generate(model, [0], n_tokens, seed=seed, **kwargs)]
        return n_tokens / (time.perf_counter() - started), ids
    finally:
        toygpt.sample.decode_step = fast_path


def measure(model: GPT, n_tokens: int, rounds: int) -> dict[str, float]:
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    tokens_per_mode = {}
    tokens_per_second(model, 50, 0, "cache")  # warm up allocator and kernels
    for round_ in range(rounds):
        for mode in MODES:
            speed, ids = tokens_per_second(model, n_tokens, round_, mode)
            speeds[mode].append(speed)
            tokens_per_mode[mode] = ids
    if not tokens_per_mode["cache"] == tokens_per_mode["cache, fwd"] == tokens_per_mode["no cache"]:
        raise SystemExit("cache, cache via forward and no-cache generations differ: a bug, not a benchmark result")
    return {mode: statistics.median(values) for mode, values in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    args = parser.parse_args()
    model = GPT(preset("small", vocab_size=65), seed=0).eval()
    print(f"small preset (4L/4H/128, block 64, vocab 65), {args.tokens} tokens, median of {args.rounds} rounds")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch {torch.__version__}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        result = measure(model, args.tokens, args.rounds)
        cells = "  ".join(f"{mode} {speed:7.0f} tok/s" for mode, speed in result.items())
        ratios = "  ".join(f"{result['cache'] / result[mode]:.2f}x vs {mode}" for mode in list(MODES)[1:])
        print(f"threads={threads}:  {cells}")
        print(f"            cache: {ratios}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
