"""Experiment 1, "pre-LN stabilises training": pre-LN vs post-LN on the same data, seed and
steps, then a learning-rate sweep with no warmup until one of them diverges."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt import data as corpora
from toygpt.certainty import compare_runs
from toygpt.formatting import human_count
from toygpt.lab.budget import training_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    MAX_STEPS,
    ExperimentSpec,
    LabError,
    ProgressFn,
    TrainingSetup,
    check_number,
    check_whole,
    fmt,
    rounded,
    shown_gap,
)
from toygpt.lab.variants import (
    Artifacts,
    CharCorpus,
    VariantRun,
    char_corpus,
    train_variant,
    with_artifacts,
)
from toygpt.model import GPT, total_parameters
from toygpt.status import Status
from toygpt.viz import PALETTE, base_layout, loss_curves_figure


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
            check_number("each of sweep_lrs", lr, 1e-6, 10.0)
        object.__setattr__(self, "sweep_lrs", tuple(sorted(self.sweep_lrs)))  # rising, as the sweep needs
        check_whole("sweep_steps", self.sweep_steps, 1, MAX_STEPS)

    def cost(self) -> tuple[float, str]:
        model = self.model_config()
        seconds = 2 * training_seconds(model, self.batch_size, model.block_size, self.steps)
        text = f"2 trainings (pre-LN, post-LN) × {self.steps} steps of the {self.preset} preset (≈ {human_count(total_parameters(model))} parameters each)"
        if self.lr_sweep:
            seconds += 2 * len(self.sweep_lrs) * training_seconds(model, self.batch_size, model.block_size, self.sweep_steps)
            text += f", then up to {2 * len(self.sweep_lrs)} more × {self.sweep_steps} steps for the learning-rate sweep"
        return seconds, text


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
        norms.append(rounded(float(torch.stack(squares).sum().sqrt())) if squares else 0.0)
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
    return run.end["status"] == Status.DIVERGED or final is None or final > unigram - CONTEXT_MARGIN


def _lr_sweep(params: NormPositionParams, corpus: CharCorpus, unigram: float, reporter: Reporter) -> list[dict[str, Any]]:
    """Train both variants at each learning rate (no warmup) until at least one diverges."""
    rows = []
    for lr in params.sweep_lrs:
        config = params.train_config(steps=params.sweep_steps, learning_rate=lr, warmup_steps=0)
        for label, norm in NORM_VARIANTS.items():
            reporter.begin(f"sweep: {label} at lr {lr:g}", weight=params.sweep_steps)
            model = GPT(params.model_config(corpus.tokenizer.vocab_size, norm_position=norm), seed=params.seed)
            run = train_variant(label, model, corpus.data, config, reporter)
            rows.append({"lr": lr, "variant": label, "final_loss": run.final_loss and rounded(run.final_loss),
                         "diverged": diverged(run, unigram)})  # fmt: skip
        if any(row["diverged"] for row in rows[-2:]):
            break
    return rows


def run(
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
        final_val={k: r.final_loss and rounded(r.final_loss) for k, r in runs.items()},
        status={k: r.end["status"] for k, r in runs.items()},
        layer_labels=[f"block {i}" for i in range(len(norms["pre-LN"]["init"]))],
        grad_norms=norms, sweep=sweep, unigram_loss=rounded(unigram), elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return with_artifacts(result, runs["pre-LN"], corpus, config)


def _grad_ratio(norms: list[float]) -> float | None:
    """Gradient norm of the first block over the last: < 1 means early layers learn slower."""
    return norms[0] / norms[-1] if norms and norms[-1] else None


def reading(result: NormPositionResult) -> str:
    pre, post = result.final_val.get("pre-LN"), result.final_val.get("post-LN")
    corpus = result.params.get("corpus", "the corpus")
    if pre is None or post is None:
        diverged = [k for k, s in result.status.items() if s == Status.DIVERGED]
        text = f"After {result.steps} steps on {corpus}, {' and '.join(diverged) or 'a variant'} diverged (the loss became NaN)."
    else:
        higher, lower = ("post-LN", "pre-LN") if post > pre else ("pre-LN", "post-LN")
        text = (f"After {result.steps} steps on {corpus}, {higher}'s validation loss was {shown_gap(post, pre):.2f} higher "
                f"than {lower}'s ({fmt(result.final_val[higher])} vs {fmt(result.final_val[lower])} nats per token).")  # fmt: skip
        text += compare_runs(result.curves[higher], result.curves[lower], result.params.get("eval_batches")).sentence()
    ratios = {k: _grad_ratio(v["init"]) for k, v in result.grad_norms.items()}
    if all(r is not None for r in ratios.values()):
        text += (f" At initialisation the first block's gradient norm was {ratios['pre-LN']:.2f}× the last block's "
                 f"with pre-LN and {ratios['post-LN']:.2f}× with post-LN.")  # fmt: skip
    return text + _sweep_reading(result.sweep, result.unigram_loss, result.params.get("sweep_steps"))


def _sweep_reading(sweep: list[dict[str, Any]], unigram: float, steps: int | None = None) -> str:
    if not sweep:
        return ""
    last_lr = sweep[-1]["lr"]
    at_last = {row["variant"]: row for row in sweep if row["lr"] == last_lr}
    failed = [variant for variant, row in at_last.items() if row["diverged"]]
    if failed and last_lr == sweep[0]["lr"]:  # the gentlest rate already "failed": too few steps to learn
        each = f"{steps} steps per training" if steps else "this sweep's step budget"
        return (f" The learning-rate sweep cannot tell here: at {each}, even its lowest rate ({last_lr:g}) left "
                f"{' and '.join(failed)} no better than the {unigram:.2f} nats of guessing characters from their "
                "frequency, which is what too little training looks like too. Give the sweep more steps.")  # fmt: skip
    if not failed:
        losses = " and ".join(f"{v} {fmt(r['final_loss'])}" for v, r in at_last.items())
        return f" With no warmup, neither diverged at learning rates up to {last_lr:g} (val loss {losses})."
    if len(failed) == 2:
        return (f" With no warmup, both diverged at learning rate {last_lr:g}: no better than the "
                f"{unigram:.2f} nats of guessing characters from their frequency.")  # fmt: skip
    other = "pre-LN" if failed[0] == "post-LN" else "post-LN"
    return (f" Raising the learning rate with no warmup, {failed[0]} diverged first, at {last_lr:g}: val loss "
            f"{fmt(at_last[failed[0]]['final_loss'])}, no better than the {unigram:.2f} of guessing characters "
            f"from their frequency, while {other} reached {fmt(at_last[other]['final_loss'])}.")  # fmt: skip


def figures(result: NormPositionResult) -> list[go.Figure]:
    curves = loss_curves_figure(result.curves)
    curves.update_layout(title=f"pre-LN vs post-LN: loss over {result.steps} steps")
    bars = go.Figure()
    for i, (variant, norms) in enumerate(result.grad_norms.items()):
        for when, pattern in (("init", "/"), ("trained", "")):
            bars.add_trace(go.Bar(x=result.layer_labels, y=norms[when], name=f"{variant} · {'at init' if when == 'init' else 'after training'}",
                                  marker=dict(color=PALETTE[i], pattern_shape=pattern)))  # fmt: skip
    bars.update_yaxes(title="gradient norm (log)", type="log")
    figs = [curves, base_layout(bars, "gradient norm per layer, at init and after training")]
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
    return base_layout(fig, "raising the learning rate until one diverges")


EXPERIMENT = ExperimentSpec(
    name="norm-position",
    title="Pre-LN vs post-LN",
    claim="Putting LayerNorm before each sub-layer (pre-LN, GPT-2) instead of after it (post-LN, the original Transformer) makes training more stable.",
    params_type=NormPositionParams,
    result_type=NormPositionResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", corpus="copy", steps=20, batch_size=4, eval_batches=2, sweep_lrs=(1e-2, 1.0), sweep_steps=10),
)  # fmt: skip
