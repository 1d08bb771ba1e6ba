"""The training loop: batches in, gradient steps, evaluation, and events out.

One step, as everywhere::

    x, y  = a batch of token windows (y is x shifted by one)
    loss  = cross-entropy of the model's next-token scores against y
    loss.backward()                       gradients of the loss for every weight
    clip the gradient norm                one bad batch cannot throw the weights far
    optimizer.step()                      AdamW moves every weight a little downhill

The ``Trainer`` knows nothing about files or screens. It reports through **events**, plain dicts
handed to ``on_event``: ``{"type": "step", ...}`` (loss, lr, grad norm, tokens/s, ETA),
``"eval"`` (train and val loss), ``"sample"`` (generated text), ``"log"`` (a remark) and one final
``"end"`` (status: finished | stopped | diverged). Saving is delegated to an optional ``saver``
(``toygpt.runs.Run``), so the same loop serves the dashboard, the CLI, tests and notebooks.

    >>> from toygpt import data
    >>> from toygpt.model import GPT, preset
    >>> from toygpt.tokenizers import CharTokenizer
    >>> text = data.load_corpus("copy")
    >>> tokenizer = CharTokenizer.from_text(text)
    >>> model = GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=0)
    >>> end = train(model, data.prepare(text, tokenizer), TrainConfig(max_steps=200))  # doctest: +SKIP
    >>> end["status"], round(end["val_loss"], 2)  # doctest: +SKIP
    ('finished', 1.83)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from toygpt.data import TokenData
from toygpt.distributed import PLAIN, DistributedContext, device_for
from toygpt.limits import JOB_SHARE, check_memory
from toygpt.model import GPT, GPTConfig, flops_per_token, parameter_counts, total_parameters
from toygpt.recurrent import LSTMConfig, LSTMLanguageModel, lstm_parameters
from toygpt.status import Status
from toygpt.stopping import StopRequested, check_stop, stop_scope
from toygpt.tokenizers.base import check_model_vocab_size

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
# Upper bounds of TrainConfig's counts (others: 10**9). Far beyond a useful setting, they keep a
# config read from a file (an uploaded run) from asking for a billion-batch evaluation.
TRAIN_LIMITS = {"batch_size": 4096, "block_size": 65_536, "eval_batches": 10_000, "sample_tokens": 10_000,
                "max_snapshots": 1_000, "num_threads": 1_024, "seed": 2**63 - 1}  # fmt: skip
MAX_SECONDS = 7 * 24 * 3600.0
MAX_PROMPT_CHARS = 10_000
FINAL_EVAL_GRACE_S = 1.0  # after Stop, the final evaluation may take this long before it is cut
SNAPSHOT_BASE = (50, 4)  # snapshots at step 0, then 50, 200, 800, 3200, ... (×4: log-spaced)

Event = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any, allow_zero: bool = False, high: int | None = None) -> None:
    low = 0 if allow_zero else 1
    high = TRAIN_LIMITS.get(name, 10**9) if high is None else high
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r:.40} must be a whole number ≥ {low} and ≤ {high:,}")


def _finite(name: str, value: Any, low: float, high: float = math.inf, hint: str = "") -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}]{hint}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults are the CPU recipe measured in bench/loss_at_budget.py.

    The run ends at ``max_steps`` or after ``max_seconds`` of wall-clock time, whichever comes
    first (give at least one). The learning rate warms up linearly for ``warmup_steps``, then
    follows a cosine down to ``min_lr`` (default ``learning_rate / 10``) at the end of the run —
    the end in steps, or in seconds for a time budget.
    """

    batch_size: int = 12
    block_size: int | None = None  # None: the model's block_size
    max_steps: int | None = 2000
    max_seconds: float | None = None
    learning_rate: float = 3e-3
    min_lr: float | None = None
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # 0: no clipping
    eval_interval: int = 250
    eval_batches: int = 20
    sample_interval: int = 0  # 0: no samples during training
    sample_tokens: int = 200
    sample_prompt: str = ""
    log_interval: int = 10  # a "step" event every this many steps
    checkpoint_interval: int = 500  # save the latest weights for resume (0: only at the end)
    max_snapshots: int = 6  # log-spaced weight snapshots kept for "watch it learn" (0: none)
    seed: int = 1337
    device: str = "auto"  # auto: cuda, then mps, then cpu
    num_threads: int | None = None  # None: leave torch's setting alone
    compile: bool = False  # torch.compile the model; falls back to eager when it fails
    precision: str = "auto"  # auto: bfloat16 autocast where the hardware has it, else float32
    train_last_blocks: int | None = None  # fine-tuning: only the last k blocks (+ ln_f) learn; None: all

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))  # JSON gives lists
        self._check_lengths()
        self._check_rates()
        self._check_choices()

    def _check_lengths(self) -> None:
        _positive_int("batch_size", self.batch_size)
        if self.block_size is not None:
            _positive_int("block_size", self.block_size)
        if self.max_steps is None and self.max_seconds is None:
            raise ValueError("give max_steps or max_seconds (or both); e.g. max_steps=2000")
        if self.max_steps is not None:
            _positive_int("max_steps", self.max_steps)
        if self.max_seconds is not None:
            _finite("max_seconds", self.max_seconds, 0.001, MAX_SECONDS, "; e.g. 180 for three minutes")
        for name in ("eval_interval", "eval_batches", "log_interval"):
            _positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "sample_interval", "checkpoint_interval", "max_snapshots"):
            _positive_int(name, getattr(self, name), allow_zero=True)
        _positive_int("sample_tokens", self.sample_tokens)
        if self.train_last_blocks is not None:
            _positive_int("train_last_blocks", self.train_last_blocks)
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads)
        _positive_int("seed", self.seed, allow_zero=True)

    def _check_rates(self) -> None:
        _finite("learning_rate", self.learning_rate, 1e-9, 10.0, "; try 3e-3 (1e-3 for larger models)")
        if self.min_lr is not None:
            _finite("min_lr", self.min_lr, 0.0, self.learning_rate, f"; at most learning_rate={self.learning_rate}")
        _finite("weight_decay", self.weight_decay, 0.0, 10.0, "; try 0.1")
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ValueError(f"betas={self.betas!r} must be two numbers, e.g. (0.9, 0.99)")
        for beta in self.betas:
            _finite("each of betas", beta, 0.0, 0.999999, "; e.g. (0.9, 0.99)")
        _finite("grad_clip", self.grad_clip, 0.0, hint="; try 1.0, or 0 for no clipping")

    def _check_choices(self) -> None:
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device={self.device!r}; choose one of {DEVICES} (or cuda:N)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; choose one of {PRECISIONS}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile={self.compile!r} must be True or False")
        if not isinstance(self.sample_prompt, str) or len(self.sample_prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"sample_prompt must be text (may be empty) of at most {MAX_PROMPT_CHARS:,} characters")

    @property
    def final_lr(self) -> float:
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a train config must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}; known: {sorted(f.name for f in fields(cls))}")
        return cls(**data)


# --------------------------------------------------------------------------------------------
# Device, precision, schedule
# --------------------------------------------------------------------------------------------


def choose_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps (Apple), then cpu; an explicit choice that is not there
    raises with the alternatives."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but this machine has no CUDA GPU; use device='cpu' or 'auto'")
    if name == "mps" and not has_mps:
        raise ValueError("device='mps' but Apple's Metal backend is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AMX or AVX-512 BF16). Elsewhere bf16 is
    emulated and slower than float32, so ``precision="auto"`` stays in float32."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check is not None and check() for check in checks)


PRECISION_ENV = "TOYGPT_PRECISION"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype matmuls run in under autocast, or None for plain float32.

    Weights, gradients and the optimizer stay float32 either way (mixed precision): only the
    matmuls and what flows between them use bfloat16, which has float32's range (no loss scaling
    needed) and 8 bits of mantissa — plenty for gradients of a small model.

    ``"auto"`` picks bf16 where the hardware multiplies it fast, so the same run trains with
    different numerics on different CPUs. Setting ``$TOYGPT_PRECISION`` to ``fp32`` or ``bf16``
    makes ``"auto"`` mean that everywhere (e.g. ``TOYGPT_PRECISION=bf16 pytest`` runs the suite
    as a CPU with AVX-512 BF16 would, on any x86 CPU, just slower); an explicit ``precision``
    is never overridden.
    """
    if precision == "auto":
        precision = forced_precision() or "auto"
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def forced_precision() -> str | None:
    """``$TOYGPT_PRECISION`` (``fp32`` or ``bf16``), or None when unset or empty."""
    value = os.environ.get(PRECISION_ENV, "").strip()
    if not value:
        return None
    if value not in ("fp32", "bf16"):
        raise ValueError(f"{PRECISION_ENV}={value!r}; set it to fp32 or bf16, or unset it for the hardware's choice")
    return value


def run_progress(config: TrainConfig, step: int, elapsed: float) -> float:
    """How far through the run we are, 0..1: by steps, by seconds, or the further of the two."""
    fractions = []
    if config.max_steps is not None:
        fractions.append(step / config.max_steps)
    if config.max_seconds is not None:
        fractions.append(elapsed / config.max_seconds)
    return min(1.0, max(fractions))


def learning_rate_at(
    config: TrainConfig, step: int, elapsed: float = 0.0, warmup_elapsed: float | None = None
) -> float:
    """Linear warmup for ``warmup_steps``, then a cosine from ``learning_rate`` to ``min_lr``
    over what remains of the run after warmup, so the rate is continuous where warmup ends.

    Progress through the cosine is ``(step - warmup_steps) / (max_steps - warmup_steps)`` in
    steps and ``(elapsed - warmup_elapsed) / (max_seconds - warmup_elapsed)`` in seconds, where
    ``warmup_elapsed`` is the clock when warmup ended (the trainer records it; None estimates it
    from the pace so far, ``elapsed · warmup_steps / step``, exact at the end of warmup). With
    both budgets the further along wins, as the run ends at whichever comes first.

    >>> c = TrainConfig(max_steps=100, learning_rate=1.0, min_lr=0.0, warmup_steps=10)
    >>> [round(learning_rate_at(c, s), 3) for s in (0, 9, 10, 55, 100)]
    [0.1, 1.0, 1.0, 0.5, 0.0]
    >>> t = c.replace(max_steps=None, max_seconds=60.0)  # warmup took 15 s of the 60
    >>> [round(learning_rate_at(t, 10, s, warmup_elapsed=15.0), 3) for s in (15.0, 37.5, 60.0)]
    [1.0, 0.5, 0.0]
    """
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * cosine_progress(config, step, elapsed, warmup_elapsed)))  # 1 → 0
    return config.final_lr + cosine * (config.learning_rate - config.final_lr)


def cosine_progress(config: TrainConfig, step: int, elapsed: float, warmup_elapsed: float | None = None) -> float:
    """How far through the cosine after warmup, 0..1 (see ``learning_rate_at``)."""
    fractions = []
    if config.max_steps is not None:
        fractions.append((step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    if config.max_seconds is not None:
        if warmup_elapsed is None:
            warmup_elapsed = elapsed * config.warmup_steps / step if step > 0 else 0.0
        left = config.max_seconds - warmup_elapsed
        fractions.append((elapsed - warmup_elapsed) / left if left > 0 else 1.0)
    return min(1.0, max(0.0, max(fractions)))


def step_seed(seed: int, rank: int, step: int) -> int:
    """A seed for one step's batch: a hash of (seed, rank, step). Batches therefore depend only
    on the step number, so a resumed run draws exactly the batches a straight run would, and each
    DDP rank draws its own."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a non-negative 63-bit number


def snapshot_steps_upto(limit: int) -> list[int]:
    """The log-spaced steps at which snapshots are taken: 0, 50, 200, 800, ... ≤ limit."""
    first, factor = SNAPSHOT_BASE
    steps, step = [0], first
    while step <= limit:
        steps.append(step)
        step *= factor
    return steps


def is_snapshot_step(step: int) -> bool:
    return step in snapshot_steps_upto(step)


def thin_snapshots(steps: Sequence[int], keep: int) -> list[int]:
    """Which snapshot steps to drop so that at most ``keep`` remain: keep the first and the
    last, and drop the one closest (in log scale) to its predecessor, again and again.

    >>> thin_snapshots([0, 50, 200, 800, 900], keep=4)  # 900 is nearest 800, but it is the last
    [200]
    """
    kept, dropped = sorted(steps), []
    while len(kept) > max(keep, 2):
        gaps = [math.log1p(kept[i]) - math.log1p(kept[i - 1]) for i in range(1, len(kept) - 1)]
        victim = kept.pop(1 + gaps.index(min(gaps)))
        dropped.append(victim)
    if keep < len(kept):  # keep is 0 or 1
        dropped += kept[keep:]
    return dropped


# --------------------------------------------------------------------------------------------
# Optimizer, and its state as named tensors (saved with safetensors, never pickle)
# --------------------------------------------------------------------------------------------


def trainable_prefixes(model_config: GPTConfig, last_blocks: int | None) -> tuple[str, ...] | None:
    """Names (prefixes) of the parameters that learn when only the last ``last_blocks`` blocks
    and the final LayerNorm are trained; None: every parameter learns.

    >>> trainable_prefixes(GPTConfig(n_layer=4), 1)
    ('transformer.h.3.', 'transformer.ln_f.')
    """
    if last_blocks is None:
        return None
    if last_blocks > model_config.n_layer:
        raise ValueError(f"train_last_blocks={last_blocks} but the model has {model_config.n_layer} blocks; "
                         f"use 1..{model_config.n_layer}")  # fmt: skip
    first = model_config.n_layer - last_blocks
    return (*(f"transformer.h.{i}." for i in range(first, model_config.n_layer)), "transformer.ln_f.")


def freeze_all_but_last_blocks(model: GPT, last_blocks: int | None) -> int:
    """Fine-tuning the cheap way: embeddings (and so the tied head) and the first blocks stop
    learning (``requires_grad=False``: no gradients, no AdamW state, and the backward pass stops
    at the first block that learns). Returns how many parameters still learn."""
    if last_blocks is not None and not isinstance(model, GPT):
        raise ValueError(f"train_last_blocks is for GPT models (its blocks); this is a {type(model).__name__}")
    prefixes = trainable_prefixes(model.config, last_blocks)
    for name, param in model.named_parameters():
        param.requires_grad_(prefixes is None or name.startswith(prefixes))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_parameters(model_config: GPTConfig, last_blocks: int | None) -> int:
    """How many parameters learn with ``train_last_blocks=last_blocks`` (from the config alone)."""
    if last_blocks is None:
        return total_parameters(model_config)
    trainable_prefixes(model_config, last_blocks)  # checks the count
    first = model_config.n_layer - last_blocks
    groups = {f"block {i}" for i in range(first, model_config.n_layer)} | {"final norm"}
    return sum(row["params"] for row in parameter_counts(model_config) if row["group"] in groups)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (matmul weights, embeddings) only: decaying biases and LayerNorm
    gains towards zero would only fight the normalisation. Frozen parameters are left out."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in named if p.dim() >= 2]
    no_decay = [p for _, p in named if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused where the device supports it (one kernel for all parameters: ~7% faster on
    CPU here), otherwise the default multi-tensor version."""
    groups = parameter_groups(model, config.weight_decay)
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=fused)


def _param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its own order (the index its state dict uses)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's state as flat named tensors: ``"<param>.exp_avg"``, ``".exp_avg_sq"``, ``".step"``."""
    tensors: dict[str, torch.Tensor] = {}
    state = optimizer.state_dict()["state"]
    for index, name in enumerate(_param_names(model, optimizer)):
        for key, value in state.get(index, {}).items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            tensors[f"{name}.{key}"] = value.detach().cpu().reshape(value.shape or (1,)).clone()
    return tensors


def load_optimizer_tensors(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    """The inverse of ``optimizer_tensors``; a tensor of the wrong shape is an error."""
    saved = optimizer.state_dict()
    params = {n: p for n, p in model.named_parameters()}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for index, name in enumerate(_param_names(model, optimizer)):
        entry = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            value = tensors.get(f"{name}.{key}")
            if value is None:
                continue
            expected = (1,) if key == "step" else tuple(params[name].shape)
            if tuple(value.shape) != expected:
                raise ValueError(f"optimizer state {name}.{key} has shape {tuple(value.shape)}, expected {expected}")
            entry[key] = value.reshape(()) if key == "step" else value
        if entry:
            state[index] = entry
    saved["state"] = state
    optimizer.load_state_dict(saved)


# --------------------------------------------------------------------------------------------
# What the trainer needs from a model, and evaluation
# --------------------------------------------------------------------------------------------


class LanguageModel(Protocol):
    """What the trainer needs from a model: ``GPT`` has it, and so has the LSTM of
    ``toygpt.recurrent`` (trained by this same loop, for a side-by-side comparison).

    - ``config`` with ``vocab_size``, ``block_size`` (the longest window it trains on) and ``dropout``;
    - ``model(idx, targets)`` → ``(logits (B, T, vocab_size), mean cross-entropy)``;
    - ``num_parameters()``; ``attention_paths()`` and ``set_attention(...)`` (the trainer picks
      the attention path fastest here and restores the model's own afterwards; a model without
      attention returns ``[]`` and ignores the call);
    - everything ``torch.nn.Module`` has (parameters, train/eval, ``to``).
    """

    config: Any

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]: ...

    def num_parameters(self) -> int: ...

    def attention_paths(self) -> list[bool]: ...

    def set_attention(self, fused: bool | Sequence[bool]) -> None: ...


@torch.no_grad()
def estimate_loss(
    model: LanguageModel,
    data: TokenData,
    batch_size: int,
    block_size: int,
    batches: int,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean loss over ``batches`` random batches of each split, in float32 and eval mode.

    The batches come from a generator seeded with ``seed``, so every evaluation of a run sees
    the same batches and the curve moves only because the model changed.
    """
    was_training = model.training
    model.eval()
    losses = {}
    for split in splits:
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for _ in range(batches):
            check_stop()  # a big evaluation is the longest thing between two steps
            x, y = data.get_batch(split, batch_size, block_size, generator, device)
            total += float(model(x, y)[1])
        losses[split] = total / batches
    model.train(was_training)
    return losses


@torch.no_grad()
def loss_by_position(model: LanguageModel, windows: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Mean cross-entropy in nats at each position of ``windows`` (B, L + 1) of token ids, (L,):
    position t predicts token t + 1 from the t + 1 tokens up to it, so a falling curve means
    the model uses its context. Read ``chunk`` windows at a time (big vocabularies make big
    logits), in eval mode (the model is handed back in the mode it came in).

    Evaluate at length L: L may exceed ``block_size`` (the length the model trained on) when its
    position encoding is defined at every position (``config.any_length``: sinusoidal, rope,
    alibi, none) — whether its loss holds up past ``block_size`` is what "extrapolates" means.
    A learned-position model has no position vectors there and raises ValueError.
    """
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (batch, length + 1) token ids, got shape {tuple(windows.shape)}")
    length, config = windows.shape[1] - 1, model.config
    if length > config.block_size and not config.any_length:
        raise ValueError(
            f"learned positions stop at block_size={config.block_size}, so this model cannot be evaluated "
            f"at length {length}; evaluate at {config.block_size} or less, or train with pos_encoding="
            f"'sinusoidal', 'rope', 'alibi' or 'none' (defined at every position)"
        )
    was_training = model.training
    model.eval()
    try:
        total = torch.zeros(length)
        for part in windows.split(chunk):
            logits, _ = model(part[:, :-1])
            total += F.cross_entropy(logits.float().transpose(1, 2), part[:, 1:], reduction="none").sum(0).cpu()
        return total / len(windows)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


class RunSaver(Protocol):
    """What the trainer needs from a run directory (``toygpt.runs.Run`` implements it)."""

    def save_latest(self, trainer: Trainer) -> None: ...

    def save_best(self, trainer: Trainer) -> None: ...

    def save_snapshot(self, trainer: Trainer) -> None: ...

    def on_event(self, event: Event) -> None: ...


@dataclass
class TrainState:
    """Counters that survive a resume (saved beside the optimizer state)."""

    step: int = 0
    elapsed: float = 0.0  # seconds of training so far, over every session of this run
    tokens_seen: int = 0
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    last_train_loss: float | None = None
    snapshots: list[int] = field(default_factory=list)
    warmup_elapsed: float | None = None  # the clock when warmup ended: where the cosine starts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainState:
        """Rebuild saved counters, checking their types (the file may come from an imported zip)."""
        if not isinstance(data, dict):
            raise ValueError("the saved trainer state must be a JSON object")
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        counts_ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (state.step, state.tokens_seen))
        numbers = (state.elapsed, state.best_val_loss, state.last_val_loss, state.last_train_loss, state.warmup_elapsed)
        numbers_ok = all(v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in numbers)
        snapshots_ok = isinstance(state.snapshots, list) and all(isinstance(s, int) for s in state.snapshots)
        if not (counts_ok and numbers_ok and snapshots_ok):
            raise ValueError(f"the saved trainer state is malformed: {data!r:.200}")
        return state


class Trainer:
    """Trains ``model`` on ``data`` with ``config``; ``run()`` loops until done and returns the
    ``"end"`` event. Thread-safe to stop: ``stop_event.set()`` ends the run after the current
    step. ``model`` is trained in place (pass a copy to keep the original)."""

    def __init__(
        self,
        model: LanguageModel,
        data: TokenData,
        config: TrainConfig,
        *,
        tokenizer: Any | None = None,
        on_event: Callable[[Event], None] | None = None,
        stop_event: threading.Event | None = None,
        saver: RunSaver | None = None,
        state: TrainState | None = None,
        optimizer_state: dict[str, torch.Tensor] | None = None,
        dist: DistributedContext = PLAIN,
    ) -> None:
        self.config, self.data, self.tokenizer, self.dist = config, data, tokenizer, dist
        self.block_size = config.block_size or model.config.block_size
        self._check_shapes(model, data)
        if tokenizer is not None:  # it decodes the samples: its ids must be the model's
            check_model_vocab_size(tokenizer, model.config.vocab_size)
        self.device = device_for(dist, choose_device(config.device))
        self.model = model.to(self.device)
        self.trainable = freeze_all_but_last_blocks(self.model, config.train_last_blocks)
        self.autocast = autocast_dtype(config.precision, self.device)
        self.optimizer = make_optimizer(self.model, config, self.device)
        if optimizer_state:
            load_optimizer_tensors(self.model, self.optimizer, optimizer_state)
        self.state = state or TrainState()
        self.stop_event = stop_event or threading.Event()
        self.saver = saver if dist.is_main else None
        self.listeners = [f for f in (on_event, self.saver and self.saver.on_event) if f]
        self.forward: Callable[..., Any] = self.model
        self.compiled = False
        self._window: list[float] = []  # recent step times, for tokens/s and the ETA

    def _check_shapes(self, model: LanguageModel, data: TokenData) -> None:
        if self.block_size > model.config.block_size:
            raise ValueError(
                f"block_size={self.block_size} is longer than the model's block_size="
                f"{model.config.block_size}; use block_size ≤ {model.config.block_size}"
            )
        if data.vocab_size > model.config.vocab_size:
            raise ValueError(
                f"the data uses {data.vocab_size} token ids but the model has vocab_size="
                f"{model.config.vocab_size}; build the model with vocab_size={data.vocab_size}"
            )
        data.check_block_size(self.block_size)

    # ---- events ------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if self.dist.is_main:
            for listener in self.listeners:
                listener(event)

    def log(self, message: str) -> None:
        self.emit({"type": "log", "step": self.state.step, "message": message})

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> Event:
        with self.session():
            self.emit(self._start_event())
            status, message = self._loop()
            return self._finish(status, message)

    def _loop(self) -> tuple[str, str]:
        while True:
            try:
                with stop_scope(self.stop_event):  # evaluation and sampling end on Stop too
                    self._between_steps()
            except StopRequested:
                return Status.STOPPED, f"stopped at step {self.state.step} on request; resume to continue"
            reason = self._stop_reason()
            if reason:
                return reason
            if not self.train_step():
                lr = learning_rate_at(self.config, self.state.step, self.state.elapsed, self.state.warmup_elapsed)
                return Status.DIVERGED, (
                    f"the loss became NaN/inf at step {self.state.step} (learning rate {lr:.2g}); "
                    f"try a lower learning rate, e.g. {self.config.learning_rate / 3:.2g}. "
                    "The last good checkpoint was kept."
                )

    def _between_steps(self) -> None:
        """Evaluate, snapshot, sample and save at their intervals (all on rank 0 only).

        A resumed session skips its first step: the session that saved it already did all this.
        """
        step = self.state.step
        if step == self._session_start and step > 0:
            return
        if step % self.config.eval_interval == 0:
            self._evaluate()
        if self.config.max_snapshots and is_snapshot_step(step) and step not in self.state.snapshots:
            self._snapshot()
        if self.config.sample_interval and step % self.config.sample_interval == 0 and step > 0:
            self._sample()
        if self.config.checkpoint_interval and step % self.config.checkpoint_interval == 0 and step > 0:
            self._save_latest()

    def _stop_reason(self) -> tuple[str, str] | None:
        config, step = self.config, self.state.step
        if config.max_steps is not None and step >= config.max_steps:
            return Status.FINISHED, f"reached max_steps={config.max_steps}"
        out_of_time = config.max_seconds is not None and self._elapsed() >= config.max_seconds
        stop_requested = self.stop_event.is_set()
        if self.dist.any(out_of_time or stop_requested):
            if stop_requested or not out_of_time:
                return Status.STOPPED, f"stopped at step {step} on request; resume to continue"
            return Status.FINISHED, f"used the time budget of {config.max_seconds:g} s"
        return None

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start_clock

    # ---- one step ----------------------------------------------------------------------

    def train_step(self) -> bool:
        """One optimizer step; False (and no update) when the loss or gradients are not finite.
        ``run()`` calls it; call it yourself only inside ``with trainer.session():``."""
        started = time.perf_counter()
        config, step = self.config, self.state.step
        seed = step_seed(config.seed, self.dist.rank, step)
        x, y = self.data.get_batch("train", config.batch_size, self.block_size, torch.Generator().manual_seed(seed), self.device)
        if self.model.config.dropout > 0:
            torch.manual_seed(seed)  # dropout draws from the global generator: make it a function of the step
        now = self._elapsed()
        if step == config.warmup_steps:  # warmup is over: the cosine starts from this clock
            self.state.warmup_elapsed = now  # (a state saved before this field estimates it)
        lr = learning_rate_at(config, step, now, self.state.warmup_elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self._forward_backward(x, y)
        clip = config.grad_clip if config.grad_clip > 0 else math.inf  # inf: measure, never clip
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        loss_value = float(loss)
        if self.dist.any(not (math.isfinite(loss_value) and math.isfinite(grad_norm))):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._after_step(loss_value, grad_norm, lr, time.perf_counter() - started)
        return True

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        try:
            return self._forward_backward_once(x, y)
        except Exception as exc:  # torch.compile fails in many ways (no compiler, unsupported op)
            if not self.compiled:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            self.forward, self.compiled = self._ddp_or_model, False
            self.log(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly")
            return self._forward_backward_once(x, y)

    def _forward_backward_once(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with autocast:
            _, loss = self.forward(x, y)
        loss.backward()
        return loss.detach()

    def _after_step(self, loss: float, grad_norm: float, lr: float, seconds: float) -> None:
        state, config = self.state, self.config
        state.step += 1
        state.tokens_seen += config.batch_size * self.block_size * self.dist.world_size
        state.elapsed = self._elapsed()
        state.last_train_loss = loss
        self._window = (self._window + [seconds])[-50:]
        if state.step % config.log_interval == 0 or state.step == config.max_steps:
            self.emit(self._step_event(loss, grad_norm, lr))

    def _step_event(self, loss: float, grad_norm: float, lr: float) -> Event:
        seconds_per_step = sorted(self._window)[len(self._window) // 2]  # median: robust to hiccups
        tokens = self.config.batch_size * self.block_size * self.dist.world_size
        return {
            "type": "step", "step": self.state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "tokens_per_s": tokens / seconds_per_step, "ms_per_step": 1000 * seconds_per_step,
            "elapsed": self.state.elapsed, "eta": self._eta(seconds_per_step),
            "progress": run_progress(self.config, self.state.step, self.state.elapsed),
            "tokens_seen": self.state.tokens_seen,
        }  # fmt: skip

    def _eta(self, seconds_per_step: float) -> float:
        """Seconds left: by steps at the recent pace, or by the clock, whichever ends first."""
        left = []
        if self.config.max_steps is not None:
            left.append((self.config.max_steps - self.state.step) * seconds_per_step)
        if self.config.max_seconds is not None:
            left.append(self.config.max_seconds - self.state.elapsed)
        return max(0.0, min(left))

    # ---- evaluation, samples, checkpoints -------------------------------------------------

    def _evaluate(self) -> None:
        if not self.dist.is_main:
            return
        config, state = self.config, self.state
        losses = estimate_loss(
            self.model, self.data, config.batch_size, self.block_size, config.eval_batches, config.seed, device=self.device
        )
        state.last_val_loss = losses["val"]
        improved = state.best_val_loss is None or losses["val"] < state.best_val_loss
        if improved:
            state.best_val_loss = losses["val"]
        self.emit({
            "type": "eval", "step": state.step, "train_loss": losses["train"], "val_loss": losses["val"],
            "best_val_loss": state.best_val_loss, "elapsed": self._elapsed(),
        })  # fmt: skip
        if improved and self.saver:
            self.saver.save_best(self)

    def _snapshot(self) -> None:
        self.state.snapshots.append(self.state.step)
        if self.saver:
            self.saver.save_snapshot(self)

    def _sample(self) -> None:
        if not self.dist.is_main or self.tokenizer is None:
            return
        from toygpt.sample import generate_text  # sampling comes after training in reading order

        was_training = self.model.training
        self.model.eval()
        text = generate_text(
            self.model, self.tokenizer, self.config.sample_prompt, self.config.sample_tokens, seed=self.config.seed
        ).text
        self.model.train(was_training)
        self.emit({"type": "sample", "step": self.state.step, "prompt": self.config.sample_prompt, "text": text})

    def _save_latest(self) -> None:
        if self.saver:
            self.state.elapsed = self._elapsed()
            self.saver.save_latest(self)

    def _finish(self, status: str, message: str) -> Event:
        state = self.state
        if status != Status.DIVERGED:
            if state.step % self.config.eval_interval != 0:
                try:  # the final loss, unless it was just measured; after Stop, if it is quick
                    with stop_scope(self.stop_event, grace=FINAL_EVAL_GRACE_S):
                        self._evaluate()
                except StopRequested:
                    self.log("stopped before the final evaluation; the last measured loss stands")
            self._save_latest()
        state.elapsed = self._elapsed()
        end = {
            "type": "end", "status": status, "message": message, "step": state.step,
            "elapsed": state.elapsed, "tokens_seen": state.tokens_seen,
            "val_loss": state.last_val_loss, "best_val_loss": state.best_val_loss,
            "train_loss": state.last_train_loss,
        }  # fmt: skip
        self.emit(end)
        return end

    def _start_event(self) -> Event:
        return {
            "type": "start", "step": self.state.step, "device": str(self.device),
            "precision": "bf16 autocast" if self.autocast else "fp32", "compiled": self.compiled,
            "params": self.model.num_parameters(), "world_size": self.dist.world_size,
            "max_steps": self.config.max_steps, "max_seconds": self.config.max_seconds,
        }  # fmt: skip

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Train mode, the attention path that is fastest here, DDP and torch.compile for the
        duration of ``run()``; the model is handed back as it came (in eval mode)."""
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        self._start_clock = time.perf_counter() - self.state.elapsed
        self._session_start = self.state.step
        attention = self.model.attention_paths()
        if self.autocast is not None and self.device.type == "cpu":
            # Measured on a 2-core AVX-512/AMX CPU (bench/train_speed.py): in bf16 the written-out
            # attention (two batched matmuls + softmax) beats the fused CPU kernel for these sizes.
            self.model.set_attention(fused=False)
        self.model.train()
        self._ddp_or_model = self._wrap_ddp()
        self.forward = self._ddp_or_model
        if self.config.compile:
            self.forward, self.compiled = torch.compile(self._ddp_or_model), True
        try:
            yield
        finally:
            self.model.set_attention(attention)
            self.model.eval()

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.active:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)


def train(model: LanguageModel, data: TokenData, config: TrainConfig, **kwargs: Any) -> Event:
    """Train ``model`` in place and return the ``"end"`` event (see ``Trainer`` for kwargs)."""
    return Trainer(model, data, config, **kwargs).run()


# --------------------------------------------------------------------------------------------
# Learning from one example
# --------------------------------------------------------------------------------------------


def _example_ids(example: str | Sequence[int] | torch.Tensor, tokenizer: Any | None, block_size: int) -> torch.Tensor:
    if isinstance(example, str):
        if tokenizer is None:
            raise ValueError("pass tokenizer= to learn from text (or pass the token ids instead)")
        ids = tokenizer.encode(example)
    else:
        ids = [int(i) for i in (example.tolist() if isinstance(example, torch.Tensor) else example)]
    if len(ids) < 2:
        raise ValueError(f"the example has {len(ids)} token(s); it needs at least 2 (one to read, one to predict)")
    return torch.tensor(ids[-(block_size + 1) :], dtype=torch.long).unsqueeze(0)  # (1, ≤ block_size + 1)


def learn_from_example(
    model: GPT,
    example: str | Sequence[int] | torch.Tensor,
    steps: int = 10,
    lr: float = 1e-3,
    *,
    tokenizer: Any | None = None,
    optimizer: str = "adam",
) -> dict[str, Any]:
    """Take ``steps`` gradient steps on one example; return its loss before and after.

    **Modifies ``model`` in place** — pass a copy (``copy.deepcopy(model)``) of a model you want
    to keep, and never a cached/shared one. The example is text (with ``tokenizer``) or token
    ids; only its last ``block_size + 1`` tokens are used. Dropout is off (eval mode), so the
    result is deterministic. ``optimizer``: "adam" (what training uses) or "sgd" (the textbook
    rule w ← w − lr·∂loss/∂w).

    Returns ``{"loss_before", "loss_after", "losses": [loss before each step, ..., after],
    "tokens": n}``.
    """
    _positive_int("steps", steps)
    _finite("lr", lr, 1e-12, 100.0)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer={optimizer!r}; choose 'adam' or 'sgd'")
    device = next(model.parameters()).device
    ids = _example_ids(example, tokenizer, model.config.block_size).to(device)
    x, y = ids[:, :-1], ids[:, 1:]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(steps):
        _, loss = model(x, y)
        losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(model(x, y)[1]))
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {"loss_before": losses[0], "loss_after": losses[-1], "losses": losses, "tokens": int(ids.shape[1])}


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

