"""Experiment 7, "which position encodings extrapolate?": five encodings trained at context T,
then read at 2T and 4T.

RoPE (Su et al. 2021) and ALiBi (Press et al. 2021, "Train Short, Test Long") were proposed
partly so that a model trained on windows of T tokens could read longer ones. Here the same
model is trained five times (same seed, data order and steps; only ``pos_encoding`` differs),
and each is evaluated on validation windows of 4T tokens. A causal model's prediction at
position t depends only on tokens 0..t, so one pass over 4T tokens also gives the loss at
lengths T and 2T (their first T and 2T positions). Learned positions have no vectors past T:
``toygpt.train.loss_by_position`` refuses, and the result keeps its message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt.certainty import CALL_RATIO, standard_error
from toygpt.formatting import about, human_count
from toygpt.lab.budget import step_seconds, training_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    ExperimentSpec,
    LabError,
    ProgressFn,
    TrainingSetup,
    check_whole,
    rounded,
)
from toygpt.lab.variants import Artifacts, char_corpus, train_variant, val_windows, with_artifacts
from toygpt.model import GPT, POS_ENCODINGS, GPTConfig, total_parameters
from toygpt.train import loss_by_position
from toygpt.viz import PALETTE, base_layout, loss_curves_figure

ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "none")
LENGTH_FACTORS = (1, 2, 4)  # evaluate at T, 2T, 4T
KEEP_MARGIN = 0.1  # nats: a loss within this much of its late-window level counts as kept


@dataclass(frozen=True)
class ExtrapolationParams(TrainingSetup):
    """Train at context ``block_size`` (T) with each of ``encodings``, then read ``eval_windows``
    validation windows of 4T tokens with each model."""

    preset: str = "nano"
    steps: int = 800
    block_size: int = 64
    encodings: tuple[str, ...] = ENCODINGS
    eval_windows: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_whole("block_size", self.block_size, 8, 256)
        check_whole("eval_windows", self.eval_windows, 2, 1024)
        if isinstance(self.encodings, list):
            object.__setattr__(self, "encodings", tuple(self.encodings))
        if not isinstance(self.encodings, tuple) or not self.encodings or len(set(self.encodings)) != len(self.encodings):
            raise LabError(f"encodings needs one or more different encodings from {ENCODINGS}")
        for name in self.encodings:
            if name not in POS_ENCODINGS:
                raise LabError(f"encoding {name!r} is not known; choose from {ENCODINGS}")

    def model_config(self, vocab_size: int = 65, **changes: Any) -> GPTConfig:
        return super().model_config(vocab_size, **{"block_size": self.block_size, **changes})

    timing = ', from training steps of these models timed here just now'  # where the cost's seconds come from

    def cost(self) -> tuple[float, str]:
        model, long = self.model_config(), 4 * self.block_size
        seconds = 0.0
        for name in self.encodings:
            config = model.replace(pos_encoding=name)
            # reading: one forward pass (≈ a third of a training step) per window of 4T tokens
            reading = step_seconds(config.replace(block_size=long), 1, long) / 3 * self.eval_windows
            seconds += training_seconds(config, self.batch_size, self.block_size, self.steps) + reading
        text = (f"{len(self.encodings)} trainings ({', '.join(self.encodings)}) × {self.steps} steps of the {self.preset} "
                f"preset (≈ {human_count(total_parameters(model))} parameters) at context T={self.block_size}, then "
                f"{self.eval_windows} windows of {long} tokens read by each")  # fmt: skip
        return seconds, text


@dataclass(frozen=True)
class ExtrapolationResult:
    params: dict[str, Any]
    steps: int
    corpus: str
    block_size: int  # T, the training context
    windows: int  # validation windows read per model
    curves: dict[str, list[dict[str, Any]]]  # encoding → training curve rows
    final_val: dict[str, float | None]  # encoding → val loss at the end of training (windows of T)
    loss_by_position: dict[str, list[float]]  # encoding → mean loss at positions 0..4T−1 (learned: 0..T−1)
    loss_at_length: dict[str, dict[str, float | None]]  # encoding → {"64": mean over positions 0..63, ...}
    inside: dict[str, float]  # encoding → mean loss over positions T/2..T−1 (late in the trained window)
    beyond: dict[str, float | None]  # encoding → mean loss over positions T..4T−1 (None: cannot read there)
    rise_se: dict[str, float | None]  # encoding → standard error of (beyond − inside) over the windows
    refused: dict[str, str]  # encoding → why it cannot be read past T
    budget_seconds: float
    elapsed: float
    experiment: str = "extrapolation"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def window_losses(model: GPT, windows: torch.Tensor) -> torch.Tensor:
    """Loss at every position of every window, (N, L), one window at a time through
    ``toygpt.train.loss_by_position`` (which refuses lengths a model cannot read)."""
    return torch.stack([loss_by_position(model, row[None]) for row in windows])


def split_means(losses: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per window (N,): the mean loss over positions T/2..T−1, and over T..L−1 (None if L ≤ T)."""
    inside = losses[:, T // 2 : T].mean(1)
    return inside, (losses[:, T:].mean(1) if losses.shape[1] > T else None)


def run(
    params: ExtrapolationParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> ExtrapolationResult:
    """Train one model per encoding at context T, then read 4T-token windows with each."""
    started, T = time.perf_counter(), params.block_size
    reporter = Reporter(progress, stop, len(params.encodings) * (params.steps + 1) + 1)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    if corpus.data.val.numel() < 4 * T + 2:
        raise LabError(f"the validation text of {params.corpus} is shorter than 4T = {4 * T} tokens; use a smaller block size")
    config, windows = params.train_config(), val_windows(corpus.data, 4 * T, params.eval_windows, params.seed + 1)
    runs, by_position, at_length, inside, beyond, rise_se, refused = {}, {}, {}, {}, {}, {}, {}
    for name in params.encodings:
        reporter.begin(f"{name}: training at T={T}", weight=params.steps)
        model = GPT(params.model_config(corpus.tokenizer.vocab_size, pos_encoding=name), seed=params.seed)
        runs[name] = train_variant(name, model, corpus.data, config, reporter)
        reporter.begin(f"{name}: reading {4 * T} tokens", weight=1)
        try:
            losses = window_losses(model, windows)
        except ValueError as exc:  # learned positions stop at T: read what it can, keep the reason
            refused[name] = str(exc).split(";")[0]
            losses = window_losses(model, windows[:, : T + 1])
        by_position[name] = [rounded(v) for v in losses.mean(0).tolist()]
        at_length[name] = {str(f * T): rounded(float(losses[:, : f * T].mean())) if losses.shape[1] >= f * T else None
                           for f in LENGTH_FACTORS}  # fmt: skip
        window_inside, window_beyond = split_means(losses, T)
        inside[name] = rounded(float(window_inside.mean()))
        beyond[name] = None if window_beyond is None else rounded(float(window_beyond.mean()))
        rise_se[name] = None if window_beyond is None else rounded(standard_error((window_beyond - window_inside).tolist()))
    result = ExtrapolationResult(
        params=params.to_dict(), steps=params.steps, corpus=params.corpus, block_size=T, windows=params.eval_windows,
        curves={k: r.rows for k, r in runs.items()}, final_val={k: r.final_loss and rounded(r.final_loss) for k, r in runs.items()},
        loss_by_position=by_position, loss_at_length=at_length, inside=inside, beyond=beyond, rise_se=rise_se,
        refused=refused, budget_seconds=rounded(params.budget().seconds), elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    keep = next((k for k in ("rope", "alibi", "sinusoidal", "none", "learned") if k in runs), params.encodings[0])
    return with_artifacts(result, runs[keep], corpus, config)


def verdict(rise: float, se: float | None) -> str:
    """"kept" when the rise beyond T is clearly under ``KEEP_MARGIN``, "lost" when clearly over
    it, else "too close to call" (clearly: by more than ``CALL_RATIO`` standard errors)."""
    margin = CALL_RATIO * (se or 0.0)
    if se is None:
        return "too close to call"
    if rise + margin < KEEP_MARGIN:
        return "kept"
    if rise - margin > KEEP_MARGIN:
        return "lost"
    return "too close to call"


def verdicts(result: ExtrapolationResult) -> dict[str, str]:
    return {k: verdict(b - result.inside[k], result.rise_se[k]) for k, b in result.beyond.items() if b is not None}


def reading(result: ExtrapolationResult) -> str:
    T = result.block_size
    lengths = " / ".join(str(f * T) for f in LENGTH_FACTORS)
    text = f"Trained at T={T} for {result.steps} steps on {result.corpus}; mean val loss when reading {lengths} tokens: "
    text += "; ".join(f"{k} " + " / ".join("n/a" if v is None else f"{v:.2f}" for v in at.values())
                      for k, at in result.loss_at_length.items()) + "."  # fmt: skip
    calls = verdicts(result)
    parts = []
    for name, call in calls.items():
        rise, se = result.beyond[name] - result.inside[name], result.rise_se[name]
        parts.append(f"{name} {result.inside[name]:.2f} → {result.beyond[name]:.2f} ({rise:+.2f} ± {CALL_RATIO * (se or 0):.2f}: {call})")
    if parts:
        text += (f" Loss per position late in the trained window (positions {T // 2}–{T - 1}) → beyond it "
                 f"({T}–{4 * T - 1}), with ±{CALL_RATIO:g} standard errors over {result.windows} windows: "
                 + "; ".join(parts) + f". 'kept' means the rise is clearly under {KEEP_MARGIN} nats, 'lost' clearly over.")  # fmt: skip
    kept = [k for k, c in calls.items() if c == "kept"]
    lost = [k for k, c in calls.items() if c == "lost"]
    unsure = [k for k, c in calls.items() if c == "too close to call"]
    summary = []
    if kept:
        summary.append(f"kept their loss beyond T: {', '.join(kept)}")
    if lost:
        summary.append(f"lost it: {', '.join(lost)}")
    if unsure:
        summary.append(f"too close to call at this budget: {', '.join(unsure)}")
    if summary:
        text += " So, " + "; ".join(summary) + "."
    for name, why in result.refused.items():
        text += f" {name} cannot be read past T at all ({why}), so it has no loss there."
    return text + f" It took {result.elapsed:.0f} s (the budget said {about(result.budget_seconds)})."


def figures(result: ExtrapolationResult) -> list[go.Figure]:
    T = result.block_size
    by_position = go.Figure()
    for i, (name, values) in enumerate(result.loss_by_position.items()):
        by_position.add_trace(go.Scatter(x=list(range(len(values))), y=values, name=name, mode="lines",
                                         line=dict(color=PALETTE[i % len(PALETTE)])))  # fmt: skip
    by_position.add_vline(x=T - 0.5, line_dash="dash", annotation_text=f"trained length T={T}")
    by_position.update_xaxes(title="position in the window (0 = first token)")
    by_position.update_yaxes(title="val loss (nats per token)")
    lengths = go.Figure()
    for i, (name, at) in enumerate(result.loss_at_length.items()):
        xs = [k for k, v in at.items() if v is not None]
        lengths.add_trace(go.Bar(x=[f"{x} tokens" for x in xs], y=[at[x] for x in xs], name=name,
                                 marker_color=PALETTE[i % len(PALETTE)]))  # fmt: skip
    lengths.update_xaxes(title="length read (mean over all its positions)")
    lengths.update_yaxes(title="val loss (nats per token)")
    curves = loss_curves_figure(result.curves)
    curves.update_layout(title=f"training at T={T}: loss curves per encoding")
    return [base_layout(by_position, f"loss by position, read at {4 * T} tokens (trained at {T}; {result.windows} windows)"),
            base_layout(lengths, "val loss at lengths T, 2T, 4T"), curves]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="extrapolation",
    title="Which positions extrapolate?",
    claim="Position encodings defined at every position (sinusoidal, RoPE, ALiBi, or none) let a model read past the length it trained on; RoPE and ALiBi were proposed partly to make that work. Learned positions (GPT-2) stop at the trained length.",
    params_type=ExtrapolationParams,
    result_type=ExtrapolationResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", steps=10, block_size=16, batch_size=4, eval_batches=2, eval_windows=4),
)  # fmt: skip
