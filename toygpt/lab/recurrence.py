"""Experiment 8, "attention vs recurrence, trained": a transformer preset and an LSTM of the
same size (``toygpt.recurrent``), trained by the same ``Trainer`` on the same batches for the
same steps; loss against steps and against seconds, training tokens/s, loss by position in the
window, and a sample from each.

The LSTM is lab-only: the result's run keeps the transformer's weights (the pages' model
pickers, the explorer's attention views and checkpoints are all built for ``GPT``), and the
LSTM's numbers are in the result.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt.certainty import compare_runs
from toygpt.formatting import about, human_count
from toygpt.lab.budget import training_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    ExperimentSpec,
    LabError,
    ProgressFn,
    TrainingSetup,
    check_whole,
    fmt,
    rounded,
)
from toygpt.lab.variants import Artifacts, char_corpus, train_variant, val_windows, with_artifacts
from toygpt.model import GPT, total_parameters
from toygpt.recurrent import LSTMLanguageModel, lstm_matching, lstm_parameters
from toygpt.sample import encode_prompt, generate_text
from toygpt.train import Event, loss_by_position
from toygpt.viz import PALETTE, base_layout, loss_curves_figure

TRANSFORMER, LSTM = "transformer", "LSTM"
SIZE_TOLERANCE = 0.10  # the LSTM's parameter count is within 10% of the transformer's


@dataclass(frozen=True)
class RecurrenceParams(TrainingSetup):
    """The transformer of ``preset`` and an LSTM with ``lstm_layers`` layers sized to match it."""

    preset: str = "small"
    steps: int = 400
    lstm_layers: int = 2
    loss_windows: int = 128
    sample_prompt: str = "the "
    sample_tokens: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_whole("lstm_layers", self.lstm_layers, 1, 8)
        check_whole("loss_windows", self.loss_windows, 1, 4096)
        check_whole("sample_tokens", self.sample_tokens, 0, 2000)
        if not isinstance(self.sample_prompt, str) or len(self.sample_prompt) > 200:
            raise LabError("sample_prompt must be text of at most 200 characters")

    timing = ', from training steps of both models timed here just now'  # where the cost's seconds come from

    def cost(self) -> tuple[float, str]:
        model = self.model_config()
        lstm = lstm_matching(model, self.lstm_layers)
        seconds = sum(training_seconds(config, self.batch_size, model.block_size, self.steps) for config in (model, lstm)) + 1.0
        text = (f"2 trainings × {self.steps} steps: the {self.preset} transformer (≈ {human_count(total_parameters(model))} "
                f"parameters) and a {lstm.n_layer}-layer LSTM {lstm.n_hidden} wide (≈ {human_count(lstm_parameters(lstm))})")  # fmt: skip
        return seconds, text


@dataclass(frozen=True)
class RecurrenceResult:
    params: dict[str, Any]
    steps: int
    corpus: str
    block_size: int
    parameters: dict[str, int]  # model → unique parameters
    lstm_shape: dict[str, int]  # {"n_layer", "n_hidden"}
    transformer_shape: dict[str, int]  # {"n_layer", "n_head", "n_embd"}
    curves: dict[str, list[dict[str, Any]]]  # model → rows by step
    clock: dict[str, list[dict[str, float]]]  # model → [{"elapsed", "val_loss"}] at each evaluation
    final_val: dict[str, float | None]
    tokens_per_s: dict[str, float]  # model → median training tokens/s (the trainer's step timing)
    loss_by_position: dict[str, list[float]]
    samples: dict[str, str]
    budget_seconds: float
    elapsed: float
    experiment: str = "recurrence"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def clock_rows(events: list[Event]) -> list[dict[str, float]]:
    """Each evaluation's (seconds since the training started, val loss): the clock includes the
    evaluations themselves, which both models pay."""
    return [{"elapsed": rounded(e["elapsed"]), "val_loss": rounded(e["val_loss"])}
            for e in events if e.get("type") == "eval" and isinstance(e.get("val_loss"), float)]  # fmt: skip


def tokens_per_second(events: list[Event]) -> float:
    """The median of the trainer's tokens/s over the logged steps (each a median of recent steps)."""
    rates = [float(e["tokens_per_s"]) for e in events if e.get("type") == "step"]
    return rounded(statistics.median(rates)) if rates else 0.0


def run(params: RecurrenceParams, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> RecurrenceResult:
    """Train the transformer and the matching LSTM; compare curves, speed, context use, samples."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, 2 * params.steps + 2)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    gpt_config = params.model_config(corpus.tokenizer.vocab_size)
    models = {TRANSFORMER: GPT(gpt_config, seed=params.seed),
              LSTM: LSTMLanguageModel(lstm_matching(gpt_config, params.lstm_layers), seed=params.seed)}  # fmt: skip
    config, runs = params.train_config(), {}
    for label, model in models.items():
        reporter.begin(f"training the {label}", weight=params.steps)
        runs[label] = train_variant(label, model, corpus.data, config, reporter)
    reporter.begin("loss by position and samples", weight=1)
    windows = val_windows(corpus.data, gpt_config.block_size, params.loss_windows, params.seed + 1)
    prompt = encode_prompt(corpus.tokenizer, params.sample_prompt)
    lstm = models[LSTM]
    samples = {
        TRANSFORMER: generate_text(models[TRANSFORMER], corpus.tokenizer, params.sample_prompt, params.sample_tokens, seed=params.seed).text,
        LSTM: corpus.tokenizer.decode(lstm.generate(torch.tensor([prompt]), params.sample_tokens, seed=params.seed)[0, len(prompt):].tolist()),
    }  # fmt: skip
    result = RecurrenceResult(
        params=params.to_dict(), steps=params.steps, corpus=params.corpus, block_size=gpt_config.block_size,
        parameters={k: m.num_parameters() for k, m in models.items()},
        lstm_shape={"n_layer": lstm.config.n_layer, "n_hidden": lstm.config.n_hidden},
        transformer_shape={"n_layer": gpt_config.n_layer, "n_head": gpt_config.n_head, "n_embd": gpt_config.n_embd},
        curves={k: r.rows for k, r in runs.items()}, clock={k: clock_rows(r.events) for k, r in runs.items()},
        final_val={k: r.final_loss and rounded(r.final_loss) for k, r in runs.items()},
        tokens_per_s={k: tokens_per_second(r.events) for k, r in runs.items()},
        loss_by_position={k: [rounded(v) for v in loss_by_position(m, windows).tolist()] for k, m in models.items()},
        samples=samples, budget_seconds=rounded(params.budget().seconds), elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return with_artifacts(result, runs[TRANSFORMER], corpus, config)


def time_to_reach(rows: list[dict[str, float]], target: float) -> float | None:
    """Seconds until the first evaluation at or below ``target`` (None: never reached)."""
    return next((r["elapsed"] for r in rows if r["val_loss"] <= target), None)


def quarter_means(values: list[float]) -> tuple[float, float]:
    """Mean loss over the second quarter of the window and over its last quarter."""
    n = max(1, len(values) // 4)
    return sum(values[n : 2 * n]) / n, sum(values[-n:]) / n


def reading(result: RecurrenceResult) -> str:
    t, lstm = result.parameters[TRANSFORMER], result.parameters[LSTM]
    shape = result.lstm_shape
    text = (f"The transformer ({t:,} parameters) and an LSTM of {shape['n_layer']} layers × {shape['n_hidden']} "
            f"({lstm:,} parameters, {100 * (lstm - t) / t:+.1f}%) each trained {result.steps} steps on {result.corpus} "
            f"with the same batches.")  # fmt: skip
    a, b = result.final_val[TRANSFORMER], result.final_val[LSTM]
    if a is not None and b is not None:
        gap = round(b, 2) - round(a, 2)
        lower = TRANSFORMER if gap > 0 else LSTM if gap < 0 else "neither"
        text += (f" Validation loss: transformer {fmt(a)}, LSTM {fmt(b)} ({lower} lower by {abs(gap):.2f})."
                 + compare_runs(result.curves[TRANSFORMER], result.curves[LSTM]).sentence())  # fmt: skip
        target = max(a, b)
        times = {k: time_to_reach(rows, target) for k, rows in result.clock.items()}
        if all(v is not None for v in times.values()):
            text += (f" Both reached {target:.2f} (the worse final loss): the transformer after {times[TRANSFORMER]:.1f} s, "
                     f"the LSTM after {times[LSTM]:.1f} s.")  # fmt: skip
    speed_t, speed_l = result.tokens_per_s[TRANSFORMER], result.tokens_per_s[LSTM]
    if speed_t > 0 and speed_l > 0:
        text += (f" Training speed: transformer {speed_t:,.0f} tokens/s, LSTM {speed_l:,.0f} tokens/s "
                 f"({speed_t / speed_l:.2f}× as fast; the transformer computes a window's {result.block_size} positions "
                 f"at once, the LSTM one after another).")  # fmt: skip
    parts = []
    for name, values in result.loss_by_position.items():
        middle, last = quarter_means(values)
        parts.append(f"{name} {values[0]:.2f} at position 0, {middle:.2f} over the second quarter, {last:.2f} over the last")
    text += " Loss by position in the window: " + "; ".join(parts) + "."
    return text + f" It took {result.elapsed:.0f} s (the budget said {about(result.budget_seconds)})."


def figures(result: RecurrenceResult) -> list[go.Figure]:
    steps = loss_curves_figure(result.curves)
    steps.update_layout(title=f"loss against steps on {result.corpus} (same batches)")
    clock = go.Figure()
    for i, (name, rows) in enumerate(result.clock.items()):
        clock.add_trace(go.Scatter(x=[r["elapsed"] for r in rows], y=[r["val_loss"] for r in rows], name=name,
                                   mode="lines+markers", line=dict(color=PALETTE[i])))  # fmt: skip
    clock.update_xaxes(title="seconds since its training started (evaluations included)")
    clock.update_yaxes(title="val loss (nats per token)")
    speed = go.Figure(go.Bar(x=list(result.tokens_per_s), y=list(result.tokens_per_s.values()), marker_color=PALETTE[:2],
                             text=[f"{v:,.0f}" for v in result.tokens_per_s.values()]))  # fmt: skip
    speed.update_yaxes(title="training tokens per second (median)")
    position = go.Figure()
    for i, (name, values) in enumerate(result.loss_by_position.items()):
        position.add_trace(go.Scatter(x=list(range(len(values))), y=values, name=name, mode="lines",
                                      line=dict(color=PALETTE[i])))  # fmt: skip
    position.update_xaxes(title="position in the window (tokens of context = position + 1)")
    position.update_yaxes(title="val loss (nats per token)")
    return [steps, base_layout(clock, "loss against wall-clock time"), base_layout(speed, "training speed"),
            base_layout(position, f"loss by position in the {result.block_size}-token window: does each use far context?")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="recurrence",
    title="Attention vs recurrence, trained",
    claim="Attention replaced recurrent networks (RNNs, LSTMs): every position reads every earlier one at once, so a window trains in parallel, where an LSTM reads one token after another through a fixed-size state.",
    params_type=RecurrenceParams,
    result_type=RecurrenceResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", steps=10, batch_size=4, eval_batches=2, loss_windows=8, sample_tokens=20),
)  # fmt: skip
