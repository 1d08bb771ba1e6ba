"""Experiment 2, "GPT-2 scales residual weights 1/sqrt(2N)": the residual stream's size at
initialisation and the loss after a short training, with and without the scaling, by depth."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt.certainty import single_measurement
from toygpt.inspection import residual_stats
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
    shown_gap,
)
from toygpt.lab.variants import Artifacts, char_corpus, train_variant, val_windows, with_artifacts
from toygpt.model import GPT
from toygpt.viz import PALETTE, base_layout


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
            check_whole("each depth", depth, 1, 24)
        object.__setattr__(self, "depths", tuple(sorted(set(self.depths))))
        check_whole("stats_windows", self.stats_windows, 1, 64)

    def cost(self) -> tuple[float, str]:
        configs = [self.model_config(n_layer=d) for d in self.depths]
        seconds = 2 * sum(training_seconds(c, self.batch_size, c.block_size, self.steps) for c in configs)
        text = (f"{2 * len(self.depths)} trainings (depths {', '.join(map(str, self.depths))}, each with and without "
                f"scaling) × {self.steps} steps at the {self.preset} preset's width")  # fmt: skip
        return seconds, text


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
    return [rounded(v) for v in stds.mean(0).tolist()]


def run(
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
            early_loss[name].append(last.final_loss and rounded(last.final_loss))
    result = ResidualScalingResult(
        params=params.to_dict(), depths=list(params.depths), steps=params.steps, layer_std=layer_std,
        final_std=final_std, early_loss=early_loss, elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return with_artifacts(result, last, corpus, config)


def reading(result: ResidualScalingResult) -> str:
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
                 f"{fmt(ls)} with scaling and {fmt(lu)} without ({better} lower by {shown_gap(lu, ls):.2f}).")  # fmt: skip
        text += single_measurement(result.params.get("eval_batches"))
    else:
        text += f". After {result.steps} steps the {result.depths[deep]}-layer model diverged in at least one variant."
    return text


def figures(result: ResidualScalingResult) -> list[go.Figure]:
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
    return [base_layout(stds, "residual stream size at initialisation (solid: scaled, dashed: unscaled)"),
            base_layout(losses, f"early training: val loss after {result.steps} steps, by depth")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="residual-scaling",
    title="Residual init scaling",
    claim="GPT-2 initialises the residual projections with std 0.02/sqrt(2·n_layer) so the residual stream does not grow with depth.",
    params_type=ResidualScalingParams,
    result_type=ResidualScalingResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", corpus="copy", steps=10, batch_size=4, eval_batches=2, depths=(1, 4), stats_windows=2),
)  # fmt: skip
