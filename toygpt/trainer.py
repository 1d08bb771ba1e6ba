"""The training loop: batches in, gradient steps, evaluation, and events out.

The ``Trainer`` knows nothing about files or screens. It reports through **events**, plain dicts
handed to ``on_event``: ``{"type": "step", ...}`` (loss, lr, grad norm, tokens/s, ETA),
``"eval"`` (train and val loss), ``"sample"`` (generated text), ``"log"`` (a remark) and one final
``"end"`` (status: finished | stopped | diverged). Saving is delegated to an optional ``saver``
(``toygpt.runs.RunWriter``), handed values (weights, optimizer state, counters), so the same
loop serves the dashboard, the CLI, tests and notebooks. The rules it follows (config,
schedule, optimizer, evaluation) are in ``toygpt.train``.

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
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import torch

from toygpt.compilation import compiled_forward, prepared_event, preparing_event
from toygpt.data import TokenData
from toygpt.distributed import PLAIN, DistributedContext, device_for
from toygpt.status import Status
from toygpt.stopping import StopRequested, stop_scope
from toygpt.tokenizers.base import check_model_vocab_size
from toygpt.train import (
    FINAL_EVAL_GRACE_S,
    Event,
    LanguageModel,
    TrainConfig,
    autocast_dtype,
    choose_device,
    estimate_loss,
    freeze_all_but_last_blocks,
    is_snapshot_step,
    learning_rate_at,
    load_optimizer_tensors,
    make_optimizer,
    optimizer_tensors,
    run_progress,
    step_seed,
)

Tensors = dict[str, torch.Tensor]

# --------------------------------------------------------------------------------------------
# What the trainer hands a saver, and the counters that survive a resume
# --------------------------------------------------------------------------------------------


class RunSaver(Protocol):
    """Where the trainer's saves go (``toygpt.runs.RunWriter`` is one). It is handed values,
    never the trainer: ``weights`` is the model's ``state_dict()`` (the live tensors: read them
    during the call, copy to keep), ``optimizer_state`` AdamW's state as named tensors
    (``toygpt.train.optimizer_tensors``) and ``state`` a copy of the counters. So anything that
    can store tensors can be a saver, and what a run holds never depends on how the trainer is
    built."""

    def save_latest(self, weights: Tensors, optimizer_state: Tensors, state: TrainState) -> None:
        """Everything resume needs, as of ``state.step``."""

    def save_best(self, weights: Tensors, state: TrainState) -> None:
        """The weights with the lowest val loss so far (``state.best_val_loss``)."""

    def save_snapshot(self, weights: Tensors, step: int, keep: int) -> None:
        """The weights at a log-spaced ``step``; keep at most ``keep`` snapshots."""

    def on_event(self, event: Event) -> None:
        """Every event, as it happens."""


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

    def record_val_loss(self, val_loss: float) -> bool:
        """Note a measured val loss; True when it is the best so far (the best weights change)."""
        self.last_val_loss = val_loss
        improved = self.best_val_loss is None or val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss
        return improved

    def copy(self) -> TrainState:
        """The counters as they are now (what a saver is handed: later steps do not change it)."""
        return replace(self, snapshots=list(self.snapshots))

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


def check_inputs(model_config: Any, data: TokenData, block_size: int, tokenizer: Any | None) -> None:
    """The windows fit the model (``block_size``), and the data's ids and the tokenizer's (it
    decodes the samples) its vocabulary."""
    if block_size > model_config.block_size:
        raise ValueError(f"block_size={block_size} is longer than the model's block_size="
                         f"{model_config.block_size}; use block_size ≤ {model_config.block_size}")  # fmt: skip
    if data.vocab_size > model_config.vocab_size:
        raise ValueError(f"the data uses {data.vocab_size} token ids but the model has vocab_size="
                         f"{model_config.vocab_size}; build the model with vocab_size={data.vocab_size}")  # fmt: skip
    data.check_block_size(block_size)
    if tokenizer is not None:
        check_model_vocab_size(tokenizer, model_config.vocab_size)


# --------------------------------------------------------------------------------------------
# What the trainer reports: events, the pace behind tokens/s and the ETA, why it stopped
# --------------------------------------------------------------------------------------------


class Pace:
    """The last ``window`` step times; their median is the pace (robust to one slow step)."""

    def __init__(self, window: int = 50) -> None:
        self.window, self.times, self.uncounted = window, [], 0.0

    def record(self, seconds: float, counted: bool = True) -> None:
        """``counted=False``: a step that is not the pace (the one that compiled the model); it
        stands in only until a counted step comes."""
        if counted:
            self.times = (self.times + [seconds])[-self.window :]
        else:
            self.uncounted = seconds

    def seconds_per_step(self) -> float:
        return sorted(self.times)[len(self.times) // 2] if self.times else self.uncounted


def eta(config: TrainConfig, state: TrainState, seconds_per_step: float) -> float:
    """Seconds left: by steps at the recent pace, or by the clock, whichever ends first."""
    left = []
    if config.max_steps is not None:
        left.append((config.max_steps - state.step) * seconds_per_step)
    if config.max_seconds is not None:
        left.append(config.max_seconds - state.elapsed)
    return max(0.0, min(left))


def start_event(trainer: Trainer) -> Event:
    """The "start" event: where and how ``trainer`` trains (device, precision, compiled or why not)."""
    return {
        "type": "start", "step": trainer.state.step, "device": str(trainer.device),
        "precision": "bf16 autocast" if trainer.autocast else "fp32", "compiled": trainer.compiled,
        "compile_reason": trainer.compile_reason,
        "params": trainer.model.num_parameters(), "world_size": trainer.dist.world_size,
        "max_steps": trainer.config.max_steps, "max_seconds": trainer.config.max_seconds,
    }  # fmt: skip


def step_event(config: TrainConfig, state: TrainState, pace: Pace, tokens_per_step: int, **step: float) -> Event:
    """The ``"step"`` event after a step: ``step`` holds its ``loss``, ``grad_norm`` and ``lr``."""
    seconds_per_step = pace.seconds_per_step()
    return {
        "type": "step", "step": state.step, **step,
        "tokens_per_s": tokens_per_step / seconds_per_step, "ms_per_step": 1000 * seconds_per_step,
        "elapsed": state.elapsed, "eta": eta(config, state, seconds_per_step),
        "progress": run_progress(config, state.step, state.elapsed), "tokens_seen": state.tokens_seen,
    }  # fmt: skip


def end_event(state: TrainState, status: str, message: str) -> Event:
    """The one ``"end"`` event: how the run ended, and its counters."""
    return {
        "type": "end", "status": status, "message": message, "step": state.step,
        "elapsed": state.elapsed, "tokens_seen": state.tokens_seen,
        "val_loss": state.last_val_loss, "best_val_loss": state.best_val_loss,
        "train_loss": state.last_train_loss,
    }  # fmt: skip


def sample_event(model: LanguageModel, tokenizer: Any, config: TrainConfig, step: int) -> Event:
    """A ``"sample"`` event: ``config.sample_tokens`` generated from ``config.sample_prompt``
    (in eval mode; the model is handed back in the mode it came in)."""
    from toygpt.sample import generate_text  # sampling comes after training in reading order

    was_training = model.training
    model.eval()
    text = generate_text(model, tokenizer, config.sample_prompt, config.sample_tokens, seed=config.seed).text
    model.train(was_training)
    return {"type": "sample", "step": step, "prompt": config.sample_prompt, "text": text}


def stop_reason(
    config: TrainConfig, step: int, elapsed: float, stop_requested: bool, dist: DistributedContext
) -> tuple[str, str] | None:
    """(status, message) when a run must end before ``step``: its step budget, its time budget
    or a Stop (on any rank: every rank ends at the same step); None: train on."""
    if config.max_steps is not None and step >= config.max_steps:
        return Status.FINISHED, f"reached max_steps={config.max_steps}"
    out_of_time = config.max_seconds is not None and elapsed >= config.max_seconds
    if dist.any(out_of_time or stop_requested):
        if stop_requested or not out_of_time:
            return Status.STOPPED, stopped_message(step)
        return Status.FINISHED, f"used the time budget of {config.max_seconds:g} s"
    return None


def work_due(config: TrainConfig, state: TrainState, session_start: int) -> list[str]:
    """What to do before the step ``state.step``: "evaluate" every ``eval_interval`` steps, a
    "snapshot" at the log-spaced steps, a "sample" and a "save" at their intervals. A resumed
    session skips its first step: the session that saved it already did all this.

    >>> work_due(TrainConfig(eval_interval=100, checkpoint_interval=200), TrainState(step=200), 0)
    ['evaluate', 'snapshot', 'save']
    """
    step = state.step
    if step == session_start and step > 0:
        return []
    due = {
        "evaluate": step % config.eval_interval == 0,
        "snapshot": config.max_snapshots > 0 and is_snapshot_step(step) and step not in state.snapshots,
        "sample": config.sample_interval > 0 and step % config.sample_interval == 0 and step > 0,
        "save": config.checkpoint_interval > 0 and step % config.checkpoint_interval == 0 and step > 0,
    }
    return [name for name, now in due.items() if now]


def stopped_message(step: int) -> str:
    return f"stopped at step {step} on request; resume to continue"


def diverged_message(config: TrainConfig, state: TrainState) -> str:
    lr = learning_rate_at(config, state.step, state.elapsed, state.warmup_elapsed)
    return (f"the loss became NaN/inf at step {state.step} (learning rate {lr:.2g}); try a lower "
            f"learning rate, e.g. {config.learning_rate / 3:.2g}. The last good checkpoint was kept.")  # fmt: skip


def wrap_ddp(model: torch.nn.Module, dist: DistributedContext, device: torch.device) -> torch.nn.Module:
    """The model wrapped for data-parallel training (gradients averaged across processes), or
    the model itself when this is the only process."""
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


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
        check_inputs(model.config, data, self.block_size, tokenizer)
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
        self.compiled, self.compile_reason = False, "eager"
        self._compile_key: str | None = None  # set while the first compiled step is still to come
        self.pace = Pace()  # recent step times, for tokens/s and the ETA

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
            self.emit(start_event(self))
            status, message = self._loop()
            return self._finish(status, message)

    def _loop(self) -> tuple[str, str]:
        while True:
            try:
                with stop_scope(self.stop_event):  # evaluation and sampling end on Stop too
                    self._between_steps()
            except StopRequested:
                return Status.STOPPED, stopped_message(self.state.step)
            reason = stop_reason(self.config, self.state.step, self._elapsed(), self.stop_event.is_set(), self.dist)
            if reason:
                return reason
            if not self.train_step():
                return Status.DIVERGED, diverged_message(self.config, self.state)

    def _between_steps(self) -> None:
        """Evaluate, snapshot, sample and save where ``work_due`` says (all on rank 0 only)."""
        work = {"evaluate": self._evaluate, "snapshot": self._snapshot, "sample": self._sample, "save": self._save_latest}
        for name in work_due(self.config, self.state, self._session_start):
            work[name]()

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
        compiling = self._compile_key
        if compiling:  # this step builds the compiled kernels: say so, it takes a while
            self.emit(preparing_event(compiling, self.state.step))
        loss = self._forward_backward(x, y)
        if compiling:  # compiled now (or fell back to eager); its time is remembered for next time
            self._compile_key = None
            seconds = time.perf_counter() - started
            self._start_clock += seconds  # preparing comes on top of a time budget, as encoding the text does
            self.emit(prepared_event(compiling, self.state.step, seconds, self.compiled))
        clip = config.grad_clip if config.grad_clip > 0 else math.inf  # inf: measure, never clip
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        loss_value = float(loss)
        if self.dist.any(not (math.isfinite(loss_value) and math.isfinite(grad_norm))):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._after_step(loss_value, grad_norm, lr, time.perf_counter() - started, compiled=bool(compiling))
        return True

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        try:
            return self._forward_backward_once(x, y)
        except Exception as exc:  # torch.compile fails in many ways (no compiler, unsupported op)
            if not self.compiled:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            self.forward, self.compiled, self._compile_key = self._ddp_or_model, False, None
            self.log(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly")
            return self._forward_backward_once(x, y)

    def _forward_backward_once(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with autocast:
            _, loss = self.forward(x, y)
        loss.backward()
        return loss.detach()

    def _after_step(self, loss: float, grad_norm: float, lr: float, seconds: float, compiled: bool = False) -> None:
        state, config = self.state, self.config
        state.step += 1
        state.tokens_seen += config.batch_size * self.block_size * self.dist.world_size
        state.elapsed = self._elapsed()
        state.last_train_loss = loss
        self.pace.record(seconds, counted=not compiled)  # the step that compiled is not the pace
        if state.step % config.log_interval == 0 or state.step == config.max_steps:
            tokens = config.batch_size * self.block_size * self.dist.world_size
            self.emit(step_event(config, state, self.pace, tokens, loss=loss, grad_norm=grad_norm, lr=lr))

    # ---- evaluation, samples, checkpoints -------------------------------------------------

    def _evaluate(self) -> None:
        if not self.dist.is_main:
            return
        config, state = self.config, self.state
        losses = estimate_loss(self.model, self.data, config.batch_size, self.block_size, config.eval_batches,
                               config.seed, device=self.device)  # fmt: skip
        improved = state.record_val_loss(losses["val"])
        self.emit({"type": "eval", "step": state.step, "train_loss": losses["train"], "val_loss": losses["val"],
                   "best_val_loss": state.best_val_loss, "elapsed": self._elapsed()})  # fmt: skip
        if improved and self.saver:
            self.saver.save_best(self.model.state_dict(), state.copy())

    def _snapshot(self) -> None:
        self.state.snapshots.append(self.state.step)
        if self.saver:
            self.saver.save_snapshot(self.model.state_dict(), self.state.step, self.config.max_snapshots)

    def _sample(self) -> None:
        if self.dist.is_main and self.tokenizer is not None:
            self.emit(sample_event(self.model, self.tokenizer, self.config, self.state.step))

    def _save_latest(self) -> None:
        if self.saver:
            self.state.elapsed = self._elapsed()
            optimizer_state = optimizer_tensors(self.model, self.optimizer)
            self.saver.save_latest(self.model.state_dict(), optimizer_state, self.state.copy())

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
        end = end_event(state, status, message)
        self.emit(end)
        return end

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
        self._ddp_or_model = wrap_ddp(self.model, self.dist, self.device)
        self.forward, self.compiled, self.compile_reason, self._compile_key = compiled_forward(
            self._ddp_or_model, self.config.compile, self.device, self.model, self.dist.active,
            self.config.batch_size, self.block_size, self.autocast)  # fmt: skip
        try:
            yield
        finally:
            self.model.set_attention(attention)
            self.model.eval()


def train(model: LanguageModel, data: TokenData, config: TrainConfig, **kwargs: Any) -> Event:
    """Train ``model`` in place and return the ``"end"`` event (see ``Trainer`` for kwargs)."""
    return Trainer(model, data, config, **kwargs).run()
