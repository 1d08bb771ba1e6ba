"""What a run will cost, before running it: parameters, memory and time from the configs
(``estimate``), the memory one step needs (``training_memory_bytes``, checked before a probe
allocates it), and a short probe of real steps on this machine (``measure_step_seconds``), or a
run's own pace (``recent_step_seconds``). The pages show these beside the actual figures."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from toygpt.limits import JOB_SHARE, check_memory
from toygpt.model import GPT, GPTConfig, flops_per_token, total_parameters
from toygpt.recurrent import LSTMConfig, LSTMLanguageModel, lstm_parameters
from toygpt.train import (
    Event,
    TrainConfig,
    autocast_dtype,
    choose_device,
    freeze_all_but_last_blocks,
    make_optimizer,
    trainable_parameters,
)

# --------------------------------------------------------------------------------------------
# What a run will cost, before running it
# --------------------------------------------------------------------------------------------

# Rough sustained training throughput, FLOP/s, float32: measured on a 2-core laptop-class CPU
# (bench/train_speed.py); GPUs are set conservatively. Only for ETAs shown before a run starts.
ASSUMED_FLOPS = {"cpu": 60e9, "mps": 1e12, "cuda": 20e12}


def activation_bytes(model_config: GPTConfig, batch_size: int, block_size: int) -> int:
    """Activations kept for the backward pass, float32, roughly: per layer about 16 numbers per
    token and channel (LayerNorm in/out, q/k/v, attention output, the 4× MLP before and after
    GELU, residuals) plus the T×T attention probabilities of each head; then the logits."""
    B, T, C, L = batch_size, block_size, model_config.n_embd, model_config.n_layer
    per_layer = 16 * B * T * C + 2 * B * model_config.n_head * T * T
    # logits, their log-softmax, the gradients of both, and lm_head's backward: measured ~5 copies
    # (0.9 MB of Chinese, 62,494 characters, small preset: 1,091 MiB grew where 3 copies said 720)
    logits = 5 * B * T * model_config.vocab_size
    return 4 * (L * per_layer + logits)


def training_memory_bytes(model_config: GPTConfig | LSTMConfig, batch_size: int, block_size: int) -> int:
    """Bytes one training step needs: weights, gradients and AdamW's two moments (16 bytes per
    parameter) plus the activations kept for the backward pass. A GPT's activations are
    ``activation_bytes``; an LSTM (``toygpt.recurrent``) keeps about 10 numbers per token and
    hidden unit per layer (its 4 gates before and after their nonlinearity, c and h) and the
    same ~5 copies of the logits."""
    if isinstance(model_config, LSTMConfig):
        B, T, H = batch_size, block_size, model_config.n_hidden
        activations = 4 * (model_config.n_layer * 10 * B * T * H + 5 * B * T * model_config.vocab_size)
        return 16 * lstm_parameters(model_config) + activations
    return 16 * total_parameters(model_config) + activation_bytes(model_config, batch_size, block_size)


def estimate(
    model_config: GPTConfig, train_config: TrainConfig, device: str = "cpu", seconds_per_step: float | None = None
) -> dict[str, Any]:
    """Parameters, memory (bytes) and time of a run, from the configs and a step time.

    Memory: the weights are 4 bytes per parameter; gradients and AdamW's two moments another 4
    each, but only for the parameters that learn (``train_last_blocks``); activations depend on
    batch, context and how many blocks the backward pass goes through (``activation_bytes``).
    Time: from ``seconds_per_step`` when given (measured: ``measure_step_seconds`` or a run's own
    pace), else from the FLOP count at ``ASSUMED_FLOPS`` (a guess: ``"measured": False``): the
    forward pass through every block, the backward pass (2× its forward) through the blocks that
    learn and the head (whose input gradient is needed even when it is frozen). Both add the
    validations (each batch of each split costs about a third of a training step: no backward).
    """
    params = total_parameters(model_config)
    last = train_config.train_last_blocks
    trainable = trainable_parameters(model_config, last)
    block = train_config.block_size or model_config.block_size
    tokens_per_step = train_config.batch_size * block
    shape = model_config.replace(block_size=block)
    if last is None:
        flops_per_step = flops_per_token(shape) * tokens_per_step
    else:
        backward = 2 * flops_per_token(shape.replace(n_layer=last), training=False)
        flops_per_step = (flops_per_token(shape, training=False) + backward) * tokens_per_step
    measured = seconds_per_step is not None
    if seconds_per_step is None:
        seconds_per_step = flops_per_step / ASSUMED_FLOPS.get(device, ASSUMED_FLOPS["cpu"])
    # a validation every eval_interval steps: 2 splits × eval_batches forward passes
    per_step = seconds_per_step * (1 + 2 * train_config.eval_batches / (3 * train_config.eval_interval))
    memory = {"weights": 4 * params, "gradients": 4 * trainable, "adam": 8 * trainable}
    memory["activations"] = activation_bytes(model_config.replace(n_layer=last or model_config.n_layer),
                                             train_config.batch_size, block)  # fmt: skip
    steps = train_config.max_steps
    if train_config.max_seconds is not None:
        by_time = int(train_config.max_seconds / per_step)
        steps = by_time if steps is None else min(steps, by_time)
    return {
        "params": params, "trainable_params": trainable, "memory_bytes": memory,
        "total_memory_bytes": sum(memory.values()), "tokens_per_step": tokens_per_step,
        "flops_per_step": flops_per_step, "measured": measured, "seconds_per_step": seconds_per_step,
        "steps": steps, "seconds": steps * per_step,
    }  # fmt: skip


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (process-wide), then put the count back."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_step_seconds(
    model_config: GPTConfig | LSTMConfig, train_config: TrainConfig, steps: int = 3, num_threads: int | None = None, seed: int = 0
) -> float:
    """Median seconds of ``steps`` real training steps of a fresh model of this shape, on this
    machine, now (after one untimed warm-up step): forward, backward, clipping and AdamW, with
    the run's batch, context and precision, on random tokens. The pages estimate time from this
    probe rather than from a FLOP count: small models spend most of a step outside the FLOPs,
    and a busy machine is slower than an idle one.
    """
    block = train_config.block_size or model_config.block_size
    device = choose_device(train_config.device)
    need = training_memory_bytes(model_config, train_config.batch_size, block)
    check_memory(int(need), "the timing probe of this shape", JOB_SHARE)  # before anything is allocated
    with torch_threads(num_threads):
        build = LSTMLanguageModel if isinstance(model_config, LSTMConfig) else GPT  # the LSTM: toygpt.recurrent
        model = build(model_config, seed=seed).to(device).train()
        if train_config.train_last_blocks is not None:  # fine-tuning: the backward pass stops early
            freeze_all_but_last_blocks(model, train_config.train_last_blocks)
        optimizer = make_optimizer(model, train_config, device)
        dtype = autocast_dtype(train_config.precision, device)
        generator = torch.Generator().manual_seed(seed)
        x = torch.randint(model_config.vocab_size, (train_config.batch_size, block), generator=generator).to(device)
        y = torch.roll(x, -1, dims=1)
        times = []
        for i in range(steps + 1):
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                _, loss = model(x, y)
            loss.backward()
            if train_config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i:  # the first step allocates the optimizer state: not typical
                times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def recent_step_seconds(events: Sequence[Event], last: int = 20) -> float | None:
    """A run's own recent pace: the median ``ms_per_step`` of its last ``last`` step events."""
    values = [e["ms_per_step"] for e in events if e.get("type") == "step" and isinstance(e.get("ms_per_step"), int | float)]
    recent = sorted(values[-last:])
    return recent[len(recent) // 2] / 1000 if recent else None


def cross_entropy_at_chance(vocab_size: int) -> float:
    """The loss of a model that knows nothing: uniform over the vocabulary, ln(vocab_size)."""
    return math.log(vocab_size)
