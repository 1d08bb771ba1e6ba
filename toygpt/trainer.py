"""The training loop: batches in, gradient steps, evaluation, and events out.

The ``Trainer`` knows nothing about files or screens. It reports through **events**, plain dicts
handed to ``on_event``: ``{"type": "step", ...}`` (loss, lr, grad norm, tokens/s, ETA),
``"eval"`` (train and val loss), ``"sample"`` (generated text), ``"log"`` (a remark) and one final
``"end"`` (status: finished | stopped | diverged). Saving is delegated to an optional ``saver``
(``toygpt.runs.Run``), so the same loop serves the dashboard, the CLI, tests and notebooks.
The rules it follows (config, schedule, optimizer, evaluation) are in ``toygpt.train``.

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
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import torch

from toygpt.compilation import (
    compile_choice,
    compile_key,
    last_compile_seconds,
    record_compile_seconds,
    use_compile_cache,
)
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
    run_progress,
    step_seed,
)

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
        self.compiled, self.compile_reason = False, "eager"
        self._compile_key: str | None = None  # set while the first compiled step is still to come
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
        compiling = self._compile_key
        if compiling:  # this step builds the compiled kernels: say so, it takes a while
            self.emit(self._preparing_event())
        loss = self._forward_backward(x, y)
        if compiling:
            self._compiled_first_step(compiling, time.perf_counter() - started)
        clip = config.grad_clip if config.grad_clip > 0 else math.inf  # inf: measure, never clip
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        loss_value = float(loss)
        if self.dist.any(not (math.isfinite(loss_value) and math.isfinite(grad_norm))):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._after_step(loss_value, grad_norm, lr, None if compiling else time.perf_counter() - started)
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

    def _after_step(self, loss: float, grad_norm: float, lr: float, seconds: float | None) -> None:
        state, config = self.state, self.config
        state.step += 1
        state.tokens_seen += config.batch_size * self.block_size * self.dist.world_size
        state.elapsed = self._elapsed()
        state.last_train_loss = loss
        if seconds is not None:  # None: the step that compiled, not the pace of training
            self._window = (self._window + [seconds])[-50:]
        if state.step % config.log_interval == 0 or state.step == config.max_steps:
            self.emit(self._step_event(loss, grad_norm, lr))

    def _step_event(self, loss: float, grad_norm: float, lr: float) -> Event:
        window = self._window or [self.state.elapsed / max(1, self.state.step)]
        seconds_per_step = sorted(window)[len(window) // 2]  # median: robust to hiccups
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
        )
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
            "compile_reason": self.compile_reason,
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
        self._compile()
        try:
            yield
        finally:
            self.model.set_attention(attention)
            self.model.eval()

    def _compile(self) -> None:
        """``torch.compile`` the forward pass where ``compile_choice`` says so (the kernels are
        built during the first step, into the cache of ``toygpt.compilation``)."""
        self.compiled, self.compile_reason = compile_choice(self.config.compile, self.device, self.model)
        if self.compiled:
            use_compile_cache()
            self.forward = torch.compile(self._ddp_or_model)
            self._compile_key = compile_key(self.model.config, self.config.batch_size, self.block_size, self.autocast)

    def _preparing_event(self) -> Event:
        """Said before the first compiled step: the wait ahead, from this machine's last compile."""
        last = last_compile_seconds(self._compile_key)
        expect = f"took {last:.0f} s last time" if last is not None else "first time on this machine: up to a minute or more"
        return {"type": "preparing", "step": self.state.step, "what": "compiling", "expected_seconds": last,
                "message": f"preparing… compiling the model for this CPU ({expect}); later runs reuse the cache"}

    def _compiled_first_step(self, key: str, seconds: float) -> None:
        if self.compiled:
            record_compile_seconds(key, seconds)
        message = f"compiled in {seconds:.1f} s (the first step included)" if self.compiled else "training eagerly"
        self.emit({"type": "prepared", "step": self.state.step, "seconds": seconds, "compiled": self.compiled,
                   "message": message})  # fmt: skip
        self._compile_key = None

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.active:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)


def train(model: LanguageModel, data: TokenData, config: TrainConfig, **kwargs: Any) -> Event:
    """Train ``model`` in place and return the ``"end"`` event (see ``Trainer`` for kwargs)."""
    return Trainer(model, data, config, **kwargs).run()
