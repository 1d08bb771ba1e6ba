"""Experiment "scaling on a CPU": a ladder of model sizes trained on the same text, in the same
order, each evaluated at doubling amounts of compute; the lower envelope of their curves (the
compute frontier) and a power law fitted to it.

Kaplan et al. 2020 ("Scaling Laws for Neural Language Models") found loss falling as a power
of compute over many orders of magnitude; Hoffmann et al. 2022 ("Training Compute-Optimal Large
Language Models", Chinchilla) fitted L = E + A/N^α + B/D^β and asked which size is best for a
budget. toygpt's version simplifies, and says so in its reading:

* Compute is ``flops_per_token(config)`` (training: 3× the forward matmuls, attention at the full
  block, the head; embeddings, norms and softmax left out) × tokens seen (steps × batch × block).
* One training per size at a constant learning rate (after a short warmup), evaluated on the way
  at compute C_max/2^k: Kaplan's envelope of learning curves. Chinchilla instead trains a
  separate, fully decayed run for every budget, which would cost a multiple of this.
* One learning rate for every size, one seed, a char-level corpus; a few hundred thousand to a
  few million parameters rather than billions. The fit has 3 parameters and few points: α comes
  with a bootstrap interval over the frontier points, and the reading says how far it reaches.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from toygpt.certainty import CALL_RATIO, standard_error
from toygpt.lab.budget import step_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    LAB_COMPILE,
    ExperimentParams,
    ExperimentSpec,
    LabError,
    ProgressFn,
    check_number,
    check_whole,
    corpus_names,
    plain,
    rounded,
)
from toygpt.lab.variants import Artifacts, char_corpus, val_windows
from toygpt.model import GPT, GPTConfig, flops_per_token, total_parameters
from toygpt.train import TrainConfig
from toygpt.viz import PALETTE, base_layout

# (n_layer, n_embd, n_head): about 17k, 63k, 108k, 348k, 810k and 1.8M parameters at 65 characters
LADDER = ("1x32x2", "2x48x2", "2x64x4", "3x96x4", "4x128x4", "4x192x6")
MIN_STEPS = 10  # an evaluation after fewer steps than this measures the warmup, not the size
BOOTSTRAP = 300


def parse_size(text: str) -> tuple[int, int, int]:
    """``"4x128x4"`` → (n_layer=4, n_embd=128, n_head=4); LabError otherwise."""
    try:
        layers, width, heads = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise LabError(f"size {text!r}: write layers x width x heads, e.g. 4x128x4") from None
    if not (1 <= layers <= 48 and 1 <= heads <= 64 and heads <= width <= 4096 and width % heads == 0):
        raise LabError(f"size {text!r}: 1-48 layers, a width of 1-4096 that the 1-64 heads divide")
    return layers, width, heads


@dataclass(frozen=True)
class ScalingParams(ExperimentParams):
    """Train each size of ``sizes`` up to ``max_compute`` FLOPs on ``corpus`` (char-level),
    evaluating at ``max_compute / 2^k`` for k = ``doublings`` .. 0 on ``eval_batches`` ×
    ``batch_size`` validation windows. ``device``: "cpu", or "cuda" for the command line."""

    corpus: str = "shakespeare"
    sizes: tuple[str, ...] = LADDER[:4]  # the 810k and 1.8M rungs need longer budgets (the CLI)
    max_compute: float = 1.0e11
    doublings: int = 7
    block_size: int = 64
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 10
    eval_batches: int = 4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.corpus not in corpus_names():
            raise LabError(f"corpus={self.corpus!r}; choose one of {corpus_names()}")
        if isinstance(self.sizes, str) or not 2 <= len(self.sizes) <= 10:
            raise LabError("give 2 to 10 sizes, e.g. ('1x32x2', '2x64x4', '4x128x4')")
        for size in self.sizes:
            parse_size(size)
        check_number("max_compute", self.max_compute, 1e6, 1e21, " FLOPs; try 1e12")
        check_whole("doublings", self.doublings, 2, 30)
        check_whole("block_size", self.block_size, 2, 1024)
        check_whole("batch_size", self.batch_size, 1, 1024)
        check_number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 2e-3")
        check_whole("warmup_steps", self.warmup_steps, 0, 10_000)
        check_whole("eval_batches", self.eval_batches, 1, 200)
        check_whole("seed", self.seed, 0, 2**31 - 1)
        if self.device not in ("cpu", "cuda"):
            raise LabError(f"device={self.device!r}; choose 'cpu' or 'cuda'")

    def config(self, size: str, vocab_size: int = 65) -> GPTConfig:
        layers, width, heads = parse_size(size)
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=layers, n_head=heads, n_embd=width)

    def steps(self, size: str, vocab_size: int = 65) -> int:
        """Training steps for ``size`` to reach ``max_compute``."""
        return math.ceil(self.max_compute / (flops_per_token(self.config(size, vocab_size)) * self.tokens_per_step))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    timing = ", from training steps of these sizes timed here just now"  # (on the job's threads)

    def cost(self) -> tuple[float, str]:
        seconds = 0.0
        for size in self.sizes:
            config = self.config(size)
            seconds += self.steps(size) * step_seconds(config, self.batch_size, self.block_size)
            seconds += (self.doublings + 1) * self.eval_batches * step_seconds(config, self.batch_size, self.block_size) / 3
        text = (f"{len(self.sizes)} sizes from {total_parameters(self.config(self.sizes[0])):,} to "
                f"{total_parameters(self.config(self.sizes[-1])):,} parameters, each trained to {self.max_compute:.2g} "
                f"FLOPs on {self.corpus} ({self.steps(self.sizes[0]):,} to {self.steps(self.sizes[-1]):,} steps)")  # fmt: skip
        return seconds, text


@dataclass(frozen=True)
class ScalingResult:
    params: dict[str, Any]
    sizes: list[dict[str, Any]]  # per size: {"size", "parameters", "flops_per_token", "steps"}
    points: list[dict[str, Any]]  # per evaluation: {"size", "step", "compute", "val_loss", "val_se"}
    frontier: list[dict[str, Any]]  # per budget: the best point {"size", "compute", "val_loss", "val_se"}
    fit: dict[str, Any] | None  # {"l_inf", "a", "alpha", "c0", "alpha_low", "alpha_high", "resamples"}
    elapsed: float
    experiment: str = "scaling"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


# --------------------------------------------------------------------------------------------
# The fit: L(C) = L∞ + a·(C/c0)^(−α) on the frontier, with a bootstrap interval for α
# --------------------------------------------------------------------------------------------


def power_law(compute: np.ndarray, l_inf: float, a: float, alpha: float, c0: float = 1.0) -> np.ndarray:
    """L(C) = L∞ + a·(C/c0)^(−α): loss falls as a power of compute towards an irreducible L∞."""
    return l_inf + a * np.power(np.asarray(compute, dtype=float) / c0, -alpha)


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> dict[str, float] | None:
    """Least-squares fit of ``power_law`` (``scipy.optimize.curve_fit``) with compute measured
    from c0 = the smallest compute (so ``a`` is the reducible loss there); None when it does not
    converge or there are fewer than 4 points. Bounds: 0 ≤ L∞ ≤ min loss, a ≥ 0, 0 < α ≤ 5."""
    from scipy.optimize import curve_fit

    c, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if len(c) < 4 or len(set(c.tolist())) < 4:
        return None
    c0 = float(c.min())
    low = float(y.min())
    guess = [0.8 * low, max(float(y.max()) - 0.8 * low, 1e-3), 0.3]
    try:
        (l_inf, a, alpha), _ = curve_fit(lambda x, floor, a, al: power_law(x, floor, a, al, c0), c, y, p0=guess,
                                         bounds=([0.0, 0.0, 1e-4], [low, np.inf, 5.0]), maxfev=20_000)  # fmt: skip
    except (RuntimeError, ValueError):
        return None
    return {"l_inf": float(l_inf), "a": float(a), "alpha": float(alpha), "c0": c0}


def bootstrap_alpha(compute: Sequence[float], loss: Sequence[float], resamples: int = BOOTSTRAP,
                    seed: int = 0) -> tuple[float, float, int] | None:  # fmt: skip
    """A 95% interval for α: refit on ``resamples`` resamples of the points (with replacement);
    (2.5th, 97.5th percentile, fits that converged), or None when fewer than 20 did."""
    rng = np.random.default_rng(seed)
    c, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    alphas = []
    for _ in range(resamples):
        pick = rng.integers(0, len(c), len(c))
        fit = fit_power_law(c[pick], y[pick])
        if fit is not None:
            alphas.append(fit["alpha"])
    if len(alphas) < 20:
        return None
    return float(np.percentile(alphas, 2.5)), float(np.percentile(alphas, 97.5)), len(alphas)


def frontier_of(points: Sequence[dict[str, Any]], grid: Sequence[int]) -> list[dict[str, Any]]:
    """For each budget index k of ``grid``, the point with the lowest loss among the sizes
    evaluated there (the lower envelope of the curves)."""
    best = []
    for k in grid:
        here = [p for p in points if p["budget"] == k]
        if here:
            best.append(min(here, key=lambda p: p["val_loss"]))
    return best


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def window_losses(model: GPT, windows: torch.Tensor) -> torch.Tensor:
    """Mean loss of each validation window (N,), nats/token."""
    model.eval()
    logits, _ = model(windows[:, :-1])
    losses = F.cross_entropy(logits.flatten(0, 1).float(), windows[:, 1:].flatten(), reduction="none")
    model.train()
    return losses.view(windows.shape[0], -1).mean(1)


def eval_steps(params: ScalingParams, size: str, vocab_size: int) -> dict[int, int]:
    """Step → budget index k (compute = max_compute / 2^k) for the evaluations of ``size``;
    budgets reached in fewer than ``MIN_STEPS`` steps are left out."""
    per_step = flops_per_token(params.config(size, vocab_size)) * params.tokens_per_step
    steps = {}
    for k in range(params.doublings, -1, -1):
        step = math.ceil(params.max_compute / 2**k / per_step)
        if step >= MIN_STEPS:
            steps[step] = k
    return steps


def train_size(params: ScalingParams, size: str, data: Any, windows: torch.Tensor, vocab_size: int,
               reporter: Reporter) -> tuple[GPT, list[dict[str, Any]]]:  # fmt: skip
    """Train one size to ``max_compute`` with the shared data order; its evaluation points."""
    config = params.config(size, vocab_size)
    device = torch.device(params.device)
    model = GPT(config, seed=params.seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, betas=(0.9, 0.95), weight_decay=0.0)
    generator = torch.Generator().manual_seed(params.seed)  # the same batches, in the same order, for every size
    wanted, total = eval_steps(params, size, vocab_size), params.steps(size, vocab_size)
    per_token, points = flops_per_token(config), []
    windows = windows.to(device)
    for step in range(1, total + 1):
        reporter.check_stop()
        for group in optimizer.param_groups:
            group["lr"] = params.learning_rate * min(1.0, step / max(1, params.warmup_steps))
        x, y = data.get_batch("train", params.batch_size, params.block_size, generator, device=device)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step in wanted:
            losses = window_losses(model, windows).cpu()
            compute = per_token * step * params.tokens_per_step
            points.append({"size": size, "step": step, "budget": wanted[step], "compute": float(compute),
                           "val_loss": float(losses.mean()), "val_se": standard_error(losses.tolist()) or 0.0})  # fmt: skip
            reporter.callback({"type": "metric", "variant": size, "step": step, "val_loss": float(losses.mean())})
        if step % max(1, total // 50) == 0:
            reporter.at(step / total, f"{size}: step {step} of {total}")
    return model.cpu().eval(), points


def run(params: ScalingParams, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> ScalingResult:
    started = time.perf_counter()
    weights = [params.steps(size) * step_seconds(params.config(size), params.batch_size, params.block_size)
               for size in params.sizes]  # fmt: skip
    reporter = Reporter(progress, stop, sum(weights) + 1)
    reporter.begin("preparing the corpus", weight=1)
    try:
        corpus = char_corpus(params.corpus, params.seed)
    except (ValueError, OSError) as exc:
        raise LabError(f"corpus {params.corpus!r} is not available here: {exc}") from None
    vocab = corpus.tokenizer.vocab_size
    windows = val_windows(corpus.data, params.block_size, params.eval_batches * params.batch_size, params.seed + 1)
    sizes, points, model = [], [], None
    for size, weight in zip(params.sizes, weights, strict=True):
        reporter.begin(f"training {size}", weight=weight)
        model, found = train_size(params, size, corpus.data, windows, vocab, reporter)
        config = params.config(size, vocab)
        sizes.append({"size": size, "parameters": total_parameters(config), "flops_per_token": flops_per_token(config),
                      "steps": params.steps(size, vocab)})  # fmt: skip
        points += found
    frontier = frontier_of(points, range(params.doublings, -1, -1))
    fit = fit_power_law([p["compute"] for p in frontier], [p["val_loss"] for p in frontier])
    if fit is not None:
        interval = bootstrap_alpha([p["compute"] for p in frontier], [p["val_loss"] for p in frontier], seed=params.seed)
        fit.update(zip(("alpha_low", "alpha_high", "resamples"), interval or (None, None, 0), strict=True))
    result = ScalingResult(params=params.to_dict(), sizes=sizes, points=plain(points), frontier=plain(frontier),
                           fit=plain(fit), elapsed=rounded(time.perf_counter() - started))  # fmt: skip
    config = TrainConfig(batch_size=params.batch_size, block_size=params.block_size, max_steps=sizes[-1]["steps"],
                         learning_rate=params.learning_rate, seed=params.seed, checkpoint_interval=0, max_snapshots=0,
                         compile=LAB_COMPILE)  # fmt: skip
    events = [{"type": "eval", "step": p["step"], "val_loss": p["val_loss"]} for p in points if p["size"] == params.sizes[-1]]
    return replace(result, artifacts=Artifacts(model, corpus.tokenizer, corpus.name, "char", config, events))


# --------------------------------------------------------------------------------------------
# Reading and figures
# --------------------------------------------------------------------------------------------


def doubling_gains(frontier: Sequence[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """Loss bought by each doubling along the frontier: (compute before, gain in nats, its noise)."""
    gains = []
    for a, b in zip(frontier, frontier[1:], strict=False):
        steps = math.log2(b["compute"] / a["compute"])
        noise = math.hypot(a["val_se"], b["val_se"]) / max(steps, 1e-9)
        gains.append((a["compute"], (a["val_loss"] - b["val_loss"]) / max(steps, 1e-9), noise))
    return gains


def gain_words(gain: float, noise: float) -> str:
    if abs(gain) < CALL_RATIO * noise:
        return f"{gain:.3f} nats (within {CALL_RATIO:g}× its noise ±{noise:.3f}: too close to call)"
    return f"{gain:.3f} nats (±{noise:.3f})"


def reading(result: ScalingResult) -> str:
    frontier = result.frontier
    if len(frontier) < 2:
        return ("Fewer than two budgets were reached by any size (each evaluation needs "
                f"{MIN_STEPS} steps or more): raise max_compute.")  # fmt: skip
    first, last = frontier[0], frontier[-1]
    text = (f"From {first['compute']:.2g} to {last['compute']:.2g} FLOPs the frontier fell from {first['val_loss']:.3f} "
            f"to {last['val_loss']:.3f} nats/token.")  # fmt: skip
    gains = doubling_gains(frontier)
    small, large = gains[0], gains[-1]
    text += (f" A doubling of compute bought {gain_words(small[1], small[2])} at the small end and "
             f"{gain_words(large[1], large[2])} at the large end")  # fmt: skip
    difference, noise = small[1] - large[1], math.hypot(small[2], large[2])
    if abs(difference) < CALL_RATIO * noise:
        text += "; whether returns diminish is too close to call here."
    elif difference > 0:
        text += f": diminishing returns, {small[1] / large[1]:.1f}× less per doubling." if large[1] > 0 else ": diminishing returns, nothing left per doubling."
    else:
        text += ": returns grew with compute over this range (the larger sizes were still catching up)."
    optimal = [p["size"] for p in frontier]
    params_of = {s["size"]: s["parameters"] for s in result.sizes}
    if optimal[0] == optimal[-1]:
        text += f" {optimal[0]} ({params_of[optimal[0]]:,} parameters) was the best size at every budget."
    else:
        text += (f" The compute-optimal size grew from {optimal[0]} ({params_of[optimal[0]]:,} parameters) at the "
                 f"smallest budget to {optimal[-1]} ({params_of[optimal[-1]]:,}) at the largest.")  # fmt: skip
    rule = math.sqrt(last["compute"] / 120)
    text += (f" (Hoffmann et al.'s rule of thumb, C ≈ 6·N·D with D ≈ 20·N tokens, puts the optimum at "
             f"{last['compute']:.2g} FLOPs near √(C/120) ≈ {rule:,.0f} parameters.)")  # fmt: skip
    fit = result.fit
    if fit is None:
        return text + " The power law could not be fitted to so few frontier points (4 are needed)."
    text += (f" Fitted on the {len(frontier)} frontier points: L(C) = {fit['l_inf']:.2f} + {fit['a']:.2f}·"
             f"(C/{fit['c0']:.2g})^−α with α = {fit['alpha']:.3f}")  # fmt: skip
    if fit.get("alpha_low") is None:
        text += " (too few bootstrap fits converged for an interval)."
    else:
        low, high = fit["alpha_low"], fit["alpha_high"]
        text += f", 95% bootstrap interval {low:.3f}–{high:.3f} ({fit['resamples']} resamples of the points)."
        if low <= 0.0 or high > 2 * max(low, 1e-9):
            text += " The interval spans more than a factor of 2: α is poorly pinned down by these points."
    return text + (f" Three parameters from {len(frontier)} points over {math.log2(last['compute'] / first['compute']):.0f} "
                   f"doublings: read it inside {first['compute']:.2g}–{last['compute']:.2g} FLOPs only; L∞ = "
                   f"{fit['l_inf']:.2f} rests on the curve's bend, and beyond the largest budget the law is a guess.")  # fmt: skip


def figures(result: ScalingResult) -> list[go.Figure]:
    curves = go.Figure()
    for i, size in enumerate(result.sizes):
        mine = [p for p in result.points if p["size"] == size["size"]]
        curves.add_trace(go.Scatter(x=[p["compute"] for p in mine], y=[p["val_loss"] for p in mine], mode="lines+markers",
                                    name=f"{size['size']} ({size['parameters']:,} params)",
                                    line=dict(color=PALETTE[i % len(PALETTE)])))  # fmt: skip
    frontier = result.frontier
    curves.add_trace(go.Scatter(x=[p["compute"] for p in frontier], y=[p["val_loss"] for p in frontier], name="frontier",
                                mode="lines", line=dict(color="black", width=4), opacity=0.35))  # fmt: skip
    if result.fit is not None:
        xs = np.geomspace(frontier[0]["compute"], frontier[-1]["compute"], 50)
        fit = result.fit
        curves.add_trace(go.Scatter(x=xs.tolist(), y=power_law(xs, fit["l_inf"], fit["a"], fit["alpha"], fit["c0"]).tolist(),
                                    name=f"fit: α = {fit['alpha']:.3f}", mode="lines", line=dict(color="black", dash="dash")))  # fmt: skip
    curves.update_xaxes(title="compute (training FLOPs, log)", type="log")
    curves.update_yaxes(title="val loss (nats/token, log)", type="log")
    optimal = go.Figure(go.Scatter(
        x=[p["compute"] for p in frontier], y=[next(s["parameters"] for s in result.sizes if s["size"] == p["size"]) for p in frontier],
        mode="lines+markers", text=[p["size"] for p in frontier], name="best size", line=dict(color=PALETTE[2]),
    ))  # fmt: skip
    optimal.update_xaxes(title="compute (training FLOPs, log)", type="log")
    optimal.update_yaxes(title="parameters of the best size (log)", type="log")
    gains = doubling_gains(frontier)
    bought = go.Figure(go.Bar(x=[f"{c:.2g}" for c, _, _ in gains], y=[g for _, g, _ in gains],
                              error_y=dict(type="data", array=[n for _, _, n in gains]), marker_color=PALETTE[0]))  # fmt: skip
    bought.update_xaxes(title="compute before the doubling (FLOPs)", type="category")
    bought.update_yaxes(title="loss bought per doubling (nats)")
    return [base_layout(curves, "val loss against compute: each size, the frontier and the fit"),
            base_layout(optimal, "compute-optimal size per budget"),
            base_layout(bought, "loss bought by each doubling of compute (frontier)")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="scaling",
    title="Scaling on a CPU",
    claim="More compute keeps buying lower loss, as a power law with an irreducible floor (Kaplan et al. 2020; Hoffmann et al. 2022) — measured here on a ladder of small models, with how much each doubling buys.",
    params_type=ScalingParams,
    result_type=ScalingResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(corpus="toy-english", sizes=("1x32x2", "2x48x2"), max_compute=1e9, doublings=4, block_size=32,
              batch_size=8, eval_batches=2),
)  # fmt: skip
