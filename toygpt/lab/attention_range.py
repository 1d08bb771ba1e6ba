"""Experiment 6, "attention replaces recurrence": how far back each head of a trained model
looks, and its loss by position (is the long context used?)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt import data as corpora
from toygpt.inspection import attention_distance, attention_maps
from toygpt.lab.budget import step_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    ExperimentParams,
    ExperimentSpec,
    LabError,
    ProgressFn,
    check_whole,
    plain,
    rounded,
)
from toygpt.lab.variants import Artifacts, load_source, source_config, val_windows
from toygpt.runs import DEMO_RUN
from toygpt.train import TrainConfig, loss_by_position
from toygpt.viz import PALETTE, attention_distance_figure, base_layout


@dataclass(frozen=True)
class AttentionRangeParams(ExperimentParams):
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
        check_whole("windows", self.windows, 1, 256)
        check_whole("far", self.far, 1, 4096)
        check_whole("loss_windows", self.loss_windows, 1, 4096)
        check_whole("seed", self.seed, 0, 2**31 - 1)

    def cost(self) -> tuple[float, str]:
        config = source_config(self.run_id)
        step = step_seconds(config, 1, config.block_size)
        seconds = 1.0 + self.windows * step + self.loss_windows * step / 3  # explicit attention ≈ a step
        text = (f"{self.windows} forward passes of {self.run_id} with attention recorded, and {self.loss_windows} "
                f"windows for the loss by position")  # fmt: skip
        return seconds, text


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


def tail_mean(values: Sequence[float], share: float = 0.25) -> tuple[float, int]:
    """Mean of the last ``share`` of ``values`` (at least one), and how many that was."""
    n = max(1, int(len(values) * share))
    return sum(values[-n:]) / n, n


def run(
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
        n_embd=model.config.n_embd, distance=plain(attention_distance(mean_maps)),
        weight_by_distance=plain(by_distance), far_share=rounded(float(by_distance[:, params.far :].sum(-1).mean())),
        loss_by_position=[rounded(v) for v in loss_by_position(model, val_windows(data, block, params.loss_windows,
                                                                                  params.seed + 1)).tolist()],
        elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    info = run.info()
    artifacts = Artifacts(model, tokenizer, str(info.get("corpus", "?")), str(info.get("tokenizer", "?")),
                          TrainConfig(max_steps=1, seed=params.seed), [], None, run.id)  # fmt: skip
    return replace(result, artifacts=artifacts)


def kv_numbers(n_layer: int, n_embd: int, position: int) -> int:
    """Numbers a transformer can read at ``position``: a key and a value of n_embd numbers for
    every earlier position (and itself) in every layer. An RNN carries n_embd, whatever the position."""
    return 2 * n_layer * n_embd * (position + 1)


def reading(result: AttentionRangeResult) -> str:
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


def figures(result: AttentionRangeResult) -> list[go.Figure]:
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
    return [distance, base_layout(by_distance, "where attention goes, by distance"),
            base_layout(memory, "what each can read at position t"), base_layout(loss, "loss by position: is the context used?")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="attention-range",
    title="Attention replaces recurrence",
    claim="An RNN squeezes everything before a token into one fixed-size state; attention reads every earlier token directly, as far back as it needs.",
    params_type=AttentionRangeParams,
    result_type=AttentionRangeResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(windows=2, loss_windows=8),
)  # fmt: skip
