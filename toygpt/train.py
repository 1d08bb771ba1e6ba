"""How to train, before the loop: ``TrainConfig`` (every knob, checked), the device and
precision it asks for, the learning-rate schedule, the batch seed of each step, the snapshot
steps, AdamW (and its state as named tensors), and evaluation. The loop itself, which uses all of
this, is ``toygpt.trainer``; what a run will cost before it runs is ``toygpt.estimates``.

One step, as everywhere::

    x, y  = a batch of token windows (y is x shifted by one)
    loss  = cross-entropy of the model's next-token scores against y
    loss.backward()                       gradients of the loss for every weight
    clip the gradient norm                one bad batch cannot throw the weights far
    optimizer.step()                      AdamW moves every weight a little downhill
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from toygpt.data import TokenData
from toygpt.model import GPT, GPTConfig, parameter_counts, total_parameters
from toygpt.stopping import check_stop

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
    compile: bool | str = "auto"  # torch.compile: "auto" where a C++ compiler is found (see compile_choice)
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
        if not isinstance(self.compile, bool) and self.compile != "auto":
            raise ValueError(f"compile={self.compile!r}; choose True, False or 'auto' (compile where it can)")
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
