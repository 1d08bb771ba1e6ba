"""Concepts lab: claims learners read about transformers, each turned into an experiment they run.

Every experiment is a plain function ``run_<name>(params, progress=None, stop=None)`` that
returns a result dataclass of JSON-friendly numbers; ``reading(result)`` turns those numbers into
a sentence ("post-LN's validation loss was 0.21 higher after 300 steps"), and ``figures(result)``
into plotly charts. Nothing here is canned: every number comes from the run that just happened.

    claim                                         experiment
    "pre-LN stabilises training"                  run_norm_position      (pre-LN vs post-LN)
    "GPT-2 scales residual weights 1/sqrt(2N)"    run_residual_scaling   (with / without, by depth)
    "positional encodings: learned vs sinusoidal" run_positions          (learned / sinusoidal / none)
    "byte-level trades vocab for length"          run_tokenization       (char, byte, BPE, GPT-2)
    "a model can learn from one example"          run_single_example     (k steps on one sentence)
    "attention replaces recurrence"               run_attention_range    (how far back heads look)

Paired trainings share the seed (so the same initial weights wherever shapes agree) and the data
order (the trainer draws batch ``n`` from a hash of (seed, n)), so the only difference between
them is the one the claim is about. ``save_result`` keeps a result as a run tagged
``lab:<experiment>`` with the numbers in ``lab.json``; ``load_result`` reopens it. ``LabJob`` runs
an experiment on a background thread with the same interface as ``toygpt.jobs.TrainJob``.

    >>> params = NormPositionParams(preset="nano", corpus="copy", steps=20)
    >>> result = run_norm_position(params)                 # doctest: +SKIP
    >>> reading(result)                                    # doctest: +SKIP
    "After 20 steps on copy, post-LN's validation loss was 0.12 higher than pre-LN's ..."
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from toygpt import data as corpora
from toygpt.checkpoint import CheckpointError, read_json, write_json_atomic
from toygpt.inspection import (
    attention_distance,
    attention_maps,
    position_similarity,
    position_vectors,
    residual_stats,
)
from toygpt.jobs import BackgroundJob
from toygpt.model import GPT, GPTConfig, preset, total_parameters
from toygpt.runs import DEMO_RUN, Run, RunInfo, create_run, list_runs, open_run
from toygpt.sample import generate_text
from toygpt.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    TokenizerError,
    get_tiktoken,
    tokenizer_from_dict,
)
from toygpt.train import Event, TrainConfig, Trainer, estimate, estimate_loss, learn_from_example
from toygpt.viz import attention_distance_figure, loss_curves_figure

LAB_FILE = "lab.json"  # the numbers of a saved experiment, beside the run's usual files
TAG_PREFIX = "lab:"
# Runs whose weights are only a by-product of the numbers (e.g. the last of 8 depth variants) get
# this tag too, so model pickers can skip them; single-example learning keeps a real model.
RESULT_ONLY_TAG = "lab:result-only"
FORMAT_VERSION = 1
TRAIN_PRESETS = ("nano", "small")  # larger presets take far longer than the lab's ~2-minute budget
MAX_STEPS = 5000
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]

# Seconds per training step beyond what the FLOP count predicts: Python and small-op overhead,
# which dominates for the nano preset (measured on the 2-core dev machine; see budget texts).
STEP_OVERHEAD_S = 0.004
LAYER_OVERHEAD_S = 0.0015
EVAL_SHARE = 0.25  # evaluations add about this much to a lab training's time


class LabError(ValueError):
    """An experiment cannot run or a saved result cannot be read; the message says what to do."""


class ExperimentStopped(RuntimeError):
    """The user pressed Stop: nothing is saved."""


# --------------------------------------------------------------------------------------------
# Progress: stages of an experiment → progress events for a page, and Stop
# --------------------------------------------------------------------------------------------

ProgressFn = Callable[[dict[str, Any]], None]


class Reporter:
    """Reports an experiment's progress through ``callback`` and honours ``stop``.

    Events: ``{"type": "progress", "fraction": 0..1, "message": str}`` and, for live curves,
    ``{"type": "metric", "variant": label, "step": n, "train_loss" | "val_loss": x}``.
    An experiment announces its stages with weights (``begin("post-LN", weight=2)``); within a
    stage ``at(0.5)`` means half of that stage is done.
    """

    def __init__(self, callback: ProgressFn | None, stop: threading.Event | None, total_weight: float) -> None:
        self.callback = callback or (lambda event: None)
        self.stop = stop or threading.Event()
        self.total = max(float(total_weight), 1e-9)
        self.done, self.weight, self.label = 0.0, 0.0, ""

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise ExperimentStopped("stopped on request; nothing was saved")

    def begin(self, label: str, weight: float = 1.0) -> None:
        self.check_stop()
        self.done += self.weight
        self.weight, self.label = float(weight), label
        self.at(0.0)

    def at(self, within: float, message: str | None = None) -> None:
        fraction = min(1.0, (self.done + self.weight * min(max(within, 0.0), 1.0)) / self.total)
        self.callback({"type": "progress", "fraction": fraction, "message": message or self.label})

    def trainer_event(self, variant: str, event: Event) -> None:
        """Forward a ``Trainer`` event: steps move the bar, steps and evals feed the live curves."""
        if event.get("type") == "step":
            self.at(event.get("progress", 0.0), f"{self.label}: step {event['step']}")
            self.callback({"type": "metric", "variant": variant, "step": event["step"], "train_loss": event["loss"]})
        elif event.get("type") == "eval":
            self.callback({"type": "metric", "variant": variant, "step": event["step"], "val_loss": event["val_loss"]})


# --------------------------------------------------------------------------------------------
# Budgets: what an experiment will cost, said before it starts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """An experiment's cost before it runs: ``seconds`` (an estimate for 2 CPU cores) and a
    sentence saying what will be trained."""

    seconds: float
    text: str


def step_seconds(model_config: GPTConfig, batch_size: int, block_size: int) -> float:
    """Estimated seconds of one training step on a 2-core CPU: FLOPs at the rate
    ``toygpt.train.estimate`` assumes, plus a per-step and per-layer overhead (small models
    spend most of their time in Python and tiny kernels, not in FLOPs)."""
    config = TrainConfig(batch_size=batch_size, block_size=block_size, max_steps=1)
    flop_seconds = estimate(model_config.replace(block_size=max(block_size, 1)), config)["seconds_per_step"]
    return flop_seconds + STEP_OVERHEAD_S + LAYER_OVERHEAD_S * model_config.n_layer


def training_seconds(model_config: GPTConfig, batch_size: int, block_size: int, steps: int) -> float:
    return steps * step_seconds(model_config, batch_size, block_size) * (1 + EVAL_SHARE)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 10_000 else f"{n:,}"


def _about(seconds: float) -> str:
    if seconds < 5:
        return "a few seconds"
    return f"about {seconds:.0f} s" if seconds < 100 else f"about {seconds / 60:.1f} min"


# --------------------------------------------------------------------------------------------
# Shared pieces: setups, corpora, training one variant
# --------------------------------------------------------------------------------------------


def _whole(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LabError(f"{name}={value!r} must be a whole number from {low} to {high}")


def _number(name: str, value: Any, low: float, high: float, hint: str = "") -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise LabError(f"{name}={value!r} must be a number from {low:g} to {high:g}{hint}")


def _corpus_names() -> list[str]:
    return list(corpora.BUILTIN) + list(corpora.DOWNLOADS)


@dataclass(frozen=True)
class TrainingSetup:
    """What every training experiment shares: model size, corpus, steps, learning rate, seed."""

    preset: str = "small"
    corpus: str = "toy-english"
    steps: int = 300
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    batch_size: int = 12
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in TRAIN_PRESETS:
            raise LabError(f"preset={self.preset!r}; choose one of {TRAIN_PRESETS} (the lab's budget is ~2 minutes)")
        if self.corpus not in _corpus_names():
            raise LabError(f"corpus={self.corpus!r}; choose one of {_corpus_names()}")
        _whole("steps", self.steps, 1, MAX_STEPS)
        _number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 3e-3")
        _whole("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        _whole("batch_size", self.batch_size, 1, 256)
        _whole("eval_batches", self.eval_batches, 1, 200)
        _whole("seed", self.seed, 0, 2**31 - 1)

    def model_config(self, vocab_size: int = 65, **changes: Any) -> GPTConfig:
        return preset(self.preset, vocab_size=vocab_size, **changes)

    def train_config(self, **changes: Any) -> TrainConfig:
        """The lab's training recipe: no checkpoints, snapshots or samples; ~10 evaluations and
        ~60 logged steps per training, whatever the length (so curves have the same detail)."""
        steps = changes.pop("steps", self.steps)
        base = dict(
            batch_size=self.batch_size, max_steps=steps, learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps, eval_interval=max(1, steps // 10), eval_batches=self.eval_batches,
            log_interval=max(1, steps // 60), checkpoint_interval=0, max_snapshots=0, seed=self.seed,
        )  # fmt: skip
        return TrainConfig(**{**base, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class CharCorpus:
    """A corpus prepared for character-level training."""

    name: str
    text: str
    tokenizer: CharTokenizer
    data: corpora.TokenData


def char_corpus(name: str, seed: int = 0) -> CharCorpus:
    """Corpus ``name`` (built-in, or downloaded on first use) with a char tokenizer, split 90/10."""
    text = corpora.load_corpus(name, seed)
    tokenizer = CharTokenizer.from_text(text)
    return CharCorpus(name, text, tokenizer, corpora.prepare(text, tokenizer))


@dataclass
class VariantRun:
    """One trained variant: its model, the curve rows for charts and the trainer's raw events."""

    label: str
    model: GPT
    rows: list[dict[str, Any]]
    events: list[Event]
    end: Event

    @property
    def start_loss(self) -> float | None:
        first = next((row["val_loss"] for row in self.rows if "val_loss" in row), None)
        return first

    @property
    def final_loss(self) -> float | None:
        value = self.end.get("val_loss")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def curve_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Trainer events → rows for ``toygpt.viz.loss_curves_figure``: ``{"step", "train_loss"}``
    per logged step and ``{"step", "val_loss"}`` per evaluation (non-finite values dropped)."""
    rows = []
    for event in events:
        key, source = {"step": ("train_loss", "loss"), "eval": ("val_loss", "val_loss")}.get(event.get("type"), (None, None))
        value = event.get(source) if source else None
        if key and isinstance(value, int | float) and math.isfinite(value):
            rows.append({"step": int(event["step"]), key: _round(value)})
    return rows


def train_variant(label: str, model: GPT, data: corpora.TokenData, config: TrainConfig, reporter: Reporter) -> VariantRun:
    """Train ``model`` in place with ``config``; Stop raises ``ExperimentStopped``."""
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        reporter.trainer_event(label, event)

    end = Trainer(model, data, config, on_event=on_event, stop_event=reporter.stop).run()
    if end["status"] == "stopped":
        raise ExperimentStopped("stopped on request; nothing was saved")
    return VariantRun(label, model.eval(), curve_rows(events), events, end)


@torch.no_grad()
def val_windows(data: corpora.TokenData, block_size: int, count: int, seed: int) -> torch.Tensor:
    """``count`` random windows of ``block_size + 1`` validation tokens, (count, block_size + 1)."""
    x, y = data.get_batch("val", count, block_size, torch.Generator().manual_seed(seed))
    return torch.cat([x, y[:, -1:]], dim=1)


# --------------------------------------------------------------------------------------------
# Numbers that survive JSON
# --------------------------------------------------------------------------------------------


def _round(value: float, digits: int = 6) -> float | None:
    """A float with ``digits`` significant digits, or None for NaN/inf (JSON has neither)."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """Tensors, tuples and floats → JSON-friendly lists and rounded floats, recursively."""
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().float().cpu().tolist())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _round(value)
    return value


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _gap(a: float, b: float, digits: int = 2) -> float:
    """|a − b| of the numbers as shown, so "1.51 vs 1.55" reads as a gap of 0.04, never 0.05."""
    return abs(round(a, digits) - round(b, digits))


# ============================================================================================
# 1. Pre-LN vs post-LN
# ============================================================================================


@dataclass(frozen=True)
class NormPositionParams(TrainingSetup):
    """Pre-LN vs post-LN, same model, data, seed and steps. ``lr_sweep`` then trains both again
    with no warmup at rising learning rates (``sweep_lrs``, ``sweep_steps`` each) until one
    diverges — the instability that made GPT-2 move the LayerNorm."""

    lr_sweep: bool = True
    sweep_lrs: tuple[float, ...] = (1e-2, 3e-2, 1e-1)
    sweep_steps: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sweep_lrs, list):
            object.__setattr__(self, "sweep_lrs", tuple(self.sweep_lrs))
        if not isinstance(self.sweep_lrs, tuple) or not 1 <= len(self.sweep_lrs) <= 8:
            raise LabError("sweep_lrs needs 1 to 8 learning rates, e.g. (1e-2, 3e-2, 1e-1)")
        for lr in self.sweep_lrs:
            _number("each of sweep_lrs", lr, 1e-6, 10.0)
        object.__setattr__(self, "sweep_lrs", tuple(sorted(self.sweep_lrs)))  # rising, as the sweep needs
        _whole("sweep_steps", self.sweep_steps, 1, MAX_STEPS)

    def budget(self) -> Budget:
        model = self.model_config()
        seconds = 2 * training_seconds(model, self.batch_size, model.block_size, self.steps)
        text = f"2 trainings (pre-LN, post-LN) × {self.steps} steps of the {self.preset} preset (≈ {_millions(total_parameters(model))} parameters each)"
        if self.lr_sweep:
            seconds += 2 * len(self.sweep_lrs) * training_seconds(model, self.batch_size, model.block_size, self.sweep_steps)
            text += f", then up to {2 * len(self.sweep_lrs)} more × {self.sweep_steps} steps for the learning-rate sweep"
        return Budget(seconds, f"{text}: {_about(seconds)} on 2 CPU cores.")


@dataclass(frozen=True)
class NormPositionResult:
    params: dict[str, Any]
    steps: int
    curves: dict[str, list[dict[str, Any]]]  # variant → loss-curve rows
    final_val: dict[str, float | None]
    status: dict[str, str]
    layer_labels: list[str]
    grad_norms: dict[str, dict[str, list[float]]]  # variant → {"init": [...], "trained": [...]}
    sweep: list[dict[str, Any]]  # rows {"lr", "variant", "final_loss", "diverged"}
    unigram_loss: float  # the loss of guessing tokens from their frequency alone (see ``diverged``)
    elapsed: float
    experiment: str = "norm-position"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


NORM_VARIANTS = {"pre-LN": "pre", "post-LN": "post"}


def gradient_norms_by_layer(model: GPT, batch: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    """‖∂loss/∂w‖ over each block's weights for one batch ``(x, y)``, block 0 first.

    The weights are not changed (gradients are cleared afterwards). Post-LN divides the gradient
    by every LayerNorm it passes on the way back, so at initialisation its early blocks get
    different gradients than its late ones; pre-LN's clean residual path keeps them similar.
    """
    x, y = batch
    was_training = model.training
    model.eval()  # dropout off: the same batch always gives the same gradients
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    norms = []
    for block in model.transformer.h:
        squares = [p.grad.pow(2).sum() for p in block.parameters() if p.grad is not None]
        norms.append(_round(float(torch.stack(squares).sum().sqrt())) if squares else 0.0)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return norms


CONTEXT_MARGIN = 0.1  # nats below the unigram loss a training must reach to count as learning


def unigram_loss(data: corpora.TokenData) -> float:
    """The loss of predicting every token from its frequency in the training split alone, in
    nats: the entropy −Σ p·ln p. A model that ignores the context can do this well, no better.

    >>> round(unigram_loss(corpora.TokenData(torch.tensor([0, 1] * 50), 2)), 4)  # a fair coin
    0.6931
    """
    counts = torch.bincount(data.train, minlength=data.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def diverged(run: VariantRun, unigram: float) -> bool:
    """The training fell apart: the loss became NaN, or it ended within ``CONTEXT_MARGIN`` of
    the unigram loss — with the gradient clipped, a learning rate that is too high rarely gives
    NaN; it knocks the model back to guessing tokens from their frequency, where it stays."""
    final = run.final_loss
    return run.end["status"] == "diverged" or final is None or final > unigram - CONTEXT_MARGIN


def _lr_sweep(params: NormPositionParams, corpus: CharCorpus, unigram: float, reporter: Reporter) -> list[dict[str, Any]]:
    """Train both variants at each learning rate (no warmup) until at least one diverges."""
    rows = []
    for lr in params.sweep_lrs:
        config = params.train_config(steps=params.sweep_steps, learning_rate=lr, warmup_steps=0)
        for label, norm in NORM_VARIANTS.items():
            reporter.begin(f"sweep: {label} at lr {lr:g}", weight=params.sweep_steps)
            model = GPT(params.model_config(corpus.tokenizer.vocab_size, norm_position=norm), seed=params.seed)
            run = train_variant(label, model, corpus.data, config, reporter)
            rows.append({"lr": lr, "variant": label, "final_loss": run.final_loss and _round(run.final_loss),
                         "diverged": diverged(run, unigram)})  # fmt: skip
        if any(row["diverged"] for row in rows[-2:]):
            break
    return rows


def run_norm_position(
    params: NormPositionParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> NormPositionResult:
    """Train pre-LN and post-LN copies of one model on the same data, seed and step budget."""
    started = time.perf_counter()
    sweep_weight = 2 * len(params.sweep_lrs) * params.sweep_steps if params.lr_sweep else 0
    reporter = Reporter(progress, stop, 2 * params.steps + sweep_weight + 1)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    config = params.train_config()
    block_size = params.model_config().block_size
    batch = corpus.data.get_batch("val", params.batch_size, block_size, torch.Generator().manual_seed(params.seed))
    runs, norms = {}, {}
    for label, norm in NORM_VARIANTS.items():
        reporter.begin(label, weight=params.steps)
        model = GPT(params.model_config(corpus.tokenizer.vocab_size, norm_position=norm), seed=params.seed)
        at_init = gradient_norms_by_layer(model, batch)
        runs[label] = train_variant(label, model, corpus.data, config, reporter)
        norms[label] = {"init": at_init, "trained": gradient_norms_by_layer(model, batch)}
    unigram = unigram_loss(corpus.data)
    sweep = _lr_sweep(params, corpus, unigram, reporter) if params.lr_sweep else []
    result = NormPositionResult(
        params=params.to_dict(), steps=params.steps, curves={k: r.rows for k, r in runs.items()},
        final_val={k: r.final_loss and _round(r.final_loss) for k, r in runs.items()},
        status={k: r.end["status"] for k, r in runs.items()},
        layer_labels=[f"block {i}" for i in range(len(norms["pre-LN"]["init"]))],
        grad_norms=norms, sweep=sweep, unigram_loss=_round(unigram), elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    return _with_artifacts(result, runs["pre-LN"], corpus, config)


def _grad_ratio(norms: list[float]) -> float | None:
    """Gradient norm of the first block over the last: < 1 means early layers learn slower."""
    return norms[0] / norms[-1] if norms and norms[-1] else None


def reading_norm_position(result: NormPositionResult) -> str:
    pre, post = result.final_val.get("pre-LN"), result.final_val.get("post-LN")
    corpus = result.params.get("corpus", "the corpus")
    if pre is None or post is None:
        diverged = [k for k, s in result.status.items() if s == "diverged"]
        text = f"After {result.steps} steps on {corpus}, {' and '.join(diverged) or 'a variant'} diverged (the loss became NaN)."
    else:
        higher, lower = ("post-LN", "pre-LN") if post > pre else ("pre-LN", "post-LN")
        text = (f"After {result.steps} steps on {corpus}, {higher}'s validation loss was {_gap(post, pre):.2f} higher "
                f"than {lower}'s ({_fmt(result.final_val[higher])} vs {_fmt(result.final_val[lower])} nats per token).")  # fmt: skip
    ratios = {k: _grad_ratio(v["init"]) for k, v in result.grad_norms.items()}
    if all(r is not None for r in ratios.values()):
        text += (f" At initialisation the first block's gradient norm was {ratios['pre-LN']:.2f}× the last block's "
                 f"with pre-LN and {ratios['post-LN']:.2f}× with post-LN.")  # fmt: skip
    return text + _sweep_reading(result.sweep, result.unigram_loss)


def _sweep_reading(sweep: list[dict[str, Any]], unigram: float) -> str:
    if not sweep:
        return ""
    last_lr = sweep[-1]["lr"]
    at_last = {row["variant"]: row for row in sweep if row["lr"] == last_lr}
    failed = [variant for variant, row in at_last.items() if row["diverged"]]
    if not failed:
        losses = " and ".join(f"{v} {_fmt(r['final_loss'])}" for v, r in at_last.items())
        return f" With no warmup, neither diverged at learning rates up to {last_lr:g} (val loss {losses})."
    if len(failed) == 2:
        return (f" With no warmup, both diverged at learning rate {last_lr:g}: no better than the "
                f"{unigram:.2f} nats of guessing characters from their frequency.")  # fmt: skip
    other = "pre-LN" if failed[0] == "post-LN" else "post-LN"
    return (f" Raising the learning rate with no warmup, {failed[0]} diverged first, at {last_lr:g}: val loss "
            f"{_fmt(at_last[failed[0]]['final_loss'])}, no better than the {unigram:.2f} of guessing characters "
            f"from their frequency, while {other} reached {_fmt(at_last[other]['final_loss'])}.")  # fmt: skip


def figures_norm_position(result: NormPositionResult) -> list[go.Figure]:
    curves = loss_curves_figure(result.curves)
    curves.update_layout(title=f"pre-LN vs post-LN: loss over {result.steps} steps")
    bars = go.Figure()
    for i, (variant, norms) in enumerate(result.grad_norms.items()):
        for when, pattern in (("init", "/"), ("trained", "")):
            bars.add_trace(go.Bar(x=result.layer_labels, y=norms[when], name=f"{variant} · {'at init' if when == 'init' else 'after training'}",
                                  marker=dict(color=PALETTE[i], pattern_shape=pattern)))  # fmt: skip
    bars.update_yaxes(title="gradient norm (log)", type="log")
    figs = [curves, _layout(bars, "gradient norm per layer, at init and after training")]
    if result.sweep:
        figs.append(_sweep_figure(result.sweep, result.unigram_loss))
    return figs


def _sweep_figure(sweep: list[dict[str, Any]], unigram: float) -> go.Figure:
    fig = go.Figure()
    for i, variant in enumerate(NORM_VARIANTS):
        rows = [r for r in sweep if r["variant"] == variant]
        fig.add_trace(go.Scatter(
            x=[r["lr"] for r in rows], y=[r["final_loss"] for r in rows], name=variant, mode="lines+markers",
            marker=dict(color=PALETTE[i], size=11, symbol=["x" if r["diverged"] else "circle" for r in rows]),
            line=dict(color=PALETTE[i]),
        ))  # fmt: skip
    fig.add_hline(y=unigram, line_dash="dot", annotation_text="guessing from character frequency alone")
    fig.update_xaxes(title="learning rate (no warmup, log)", type="log")
    fig.update_yaxes(title="val loss at the end (× = diverged)")
    return _layout(fig, "raising the learning rate until one diverges")


# ============================================================================================
# 2. Residual init scaling
# ============================================================================================


@dataclass(frozen=True)
class ResidualScalingParams(TrainingSetup):
    """With and without GPT-2's 0.02/sqrt(2·n_layer) init of the residual projections, at each
    depth in ``depths`` (width, heads and context from ``preset``)."""

    preset: str = "nano"
    steps: int = 150
    depths: tuple[int, ...] = (2, 4, 8, 12)
    stats_windows: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.depths, list):
            object.__setattr__(self, "depths", tuple(self.depths))
        if not self.depths or len(self.depths) > 6:
            raise LabError("depths needs 1 to 6 layer counts, e.g. (2, 4, 8, 12)")
        for depth in self.depths:
            _whole("each depth", depth, 1, 24)
        object.__setattr__(self, "depths", tuple(sorted(set(self.depths))))
        _whole("stats_windows", self.stats_windows, 1, 64)

    def budget(self) -> Budget:
        configs = [self.model_config(n_layer=d) for d in self.depths]
        seconds = 2 * sum(training_seconds(c, self.batch_size, c.block_size, self.steps) for c in configs)
        text = (f"{2 * len(self.depths)} trainings (depths {', '.join(map(str, self.depths))}, each with and without "
                f"scaling) × {self.steps} steps at the {self.preset} preset's width")  # fmt: skip
        return Budget(seconds, f"{text}: {_about(seconds)} on 2 CPU cores.")


@dataclass(frozen=True)
class ResidualScalingResult:
    params: dict[str, Any]
    depths: list[int]
    steps: int
    layer_std: dict[str, list[float]]  # "12 layers · scaled" → std after embedding, block 0, ...
    final_std: dict[str, list[float]]  # "scaled"/"unscaled" → std after the last block, per depth
    early_loss: dict[str, list[float | None]]  # "scaled"/"unscaled" → val loss after `steps`, per depth
    elapsed: float
    experiment: str = "residual-scaling"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


SCALINGS = {"scaled": True, "unscaled": False}


def residual_std_by_layer(model: GPT, windows: torch.Tensor) -> list[float]:
    """Standard deviation of the residual stream after the embeddings and after each block,
    averaged over the windows (rows of ``windows``; each at most block_size tokens)."""
    stds = torch.stack([residual_stats(model, row).std for row in windows])
    return [_round(v) for v in stds.mean(0).tolist()]


def run_residual_scaling(
    params: ResidualScalingParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> ResidualScalingResult:
    """Residual-stream size at init and loss after a short training, with and without scaling."""
    started = time.perf_counter()
    weights = {d: d * params.steps for d in params.depths}
    reporter = Reporter(progress, stop, 2 * sum(weights.values()) + 1)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    config = params.train_config()
    block_size = params.model_config().block_size
    windows = val_windows(corpus.data, block_size, params.stats_windows, params.seed)[:, :-1]
    layer_std, final_std, early_loss = {}, {k: [] for k in SCALINGS}, {k: [] for k in SCALINGS}
    last = None
    for depth in params.depths:
        for name, scale in SCALINGS.items():
            label = f"{depth} layers · {name}"
            reporter.begin(label, weight=weights[depth])
            model = GPT(params.model_config(corpus.tokenizer.vocab_size, n_layer=depth, scale_residual_init=scale), seed=params.seed)
            layer_std[label] = residual_std_by_layer(model.eval(), windows)
            final_std[name].append(layer_std[label][-1])
            last = train_variant(label, model, corpus.data, config, reporter)
            early_loss[name].append(last.final_loss and _round(last.final_loss))
    result = ResidualScalingResult(
        params=params.to_dict(), depths=list(params.depths), steps=params.steps, layer_std=layer_std,
        final_std=final_std, early_loss=early_loss, elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    return _with_artifacts(result, last, corpus, config)


def reading_residual_scaling(result: ResidualScalingResult) -> str:
    deep, shallow = len(result.depths) - 1, 0
    s, u = result.final_std["scaled"], result.final_std["unscaled"]
    text = (f"At initialisation with {result.depths[deep]} layers, the residual stream's standard deviation after "
            f"the last block was {u[deep]:.3f} without scaling and {s[deep]:.3f} with it ({u[deep] / s[deep]:.2f}×)")  # fmt: skip
    if deep != shallow:
        text += f"; with {result.depths[shallow]} layers {u[shallow]:.3f} vs {s[shallow]:.3f} ({u[shallow] / s[shallow]:.2f}×)"
    ls, lu = result.early_loss["scaled"][deep], result.early_loss["unscaled"][deep]
    if ls is not None and lu is not None:
        better = "scaled" if ls < lu else "unscaled"
        text += (f". After {result.steps} steps the {result.depths[deep]}-layer model's validation loss was "
                 f"{_fmt(ls)} with scaling and {_fmt(lu)} without ({better} lower by {_gap(lu, ls):.2f}).")  # fmt: skip
    else:
        text += f". After {result.steps} steps the {result.depths[deep]}-layer model diverged in at least one variant."
    return text


def figures_residual_scaling(result: ResidualScalingResult) -> list[go.Figure]:
    stds = go.Figure()
    for i, depth in enumerate(result.depths):
        for name, dash in (("scaled", "solid"), ("unscaled", "dash")):
            values = result.layer_std[f"{depth} layers · {name}"]
            stds.add_trace(go.Scatter(x=list(range(len(values))), y=values, name=f"{depth} layers · {name}",
                                      mode="lines+markers", line=dict(color=PALETTE[i % len(PALETTE)], dash=dash)))  # fmt: skip
    stds.update_xaxes(title="residual stream after (0 = embeddings, n = block n−1)", dtick=1)
    stds.update_yaxes(title="standard deviation")
    losses = go.Figure()
    for i, name in enumerate(SCALINGS):
        losses.add_trace(go.Scatter(x=result.depths, y=result.early_loss[name], name=name, mode="lines+markers",
                                    line=dict(color=PALETTE[i])))  # fmt: skip
    losses.update_xaxes(title="layers", tickmode="array", tickvals=result.depths)
    losses.update_yaxes(title=f"val loss after {result.steps} steps")
    return [_layout(stds, "residual stream size at initialisation (solid: scaled, dashed: unscaled)"),
            _layout(losses, f"early training: val loss after {result.steps} steps, by depth")]  # fmt: skip


# ============================================================================================
# 3. Positional encodings
# ============================================================================================

ORDER_CORPORA = ("toy-english", "copy", "reverse", "sort", "addition", "counting")  # order matters in all
SEPARATORS = "|>="  # the answer of a built-in task starts after one of these


@dataclass(frozen=True)
class PositionParams(TrainingSetup):
    """Learned vs sinusoidal vs no position encoding on a task where order matters.

    The default, toy-english, is learned within the budget: spelling and word order both depend
    on order. The question|answer tasks (copy, reverse, ...) need position too, but a small model
    needs far more than two minutes before it starts to solve them."""

    preset: str = "nano"
    corpus: str = "toy-english"
    steps: int = 800
    scored_lines: int = 300

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corpus not in ORDER_CORPORA:
            raise LabError(f"corpus={self.corpus!r}; choose one of {ORDER_CORPORA} (tasks where order matters)")
        _whole("scored_lines", self.scored_lines, 1, 5000)

    def budget(self) -> Budget:
        model = self.model_config()
        seconds = 3 * training_seconds(model, self.batch_size, model.block_size, self.steps)
        text = f"3 trainings (learned, sinusoidal, none) × {self.steps} steps of the {self.preset} preset on {self.corpus}"
        return Budget(seconds, f"{text}: {_about(seconds)} on 2 CPU cores.")


@dataclass(frozen=True)
class PositionResult:
    params: dict[str, Any]
    steps: int
    corpus: str
    scored: str  # what accuracy_by_index counts: "answer" (after a separator) or "word" (within a word)
    curves: dict[str, list[dict[str, Any]]]
    final_val: dict[str, float | None]
    accuracy: dict[str, float]  # variant → share of scored characters predicted right (argmax)
    accuracy_by_index: dict[str, list[float]]  # variant → accuracy of the 1st, 2nd, ... scored character
    init_size_ratio: dict[str, float]  # std of the position vectors / std of the token embeddings, at init
    count_by_index: list[int]  # how many characters were scored at each index (the same for every variant)
    similarity: dict[str, dict[str, list[list[float]]]]  # "learned"/"sinusoidal" → before/after
    elapsed: float
    experiment: str = "positions"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


POSITION_VARIANTS = ("learned", "sinusoidal", "none")


def scored_positions(line: str) -> list[tuple[int, int]]:
    """Which characters of a line to score, as (position in the line, index in its segment).

    A question|answer line scores its answer, indexed from the separator; any other line scores
    every character of every word, indexed from the word's start.

    >>> scored_positions("ab>ba")
    [(3, 0), (4, 1)]
    >>> scored_positions("a fox")
    [(0, 0), (2, 0), (3, 1), (4, 2)]
    """
    separators = [line.index(s) for s in SEPARATORS if s in line]
    if separators:
        start = min(separators) + 1
        return [(i, i - start) for i in range(start, len(line))]
    scored, index = [], 0
    for i, ch in enumerate(line):
        if ch == " ":
            index = 0
            continue
        scored.append((i, index))
        index += 1
    return scored


def scored_lines(text: str, block_size: int, limit: int) -> list[str]:
    """Up to ``limit`` whole lines of ``text`` (the first may be cut, so it is skipped), each
    cropped to ``block_size − 1`` characters so that it fits with the newline before it."""
    lines = [line[: block_size - 1] for line in text.split("\n")[1:-1] if line.strip()]
    return lines[:limit]


@torch.no_grad()
def order_accuracy(model: GPT, tokenizer: Tokenizer, lines: Sequence[str]) -> tuple[float, list[float], list[int]]:
    """Share of scored characters (``scored_positions``) that the model predicts right (argmax,
    teacher-forced), overall and by index in their segment, and how many were scored per index. Each line is read as
    ``"\\n" + line``; right-padding is harmless, as a causal model never looks ahead.

    Without positions a model knows the current character and the *set* of earlier ones, not
    their order, so it should fall behind most where order decides the next character.
    """
    rows = [tokenizer.encode("\n" + line) for line in lines]
    if not rows:
        raise LabError("no complete lines to score in the validation text; use a longer corpus")
    width = max(len(r) for r in rows)
    idx = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows])
    predicted = model.eval()(idx)[0].argmax(-1)  # (B, T): the guess for the next position
    hits: dict[int, list[bool]] = {}
    for b, line in enumerate(lines):
        for position, index in scored_positions(line):
            t = position + 1  # the row starts with "\n"
            hits.setdefault(index, []).append(bool(predicted[b, t - 1] == idx[b, t]))
    every = [h for row in hits.values() for h in row]
    if not every:
        raise LabError("nothing to score in these lines (no words or answers)")
    by_index = [hits[i] for i in sorted(hits)]
    return sum(every) / len(every), [sum(h) / len(h) for h in by_index], [len(h) for h in by_index]


def run_positions(
    params: PositionParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> PositionResult:
    """Train the same model with each position encoding; compare loss, accuracy and the
    position-similarity matrices before and after training."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, 3 * params.steps + 1)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    config = params.train_config()
    block_size = params.model_config().block_size
    lines = scored_lines(corpus.tokenizer.decode(corpus.data.val.tolist()), block_size, params.scored_lines)
    runs, accuracy, by_index, similarity, size = {}, {}, {}, {}, {}
    for variant in POSITION_VARIANTS:
        reporter.begin(f"{variant} positions", weight=params.steps)
        model = GPT(params.model_config(corpus.tokenizer.vocab_size, pos_encoding=variant), seed=params.seed)
        before = position_similarity(model) if variant != "none" else None
        if before is not None:
            size[variant] = _round(position_to_token_size(model))
        runs[variant] = train_variant(variant, model, corpus.data, config, reporter)
        if before is not None:
            similarity[variant] = {"before": _plain(before), "after": _plain(position_similarity(model))}
        overall, per_index, counts = order_accuracy(model, corpus.tokenizer, lines)
        accuracy[variant], by_index[variant] = _round(overall), [_round(a) for a in per_index]
    result = PositionResult(
        params=params.to_dict(), steps=params.steps, corpus=params.corpus,
        scored="answer" if any(s in line for line in lines for s in SEPARATORS) else "word",
        curves={k: r.rows for k, r in runs.items()},
        final_val={k: r.final_loss and _round(r.final_loss) for k, r in runs.items()},
        accuracy=accuracy, accuracy_by_index=by_index, init_size_ratio=size, count_by_index=counts, similarity=similarity,
        elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    return _with_artifacts(result, runs["learned"], corpus, config)


def position_to_token_size(model: GPT) -> float:
    """How big the position signal is next to the token signal it is added to: std of the
    position vectors over std of the token embeddings as the model adds them. Sinusoids are ±1 by
    construction and token embeddings start at std 0.02, so the model multiplies tokens by
    sqrt(n_embd) when positions are sinusoidal, as the original Transformer did."""
    with torch.no_grad():
        return float(position_vectors(model).std() / (model.transformer.wte.weight.std() * model.token_scale))


def similarity_change(matrices: dict[str, list[list[float]]]) -> float:
    """Mean |after − before| over the cells of two position-similarity matrices."""
    before, after = torch.tensor(matrices["before"]), torch.tensor(matrices["after"])
    return float((after - before).abs().mean())


SCORED = {  # what accuracy_by_index counts: (the things, one of them, where)
    "answer": ("answer characters", "character of the answer", "the answer"),
    "word": ("letters", "letter of a word", "the word"),
}
MIN_SCORED = 20  # indices scored fewer times than this are too noisy to single out


def ordinal(n: int) -> str:
    """An English ordinal.

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd']
    """
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _largest_gap(result: PositionResult, best: str) -> int | None:
    """The index (with enough samples) where "none" falls furthest behind ``best``."""
    none, top = result.accuracy_by_index["none"], result.accuracy_by_index[best]
    candidates = [i for i, n in enumerate(result.count_by_index) if n >= MIN_SCORED]
    return max(candidates, key=lambda i: top[i] - none[i]) if candidates else None


def reading_positions(result: PositionResult) -> str:
    what, index_name, _ = SCORED.get(result.scored, SCORED["word"])
    losses = ", ".join(f"{k} {_fmt(v)}" for k, v in result.final_val.items())
    accuracy = ", ".join(f"{k} {100 * v:.1f}%" for k, v in result.accuracy.items())
    text = (f"After {result.steps} steps on {result.corpus}, the validation loss was {losses}. "
            f"Share of {what} predicted right: {accuracy}.")  # fmt: skip
    best = max(result.accuracy, key=result.accuracy.get)
    gap = _largest_gap(result, best) if best != "none" and "none" in result.accuracy_by_index else None
    if gap is not None:
        none, top = result.accuracy_by_index["none"][gap], result.accuracy_by_index[best][gap]
        text += (f" Without positions the model fell furthest behind at the {ordinal(gap + 1)} {index_name}: "
                 f"{100 * none:.1f}% right vs {100 * top:.1f}% with {best} positions.")  # fmt: skip
    if result.init_size_ratio:
        sizes = " and ".join(f"{v:.1f}× ({k})" for k, v in result.init_size_ratio.items())
        text += f" At initialisation the position vectors were {sizes} the size of the token embeddings they are added to."
    changes = {k: similarity_change(v) for k, v in result.similarity.items()}
    if changes:
        text += " Training changed the position similarities by " + ", ".join(f"{v:.3f} ({k})" for k, v in changes.items())
        text += " on average (sinusoidal positions are fixed, not learned)." if "sinusoidal" in changes else "."
    return text


def figures_positions(result: PositionResult) -> list[go.Figure]:
    _, index_name, where = SCORED.get(result.scored, SCORED["word"])
    curves = loss_curves_figure(result.curves)
    curves.update_layout(title=f"learned vs sinusoidal vs no positions: loss on {result.corpus}")
    accuracy = go.Figure()
    for i, (variant, values) in enumerate(result.accuracy_by_index.items()):
        accuracy.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, name=variant, mode="lines+markers",
                                      customdata=result.count_by_index, line=dict(color=PALETTE[i]),
                                      hovertemplate="#%{x}: %{y:.3f} right (%{customdata} scored)<extra>" + variant + "</extra>"))  # fmt: skip
    accuracy.update_xaxes(title=f"{index_name} (1 = first)", dtick=1)
    accuracy.update_yaxes(title="share predicted right", range=[0, 1.05])
    figs = [curves, _layout(accuracy, f"what each variant gets right, by position in {where}")]
    if result.similarity:
        figs.append(_similarity_grid(result.similarity))
    return figs


def _similarity_grid(similarity: dict[str, dict[str, list[list[float]]]]) -> go.Figure:
    names = list(similarity)
    titles = [f"{name} · {when}" for name in names for when in ("before training", "after training")]
    fig = make_subplots(len(names), 2, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.12)
    for row, name in enumerate(names, start=1):
        for col, when in enumerate(("before", "after"), start=1):
            fig.add_trace(go.Heatmap(z=similarity[name][when], colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
                                     showscale=row == col == 1, colorbar=dict(title="cosine"),
                                     hovertemplate="positions %{y} and %{x}: %{z:.3f}<extra></extra>"),
                          row=row, col=col)  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "cosine similarity of position vectors", height=380 * len(names))


# ============================================================================================
# 4. Tokenization trade-offs
# ============================================================================================

DEFAULT_TOKENIZERS = ("char", "byte", "bpe-300", "bpe-512", "gpt2")
MAX_TOKENIZE_CHARS = 400_000  # the lab measures and trains on at most this much of the text


@dataclass(frozen=True)
class TokenizationParams:
    """Several tokenizers on one text: cost in tokens, context per block, embedding parameters,
    and (``train_seconds`` > 0) validation loss per byte after the same training time each.

    ``text`` is your own text (None: the ``corpus`` by name). BPE is trained on the text itself."""

    corpus: str = "toy-english"
    text: str | None = None
    tokenizers: tuple[str, ...] = DEFAULT_TOKENIZERS
    preset: str = "nano"
    block_size: int = 64
    train_seconds: float = 15.0
    learning_rate: float = 3e-3
    batch_size: int = 12
    eval_batches: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.tokenizers, list):
            object.__setattr__(self, "tokenizers", tuple(self.tokenizers))
        if not isinstance(self.corpus, str) or (self.text is None and self.corpus not in _corpus_names()):
            raise LabError(f"corpus={self.corpus!r}; choose one of {_corpus_names()}, or give your own text")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise LabError("the text is empty; paste or upload some text (a few thousand characters at least)")
        if not self.tokenizers or len(self.tokenizers) > 8:
            raise LabError("choose 1 to 8 tokenizers, e.g. ('char', 'byte', 'bpe-512', 'gpt2')")
        for name in self.tokenizers:
            _check_tokenizer_name(name)
        if self.preset not in TRAIN_PRESETS:
            raise LabError(f"preset={self.preset!r}; choose one of {TRAIN_PRESETS}")
        _whole("block_size", self.block_size, 4, 1024)
        _number("train_seconds", self.train_seconds, 0.0, 600.0, " (0 skips training)")
        _number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 3e-3")
        _whole("batch_size", self.batch_size, 1, 256)
        _whole("eval_batches", self.eval_batches, 1, 200)
        _whole("seed", self.seed, 0, 2**31 - 1)

    def budget(self) -> Budget:
        bpe = [n for n in self.tokenizers if n.startswith("bpe-")]
        seconds = len(self.tokenizers) * self.train_seconds + 4.0 * len(bpe) + 2.0
        text = f"{len(self.tokenizers)} tokenizers measured on the text"
        if bpe:
            text += f" ({len(bpe)} BPE vocabularies trained on it first)"
        if self.train_seconds > 0:
            text += f", then a {self.preset}-shaped model trained for {self.train_seconds:g} s with each"
        return Budget(seconds, f"{text}: {_about(seconds)} on 2 CPU cores.")

    def to_dict(self) -> dict[str, Any]:
        """Everything but the text itself (kept as the run's corpus.txt): its length instead."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "text"}
        data["text_chars"] = None if self.text is None else len(self.text)
        return data


def _check_tokenizer_name(name: Any) -> None:
    if name in ("char", "byte", "gpt2"):
        return
    digits = name[4:] if isinstance(name, str) and name.startswith("bpe-") else ""
    if not (digits.isascii() and digits.isdigit() and 257 <= int(digits) <= 8192):
        raise LabError(f"tokenizer {name!r}: use char, byte, gpt2 or bpe-N with N from 257 to 8192 (e.g. bpe-512)")


@dataclass(frozen=True)
class TokenizationResult:
    params: dict[str, Any]
    corpus: str
    chars: int
    bytes: int
    block_size: int
    n_embd: int
    rows: list[dict[str, Any]]  # one per tokenizer (see ``tokenizer_row``)
    elapsed: float
    experiment: str = "tokenization"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def build_tokenizer(name: str, text: str) -> Tokenizer:
    """char / byte / bpe-N (trained on ``text``) / gpt2 (tiktoken; raises TokenizerError offline)."""
    if name == "char":
        return CharTokenizer.from_text(text)
    if name == "byte":
        return ByteTokenizer()
    if name == "gpt2":
        return get_tiktoken("gpt2")
    return BPETokenizer.train(text, int(name[4:]))


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    """Convert a loss in nats per token to bits per byte of text, so that models with different
    tokenizers compare fairly: a token covering 4 bytes may cost 4× as much as a 1-byte token.

    bits/byte = (nats/token) × (tokens / bytes) / ln 2

    >>> bits_per_byte(math.log(256), tokens=10, n_bytes=10)   # uniform over bytes: 8 bits each
    8.0
    >>> round(bits_per_byte(2.0, tokens=25, n_bytes=100), 4)  # 4 bytes per token
    0.7213
    """
    if tokens < 1 or n_bytes < 1:
        raise LabError(f"need at least one token and one byte, got tokens={tokens}, n_bytes={n_bytes}")
    return nats_per_token * tokens / n_bytes / math.log(2)


def tokenizer_row(name: str, tokenizer: Tokenizer, text: str, block_size: int, model_config: GPTConfig) -> dict[str, Any]:
    """How one tokenizer encodes ``text``: tokens per character, characters a block covers,
    and what its vocabulary costs in embedding parameters (shared with the head: tied)."""
    tokens = len(tokenizer.encode(text))
    config = model_config.replace(vocab_size=tokenizer.vocab_size, block_size=block_size)
    embedding = tokenizer.vocab_size * config.n_embd
    return {
        "tokenizer": name, "vocab_size": tokenizer.vocab_size, "tokens": tokens,
        "tokens_per_char": _round(tokens / len(text)), "chars_per_block": _round(block_size * len(text) / tokens),
        "embedding_params": embedding, "total_params": total_parameters(config),
        "embedding_share": _round(embedding / total_parameters(config)), "error": None,
    }  # fmt: skip


def val_bytes(tokenizer: Tokenizer, data: corpora.TokenData) -> int:
    """Bytes of text the validation split's tokens stand for (counted token by token, so a split
    that starts inside a multi-byte character is still counted exactly)."""
    return sum(len(tokenizer.token_bytes(i)) for i in data.val.tolist())


def _train_for_time(params: TokenizationParams, name: str, tokenizer: Tokenizer, text: str, reporter: Reporter) -> tuple[dict[str, Any], GPT | None]:
    """Train a fresh model with this tokenizer for ``train_seconds``; its val loss per byte."""
    data = corpora.prepare(text, tokenizer, cache=False)
    if params.block_size > data.max_block_size:
        return {"train_note": f"not trained: the text is too short for block_size={params.block_size} with {name}"}, None
    model = GPT(preset(params.preset, vocab_size=tokenizer.vocab_size, block_size=params.block_size), seed=params.seed)
    config = TrainConfig(max_steps=None, max_seconds=params.train_seconds, batch_size=params.batch_size,
                         learning_rate=params.learning_rate, warmup_steps=20, eval_interval=10**9,
                         eval_batches=params.eval_batches, log_interval=10, checkpoint_interval=0,
                         max_snapshots=0, seed=params.seed)  # fmt: skip
    run = train_variant(name, model, data, config, reporter)
    nats = run.final_loss  # the trainer's final evaluation: eval_batches validation batches
    if nats is None:
        return {"steps": run.end["step"], "train_note": "diverged (the loss became NaN)"}, model
    bpb = bits_per_byte(nats, len(data.val), val_bytes(tokenizer, data))
    return {"steps": run.end["step"], "val_nats_per_token": _round(nats), "bits_per_byte": _round(bpb),
            "bits_per_char": _round(bpb * len(text.encode("utf-8")) / len(text))}, model  # fmt: skip


def _tokenization_text(params: TokenizationParams) -> tuple[str, str]:
    text = params.text if params.text is not None else corpora.load_corpus(params.corpus)
    label = "your text" if params.text is not None else params.corpus
    return text[:MAX_TOKENIZE_CHARS], label


def run_tokenization(
    params: TokenizationParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> TokenizationResult:
    """Measure every tokenizer on the text, then (optionally) train one model per tokenizer for
    the same time and compare validation loss in bits per byte."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, len(params.tokenizers) * (1 + params.train_seconds))
    text, label = _tokenization_text(params)
    model_config = preset(params.preset)
    rows, kept = [], None
    for name in params.tokenizers:
        reporter.begin(f"{name}: building and measuring", weight=1)
        try:
            tokenizer = build_tokenizer(name, text)
            row = tokenizer_row(name, tokenizer, text, params.block_size, model_config)
        except TokenizerError as exc:
            rows.append({"tokenizer": name, "error": str(exc)})
            continue
        if params.train_seconds > 0:
            reporter.begin(f"{name}: training for {params.train_seconds:g} s", weight=params.train_seconds)
            measured, model = _train_for_time(params, name, tokenizer, text, reporter)
            row.update(measured)
            kept = kept or (model and (model, tokenizer, name))
        rows.append(row)
    result = TokenizationResult(
        params=params.to_dict(), corpus=label, chars=len(text), bytes=len(text.encode("utf-8")),
        block_size=params.block_size, n_embd=model_config.n_embd, rows=rows,
        elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    return _tokenization_artifacts(result, params, text, kept)


def _tokenization_artifacts(result: TokenizationResult, params: TokenizationParams, text: str, kept: Any) -> TokenizationResult:
    """A model to keep with the saved result: the first trained one, else an untrained char model."""
    if not kept:
        tokenizer = CharTokenizer.from_text(text)
        config = preset(params.preset, vocab_size=tokenizer.vocab_size, block_size=params.block_size)
        kept = (GPT(config, seed=params.seed), tokenizer, "char")
    model, tokenizer, name = kept
    config = TrainConfig(max_steps=None, max_seconds=max(params.train_seconds, 0.001), seed=params.seed)
    corpus = params.corpus if params.text is None else "your text"
    return replace(result, artifacts=Artifacts(model, tokenizer, corpus, name, config, [], params.text))


def reading_tokenization(result: TokenizationResult) -> str:
    ok = [r for r in result.rows if r.get("error") is None]
    if not ok:
        return "No tokenizer could encode this text: " + "; ".join(f"{r['tokenizer']}: {r['error']}" for r in result.rows)
    per_char = ", ".join(f"{r['tokenizer']} {r['tokens_per_char']:.2f}" for r in ok)
    covers = ", ".join(f"{r['tokenizer']} {r['chars_per_block']:.0f}" for r in ok)
    emb = ", ".join(f"{r['tokenizer']} {r['embedding_params']:,} ({100 * r['embedding_share']:.0f}%)" for r in ok)
    size = f"its first {result.chars:,} characters" if result.chars >= MAX_TOKENIZE_CHARS else f"{result.chars:,} characters"
    text = (f"On {result.corpus} ({size}), tokens per character: {per_char}. "
            f"A {result.block_size}-token block therefore covers this many characters: {covers}. "
            f"The embedding table costs (share of the model's parameters): {emb}.")  # fmt: skip
    trained = [r for r in ok if r.get("bits_per_byte") is not None]
    if trained:
        seconds = result.params.get("train_seconds", 0)
        bpb = ", ".join(f"{r['tokenizer']} {r['bits_per_byte']:.3f}" for r in trained)
        best = min(trained, key=lambda r: r["bits_per_byte"])
        text += f" After {seconds:g} s of training each, validation bits per byte: {bpb} — lowest: {best['tokenizer']}."
    short = [r for r in ok if r["tokenizer"].startswith("bpe-") and r["vocab_size"] < int(r["tokenizer"][4:])]
    for r in short:
        text += f" {r['tokenizer']} stopped at {r['vocab_size']} tokens: every word of this text was already a single token."
    failed = [r for r in result.rows if r.get("error")]
    if failed:
        text += " Left out: " + "; ".join(f"{r['tokenizer']} ({_first_line(r['error'])})" for r in failed) + "."
    return text


def _first_line(message: str, limit: int = 160) -> str:
    line = message.strip().splitlines()[0].rstrip(".") if message.strip() else "no reason given"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def figures_tokenization(result: TokenizationResult) -> list[go.Figure]:
    ok = [r for r in result.rows if r.get("error") is None]
    names = [r["tokenizer"] for r in ok]
    panels = [("tokens per character", "tokens_per_char"), (f"characters per {result.block_size}-token block", "chars_per_block"),
              ("embedding parameters", "embedding_params"), ("val bits per byte (lower is better)", "bits_per_byte")]  # fmt: skip
    fig = make_subplots(2, 2, subplot_titles=[title for title, _ in panels], vertical_spacing=0.18)
    for i, (title, key) in enumerate(panels):
        values = [r.get(key) for r in ok]
        fig.add_trace(go.Bar(x=names, y=values, name=title, marker_color=PALETTE[i], showlegend=False,
                             hovertemplate="%{x}: %{y:.4g}<extra></extra>"), row=i // 2 + 1, col=i % 2 + 1)  # fmt: skip
    return [_layout(fig, "tokenizers side by side on the same text", height=620)]


# ============================================================================================
# 5. Learning from a single example
# ============================================================================================


@dataclass(frozen=True)
class SingleExampleParams:
    """Take ``steps`` gradient steps on one sentence, on a copy of run ``run_id``'s model."""

    run_id: str = DEMO_RUN
    sentence: str = "The quick brown fox jumps over the lazy dog."
    steps: int = 10
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    sample_prompt: str = ""
    sample_tokens: int = 120
    eval_batches: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not self.run_id:
            raise LabError("pick a trained run to learn on")
        if not isinstance(self.sentence, str) or not self.sentence.strip():
            raise LabError("type a sentence for the model to learn (a few words at least)")
        if len(self.sentence) > 10_000:
            raise LabError(f"the sentence has {len(self.sentence):,} characters; one example means one sentence (≤ 10,000)")
        _whole("steps", self.steps, 1, 500)
        _number("learning_rate", self.learning_rate, 1e-7, 1.0, "; try 1e-3")
        if self.optimizer not in ("adam", "sgd"):
            raise LabError(f"optimizer={self.optimizer!r}; choose 'adam' or 'sgd'")
        if not isinstance(self.sample_prompt, str):
            raise LabError("sample_prompt must be text (may be empty)")
        _whole("sample_tokens", self.sample_tokens, 1, 1000)
        _whole("eval_batches", self.eval_batches, 1, 200)
        _whole("seed", self.seed, 0, 2**31 - 1)

    def budget(self) -> Budget:
        config = source_config(self.run_id)
        step = step_seconds(config, 1, config.block_size)
        evals = 2 * self.eval_batches * step_seconds(config, 12, config.block_size) / 3  # forward only: 1/3
        seconds = self.steps * step + evals + 2 * self.sample_tokens * SAMPLE_TOKEN_S
        text = (f"{self.steps} gradient steps on one sentence, 2 × {self.eval_batches} validation batches and "
                f"2 samples of {self.sample_tokens} tokens, on a copy of {self.run_id}")  # fmt: skip
        return Budget(seconds, f"{text}: {_about(seconds)}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class SingleExampleResult:
    params: dict[str, Any]
    source_run: str
    token_labels: list[str]  # the sentence's tokens (the first has no probability: nothing before it)
    probs_before: list[float]  # p(token i | tokens before it), for tokens 1..n−1
    probs_after: list[float]
    example_losses: list[float]  # loss on the sentence before each step, then after the last
    val_before: float | None
    val_after: float | None
    val_note: str  # why there is no validation loss, when there is none
    samples_before: str
    samples_after: str
    elapsed: float
    experiment: str = "single-example"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


SAMPLE_TOKEN_S = 0.003  # one generated token of a small model with the KV cache, with margin


def source_config(run_id: str) -> GPTConfig:
    """The model shape of run ``run_id`` (for budgets); the small preset when it cannot be read."""
    try:
        return open_run(run_id).model_config()
    except (ValueError, OSError, KeyError):  # RunError/CheckpointError are ValueErrors
        return preset("small")


def load_source(run_id: str) -> tuple[Run, GPT, Tokenizer]:
    """A fresh copy of a run's best weights (read from disk, never a shared cached model)."""
    run = open_run(run_id)
    loaded = run.load_model("best")
    if loaded.tokenizer is None:
        raise LabError(f"run {run_id} has no tokenizer.json, so text cannot be encoded for it")
    return run, loaded.model.eval(), tokenizer_from_dict(loaded.tokenizer)


@torch.no_grad()
def token_probabilities(model: GPT, ids: Sequence[int]) -> list[float]:
    """p(token i | tokens before it) for i = 1..n−1 (teacher-forced, one forward pass)."""
    idx = torch.tensor([list(ids)])
    probs = F.softmax(model.eval()(idx[:, :-1])[0][0], dim=-1)  # (n−1, V)
    return [_round(p) for p in probs.gather(-1, idx[0, 1:, None])[:, 0].tolist()]


def _val_data(run: Run, tokenizer: Tokenizer) -> tuple[corpora.TokenData | None, str]:
    try:
        return corpora.prepare(run.corpus_text(), tokenizer), ""
    except (ValueError, OSError) as exc:  # CorpusError/TokenizerError are ValueErrors
        return None, f"no validation loss: the corpus of run {run.id} is not available ({exc})"


def _val_loss(model: GPT, data: corpora.TokenData | None, params: SingleExampleParams) -> float | None:
    if data is None:
        return None
    block = min(model.config.block_size, data.max_block_size)
    return _round(estimate_loss(model, data, 12, block, params.eval_batches, params.seed, splits=("val",))["val"])


def _example_ids(params: SingleExampleParams, tokenizer: Tokenizer, block_size: int) -> list[int]:
    try:
        ids = tokenizer.encode(params.sentence)
    except TokenizerError as exc:
        raise LabError(f"this model's tokenizer cannot encode the sentence: {exc}") from None
    if len(ids) < 2:
        raise LabError("the sentence is one token long; it needs two at least (one to read, one to predict)")
    return ids[-(block_size + 1) :]  # what learn_from_example uses, too


def run_single_example(
    params: SingleExampleParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> SingleExampleResult:
    """Probabilities, samples and val loss before and after learning one sentence. The source
    run is only read: the learning happens on a copy, which ``save_result`` keeps as a new run."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, 6)
    reporter.begin("loading the model", weight=1)
    run, model, tokenizer = load_source(params.run_id)
    ids = _example_ids(params, tokenizer, model.config.block_size)
    reporter.begin("measuring before", weight=2)
    data, note = _val_data(run, tokenizer)
    before = (token_probabilities(model, ids), _val_loss(model, data, params), _sample(model, tokenizer, params))
    reporter.begin(f"{params.steps} steps on the sentence", weight=1)
    learned = learn_from_example(model, ids, params.steps, params.learning_rate, optimizer=params.optimizer)
    reporter.begin("measuring after", weight=2)
    after = (token_probabilities(model, ids), _val_loss(model, data, params), _sample(model, tokenizer, params))
    result = SingleExampleResult(
        params=params.to_dict(), source_run=run.id, token_labels=[tokenizer.token_label(i) for i in ids],
        probs_before=before[0], probs_after=after[0], example_losses=[_round(x) for x in learned["losses"]],
        val_before=before[1], val_after=after[1], val_note=note, samples_before=before[2], samples_after=after[2],
        elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    config = TrainConfig(max_steps=params.steps, learning_rate=params.learning_rate, warmup_steps=0, seed=params.seed)
    info = run.info()
    artifacts = Artifacts(model, tokenizer, str(info.get("corpus", "?")), str(info.get("tokenizer", "?")), config, [], None, run.id)
    return replace(result, artifacts=artifacts)


def _sample(model: GPT, tokenizer: Tokenizer, params: SingleExampleParams) -> str:
    try:
        return generate_text(model, tokenizer, params.sample_prompt, params.sample_tokens, seed=params.seed)
    except TokenizerError as exc:
        raise LabError(f"the sample prompt cannot be encoded by this model's tokenizer: {exc}") from None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def reading_single_example(result: SingleExampleResult) -> str:
    p = result.params
    before, after = _mean(result.probs_before), _mean(result.probs_after)
    text = (f"{p['steps']} {p['optimizer'].upper() if p['optimizer'] == 'sgd' else 'Adam'} steps at learning rate "
            f"{p['learning_rate']:g} on this one sentence ({len(result.token_labels)} tokens) raised its mean token "
            f"probability from {before:.3f} to {after:.3f} (loss {result.example_losses[0]:.3f} → "
            f"{result.example_losses[-1]:.3f} nats per token).")  # fmt: skip
    if result.val_before is not None and result.val_after is not None:
        change = result.val_after - result.val_before
        verdict = "that is what it forgot" if change > 0 else "it forgot nothing measurable"
        text += (f" The validation loss went from {result.val_before:.3f} to {result.val_after:.3f} "
                 f"({change:+.3f}): {verdict}.")  # fmt: skip
    else:
        text += f" ({result.val_note})"
    return text + f" The source run {result.source_run} is unchanged."


def figures_single_example(result: SingleExampleResult) -> list[go.Figure]:
    labels = result.token_labels[1:]
    x = list(range(1, len(labels) + 1))
    probs = go.Figure()
    for i, (name, values) in enumerate((("before", result.probs_before), ("after", result.probs_after))):
        probs.add_trace(go.Bar(x=x, y=values, name=name, marker_color=PALETTE[i], customdata=labels,
                               hovertemplate="%{customdata}: p=%{y:.3f}<extra>" + name + "</extra>"))  # fmt: skip
    probs.update_xaxes(tickmode="array", tickvals=x, ticktext=labels)
    probs.update_yaxes(title="p(token | the tokens before it)", range=[0, 1.02])
    steps = go.Figure(go.Scatter(x=list(range(len(result.example_losses))), y=result.example_losses,
                                 mode="lines+markers", name="loss on the sentence", line=dict(color=PALETTE[0])))  # fmt: skip
    if result.val_before is not None and result.val_after is not None:
        steps.add_trace(go.Scatter(x=[0, len(result.example_losses) - 1], y=[result.val_before, result.val_after],
                                   mode="lines+markers", name="validation loss (before / after)", line=dict(color=PALETTE[1], dash="dash")))  # fmt: skip
    steps.update_xaxes(title="gradient steps taken", dtick=1)
    steps.update_yaxes(title="loss (nats per token)")
    return [_layout(probs, "the sentence, token by token: probability before and after"),
            _layout(steps, "what one example teaches (its loss) and costs (validation loss)")]  # fmt: skip


# ============================================================================================
# 6. Attention replaces recurrence
# ============================================================================================


@dataclass(frozen=True)
class AttentionRangeParams:
    """How far back each head of run ``run_id`` looks, over ``windows`` validation windows, and
    its loss by position over ``loss_windows`` (one batched forward pass, so many are cheap)."""

    run_id: str = DEMO_RUN
    windows: int = 16
    far: int = 8  # "far" = at least this many tokens back
    loss_windows: int = 256  # a per-position mean over fewer windows is too noisy to read
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not self.run_id:
            raise LabError("pick a trained run to look inside")
        _whole("windows", self.windows, 1, 256)
        _whole("far", self.far, 1, 4096)
        _whole("loss_windows", self.loss_windows, 1, 4096)
        _whole("seed", self.seed, 0, 2**31 - 1)

    def budget(self) -> Budget:
        config = source_config(self.run_id)
        step = step_seconds(config, 1, config.block_size)
        seconds = 1.0 + self.windows * step + self.loss_windows * step / 3  # explicit attention ≈ a step
        text = (f"{self.windows} forward passes of {self.run_id} with attention recorded, and {self.loss_windows} "
                f"windows for the loss by position")  # fmt: skip
        return Budget(seconds, f"{text}: {_about(seconds)}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class AttentionRangeResult:
    params: dict[str, Any]
    source_run: str
    block_size: int
    n_layer: int
    n_embd: int
    distance: list[list[float]]  # (n_layer, n_head) mean tokens back
    weight_by_distance: list[list[float]]  # (n_layer, block_size): share of attention at distance d
    far_share: float  # share of all attention weight at ≥ far tokens back
    loss_by_position: list[float]  # mean loss at position t (it has t tokens before it)
    elapsed: float
    experiment: str = "attention-range"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def weight_by_distance(maps: torch.Tensor) -> torch.Tensor:
    """From attention maps (n_layer, n_head, T, T): for each layer, the share of attention weight
    at distance d = 0..T−1 (averaged over heads and query positions; each row sums to 1)."""
    T = maps.shape[-1]
    shares = torch.stack([torch.diagonal(maps, offset=-d, dim1=-2, dim2=-1).sum(-1) for d in range(T)], dim=-1)
    return shares.mean(1) / T  # (n_layer, T)


@torch.no_grad()
def loss_by_position(model: GPT, windows: torch.Tensor, chunk: int = 64) -> list[float]:
    """Mean cross-entropy at each position of ``windows`` (B, block_size + 1): position t predicts
    its next token from t + 1 tokens of context, so a falling curve means the context is used.
    (Read ``chunk`` windows at a time: a GPT-2-sized vocabulary makes big logits.)"""
    total = None
    for part in windows.split(chunk):
        logits, _ = model.eval()(part[:, :-1])
        losses = F.cross_entropy(logits.transpose(1, 2), part[:, 1:], reduction="none").sum(0)  # (T,)
        total = losses if total is None else total + losses
    return [_round(v) for v in (total / len(windows)).tolist()]


def tail_mean(values: Sequence[float], share: float = 0.25) -> tuple[float, int]:
    """Mean of the last ``share`` of ``values`` (at least one), and how many that was."""
    n = max(1, int(len(values) * share))
    return sum(values[-n:]) / n, n


def run_attention_range(
    params: AttentionRangeParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> AttentionRangeResult:
    """Mean attention distance per head, attention weight by distance, and loss by position."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, params.windows + 2)
    reporter.begin("loading the model and its corpus", weight=1)
    run, model, tokenizer = load_source(params.run_id)
    try:
        data = corpora.prepare(run.corpus_text(), tokenizer)
    except (ValueError, OSError) as exc:
        raise LabError(f"the corpus of run {run.id} is not available here: {exc}") from None
    block = min(model.config.block_size, data.max_block_size)
    windows = val_windows(data, block, params.windows, params.seed)
    reporter.begin("recording attention", weight=params.windows)
    total = None
    for i, row in enumerate(windows):
        maps = attention_maps(model, row[:-1])
        total = maps if total is None else total + maps
        reporter.at((i + 1) / len(windows))
    mean_maps = total / len(windows)
    by_distance = weight_by_distance(mean_maps)
    result = AttentionRangeResult(
        params=params.to_dict(), source_run=run.id, block_size=block, n_layer=model.config.n_layer,
        n_embd=model.config.n_embd, distance=_plain(attention_distance(mean_maps)),
        weight_by_distance=_plain(by_distance), far_share=_round(float(by_distance[:, params.far :].sum(-1).mean())),
        loss_by_position=loss_by_position(model, val_windows(data, block, params.loss_windows, params.seed + 1)),
        elapsed=_round(time.perf_counter() - started),
    )  # fmt: skip
    info = run.info()
    artifacts = Artifacts(model, tokenizer, str(info.get("corpus", "?")), str(info.get("tokenizer", "?")),
                          TrainConfig(max_steps=1, seed=params.seed), [], None, run.id)  # fmt: skip
    return replace(result, artifacts=artifacts)


def kv_numbers(n_layer: int, n_embd: int, position: int) -> int:
    """Numbers a transformer can read at ``position``: a key and a value of n_embd numbers for
    every earlier position (and itself) in every layer. An RNN carries n_embd, whatever the position."""
    return 2 * n_layer * n_embd * (position + 1)


def reading_attention_range(result: AttentionRangeResult) -> str:
    flat = [(d, layer, head) for layer, row in enumerate(result.distance) for head, d in enumerate(row)]
    low, high = min(flat), max(flat)
    last = result.block_size - 1
    text = (f"Across {result.n_layer} layers × {len(result.distance[0])} heads, heads look back between {low[0]:.2f} "
            f"and {high[0]:.2f} tokens on average; the farthest-looking is layer {high[1]} head {high[2]}. "
            f"{100 * result.far_share:.1f}% of all attention weight lands {result.params['far']} or more tokens back. "
            f"At position {last} the model can read {kv_numbers(result.n_layer, result.n_embd, last):,} cached key/value "
            f"numbers; an RNN as wide carries {result.n_embd} numbers for everything before it.")  # fmt: skip
    losses = result.loss_by_position
    tail, n = tail_mean(losses)
    used = "the context is used" if tail < losses[0] else "this model gains nothing from a longer context"
    return text + (f" The loss is {losses[0]:.2f} nats at position 0 (one token of context) and {tail:.2f} on "
                   f"average over the last {n} positions: {used}.")  # fmt: skip


def figures_attention_range(result: AttentionRangeResult) -> list[go.Figure]:
    distance = attention_distance_figure(torch.tensor(result.distance))
    by_distance = go.Figure()
    for layer, shares in enumerate(result.weight_by_distance):
        by_distance.add_trace(go.Scatter(x=list(range(len(shares))), y=shares, name=f"layer {layer}", mode="lines",
                                         line=dict(color=PALETTE[layer % len(PALETTE)])))  # fmt: skip
    by_distance.update_xaxes(title="tokens back (0 = itself)")
    by_distance.update_yaxes(title="share of attention weight (log)", type="log")
    positions = list(range(result.block_size))
    memory = go.Figure()
    memory.add_trace(go.Scatter(x=positions, y=[kv_numbers(result.n_layer, result.n_embd, t) for t in positions],
                                name="attention: keys + values of every earlier token", line=dict(color=PALETTE[0])))  # fmt: skip
    memory.add_trace(go.Scatter(x=positions, y=[result.n_embd] * len(positions), name="RNN: one fixed-size state",
                                line=dict(color=PALETTE[1], dash="dash")))  # fmt: skip
    memory.update_xaxes(title="position")
    memory.update_yaxes(title="numbers it can read (log)", type="log")
    loss = go.Figure(go.Scatter(x=positions, y=result.loss_by_position, mode="lines+markers", line=dict(color=PALETTE[2])))
    loss.update_xaxes(title="position (tokens of context = position + 1)")
    loss.update_yaxes(title="val loss (nats per token)")
    return [distance, _layout(by_distance, "where attention goes, by distance"),
            _layout(memory, "what each can read at position t"), _layout(loss, "loss by position: is the context used?")]  # fmt: skip


# ============================================================================================
# The catalogue, running, saving and reopening
# ============================================================================================


def _layout(fig: go.Figure, title: str, height: int | None = None) -> go.Figure:
    fig.update_layout(title=title, paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      margin=dict(l=10, r=10, t=60, b=10), height=height)  # fmt: skip
    return fig


@dataclass(frozen=True)
class Artifacts:
    """What a fresh result carries besides its numbers (not saved in lab.json): the model to keep
    as the run's weights, its tokenizer, and how it was trained."""

    model: GPT
    tokenizer: Tokenizer
    corpus: str
    tokenizer_spec: str
    train_config: TrainConfig
    events: list[Event]
    corpus_text: str | None = None
    init_from: str | None = None


def _with_artifacts(result: Any, run: VariantRun, corpus: CharCorpus, config: TrainConfig) -> Any:
    return replace(result, artifacts=Artifacts(run.model, corpus.tokenizer, corpus.name, "char", config, run.events))


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment of the lab: its claim, its parameters and the functions that run it."""

    name: str
    title: str
    claim: str
    params_type: type
    result_type: type
    run: Callable[..., Any]
    reading: Callable[[Any], str]
    figures: Callable[[Any], list[go.Figure]]
    tiny: dict[str, Any]  # parameter changes that make it finish in a few seconds
    keeps_model: bool = False  # its saved run's weights are a model worth using (not a by-product)


EXPERIMENTS: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        ExperimentSpec("norm-position", "Pre-LN vs post-LN",
                       "Putting LayerNorm before each sub-layer (pre-LN, GPT-2) instead of after it (post-LN, the original Transformer) makes training more stable.",
                       NormPositionParams, NormPositionResult, run_norm_position, reading_norm_position, figures_norm_position,
                       dict(preset="nano", corpus="copy", steps=20, batch_size=4, eval_batches=2, sweep_lrs=(1e-2, 1.0), sweep_steps=10)),
        ExperimentSpec("residual-scaling", "Residual init scaling",
                       "GPT-2 initialises the residual projections with std 0.02/sqrt(2·n_layer) so the residual stream does not grow with depth.",
                       ResidualScalingParams, ResidualScalingResult, run_residual_scaling, reading_residual_scaling, figures_residual_scaling,
                       dict(preset="nano", corpus="copy", steps=10, batch_size=4, eval_batches=2, depths=(1, 4), stats_windows=2)),
        ExperimentSpec("positions", "Positional encodings",
                       "Without position information attention cannot tell order; learned positions (GPT-2) and sinusoidal ones (the original Transformer) both fix that.",
                       PositionParams, PositionResult, run_positions, reading_positions, figures_positions,
                       dict(preset="nano", steps=20, batch_size=4, eval_batches=2, scored_lines=40)),
        ExperimentSpec("tokenization", "Tokenization trade-offs",
                       "Bigger vocabularies (BPE) make sequences shorter and contexts longer, at the price of a bigger embedding table; byte-level models trade vocabulary for sequence length.",
                       TokenizationParams, TokenizationResult, run_tokenization, reading_tokenization, figures_tokenization,
                       dict(tokenizers=("char", "byte", "bpe-300"), train_seconds=0.5, block_size=16, batch_size=4, eval_batches=2)),
        ExperimentSpec("single-example", "Learning from a single example",
                       "A model can learn from a single data point rather than a batch — and what it learns from one example costs something elsewhere.",
                       SingleExampleParams, SingleExampleResult, run_single_example, reading_single_example, figures_single_example,
                       dict(steps=3, sample_tokens=20, eval_batches=2), keeps_model=True),
        ExperimentSpec("attention-range", "Attention replaces recurrence",
                       "An RNN squeezes everything before a token into one fixed-size state; attention reads every earlier token directly, as far back as it needs.",
                       AttentionRangeParams, AttentionRangeResult, run_attention_range, reading_attention_range, figures_attention_range,
                       dict(windows=2, loss_windows=8)),
    )
}  # fmt: skip


def experiment_of(result: Any) -> ExperimentSpec:
    name = getattr(result, "experiment", None)
    if name not in EXPERIMENTS:
        raise LabError(f"not a lab result: {type(result).__name__}")
    return EXPERIMENTS[name]


def reading(result: Any) -> str:
    """The result in words, computed from its numbers (never canned text)."""
    return experiment_of(result).reading(result)


def figures(result: Any) -> list[go.Figure]:
    """The result's charts (plotly figures), in the order the page shows them."""
    return experiment_of(result).figures(result)


def tiny_params(name: str, **changes: Any) -> Any:
    """Parameters for experiment ``name`` that finish in seconds (for tests and a quick look)."""
    spec = EXPERIMENTS[name]
    return spec.params_type(**{**spec.tiny, **changes})


def run_experiment(name: str, params: Any, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
    if name not in EXPERIMENTS:
        raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
    spec = EXPERIMENTS[name]
    if not isinstance(params, spec.params_type):
        raise LabError(f"{name} takes {spec.params_type.__name__}, got {type(params).__name__}")
    return spec.run(params, progress, stop)


# ---- saving as runs ------------------------------------------------------------------------


def result_to_dict(result: Any) -> dict[str, Any]:
    """The saved part of a result (everything but ``artifacts``), JSON-friendly."""
    return {f.name: _plain(getattr(result, f.name)) for f in fields(result) if f.name != "artifacts"}


def save_result(result: Any) -> str:
    """Keep a fresh result as a new run tagged ``lab:<experiment>``: the run's weights are the
    experiment's model (e.g. the changed copy for single-example learning), ``lab.json`` holds
    the numbers and the reading. Returns the run id."""
    artifacts: Artifacts | None = getattr(result, "artifacts", None)
    if artifacts is None:
        raise LabError("this result has no model attached (a reopened result is already saved)")
    spec = experiment_of(result)
    run = create_run(
        name=f"lab {spec.name} {time.strftime('%Y%m%d-%H%M%S')}", corpus=artifacts.corpus,
        tokenizer_spec=artifacts.tokenizer_spec, tokenizer=artifacts.tokenizer, model=artifacts.model,
        train_config=artifacts.train_config, tags=(TAG_PREFIX + spec.name,) + (() if spec.keeps_model else (RESULT_ONLY_TAG,)),
        corpus_text=artifacts.corpus_text,
        init_from=artifacts.init_from,
    )  # fmt: skip
    text = reading(result)
    write_json_atomic(run.path / LAB_FILE, {"format_version": FORMAT_VERSION, "experiment": spec.name,
                                            "result": result_to_dict(result), "reading": text})  # fmt: skip
    for event in artifacts.events:
        if event.get("type") in ("step", "eval", "start"):
            run.on_event(event)
    run.update_info(status="finished", message=text[:300], step=int(artifacts.events[-1].get("step", 0)) if artifacts.events else 0,
                    best_val_loss=_primary_loss(artifacts.events))  # fmt: skip
    return run.id


def _primary_loss(events: list[Event]) -> float | None:
    losses = [e["val_loss"] for e in events if e.get("type") == "eval" and isinstance(e.get("val_loss"), float)]
    return min(losses) if losses else None


def is_lab_run(info: RunInfo, experiment: str | None = None) -> bool:
    tags = [t for t in info.tags if t.startswith(TAG_PREFIX)]
    return bool(tags) and (experiment is None or TAG_PREFIX + experiment in tags)


def lab_runs(experiment: str | None = None) -> list[RunInfo]:
    """Saved lab results (newest first), of one experiment or all."""
    return [info for info in list_runs(include_demo=False) if is_lab_run(info, experiment) and (Path(info.path) / LAB_FILE).exists()]


def load_result(run_id: str) -> Any:
    """Reopen a saved result. Raises ``LabError`` (or ``RunError``) for anything unusable: a
    missing or damaged lab.json, an unknown experiment, numbers that do not draw."""
    run = open_run(run_id)
    try:
        saved = read_json(run.path / LAB_FILE)
    except CheckpointError as exc:
        raise LabError(f"run {run_id} has no readable lab results: {exc}") from None
    if not isinstance(saved, dict) or saved.get("experiment") not in EXPERIMENTS or not isinstance(saved.get("result"), dict):
        raise LabError(f"{run.path / LAB_FILE} is not a lab result (no known experiment in it)")
    spec = EXPERIMENTS[saved["experiment"]]
    data = saved["result"]
    expected = {f.name for f in fields(spec.result_type)} - {"artifacts"}
    if set(data) != expected:
        raise LabError(f"{run.path / LAB_FILE}: its fields {sorted(data)} do not match a {spec.name} result")
    try:
        result = spec.result_type(**data)
        if result.experiment != spec.name:
            raise ValueError(f"experiment {result.experiment!r} inside a {spec.name} file")
        spec.reading(result), spec.figures(result)  # numbers that cannot be read or drawn are refused here
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
        raise LabError(f"{run.path / LAB_FILE} holds numbers that do not fit a {spec.name} result ({type(exc).__name__}: {exc})") from None
    return result


# ---- background jobs -----------------------------------------------------------------------


class LabJob(BackgroundJob):
    """One experiment on a daemon thread, a ``toygpt.jobs.BackgroundJob`` like ``TrainJob``, so
    the same ``JobRegistry`` runs it under the same one-job-at-a-time cap. The thread never
    touches Streamlit; on success the result is saved as a run (``snapshot()["run_id"]``)."""

    kind = "lab"

    def __init__(self, name: str, params: Any, num_threads: int | None = None, save: bool = True) -> None:
        if name not in EXPERIMENTS:
            raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
        super().__init__(num_threads)
        self.name, self.params, self.save = name, params, save
        self.spec = None  # TrainJob has a TrainSpec here; a lab job has none
        self._fraction, self._stage, self._started = 0.0, "", time.perf_counter()
        self._metrics: list[dict[str, Any]] = []
        self.result: Any = None

    def start(self) -> LabJob:
        self._started = time.perf_counter()
        super().start()
        return self

    def work(self) -> tuple[str, str]:
        try:
            result = run_experiment(self.name, self.params, self._on_progress, self._stop)
        except ExperimentStopped as exc:
            return "stopped", str(exc)
        run_id = save_result(result) if self.save else None
        with self._lock:
            self.result, self._run_id, self._fraction = result, run_id, 1.0
        return "finished", reading(result)

    def _on_progress(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["type"] == "progress":
                self._fraction, self._stage = float(event["fraction"]), str(event["message"])
            elif event["type"] == "metric":
                self._metrics.append(dict(event))

    def snapshot(self) -> dict[str, Any]:
        """What a page draws, as plain values; the keys of ``TrainJob.snapshot`` plus
        ``kind="lab"``, ``experiment``, ``stage`` and per-variant ``metrics``."""
        with self._lock:
            elapsed = time.perf_counter() - self._started
            fraction = self._fraction
            eta = elapsed * (1 - fraction) / fraction if 0.02 < fraction < 1 else None
            return {
                "kind": "lab", "experiment": self.name, "title": EXPERIMENTS[self.name].title,
                "job_id": self.id, "run_id": self._run_id, "status": self._status, "message": self._message,
                "error_detail": self._detail, "stage": self._stage, "progress": fraction, "eta": eta,
                "elapsed": elapsed, "metrics": [dict(m) for m in self._metrics],
                "done": self._status not in ("queued", "running", "stopping"),
                "step": 0, "max_steps": None, "max_seconds": None, "loss": None, "val_loss": None,
                "best_val_loss": None, "tokens_per_s": None, "last_sample": None, "samples": [], "start": {},
                "logs": None, "corpus": getattr(self.params, "corpus", None), "tokenizer": None,
            }  # fmt: skip


def live_curves(metrics: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A running job's metric events grouped by variant, as rows for ``loss_curves_figure``."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        row = {k: v for k, v in metric.items() if k in ("step", "train_loss", "val_loss")}
        curves.setdefault(str(metric.get("variant", "")), []).append(row)
    return curves
