"""Experiment "induction heads form": train a small two-layer model on sequences that repeat,
and watch in-context copying appear — the loss on the repeated part, the best head's induction
score, and that head's attention pattern at a few snapshots.

Olsson et al. 2022 ("In-context Learning and Induction Heads") saw induction heads form in a
sudden "phase change" early in training: the loss on repeated tokens falls abruptly as a
previous-token head (layer 0) and an induction head (layer 1) appear together. toygpt's version
simplifies: a 2-layer GPT with its MLPs (not attention-only), trained from scratch on random
letters only, each sequence a random stretch of ``4 .. length/2`` letters repeated until the
window is full (the stretch's length varies, so a head that attends a fixed distance back
cannot do the job; only matching the current token against the token before each key can).
Each head's induction score is averaged over halves of three lengths for the same reason: on
halves of one length a head attending a fixed distance back scores like an induction head.
Snapshots are kept in memory at every evaluation and only the best head's pattern is saved.
"""

from __future__ import annotations

import copy
import math
import string
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from toygpt.certainty import CALL_RATIO, standard_error
from toygpt.inspection import attention_maps, run_with_cache
from toygpt.interventions import (
    ablated_token_losses,
    induction_score_of,
    induction_scores,
    repeated_random_tokens,
    uniform_induction_score,
)
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
    plain,
    rounded,
)
from toygpt.lab.variants import Artifacts
from toygpt.model import GPT, POS_ENCODINGS, GPTConfig
from toygpt.tokenizers import CharTokenizer
from toygpt.train import TrainConfig
from toygpt.viz import PALETTE, base_layout

ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits + "+*"  # 64 letters
THRESHOLD = 0.5  # "formed": the best head puts over half its attention on the right token
SHORTEST_STRETCH = 4
PATTERN_SNAPSHOTS = 4
SHIFTS = 4  # where the copying head looks: the letter after the earlier copy and up to 3 further on
CARRIES = 1.0  # nats: a head whose removal raises the repeated half's loss this much does the copying


@dataclass(frozen=True)
class InductionParams(ExperimentParams):
    """Train a 2-layer model (``n_head`` heads of ``n_embd`` channels) for ``steps`` steps on
    ``batch_size`` windows of ``length`` random letters from an alphabet of ``vocab`` that repeat
    a stretch; evaluate ``evals`` times on ``eval_sequences`` random halves repeated once, for each
    of three half lengths (``eval_halves``: ``length // 2`` and two shorter)."""

    steps: int = 2000
    vocab: int = 64
    length: int = 32
    n_embd: int = 64
    n_head: int = 4
    pos_encoding: str = "learned"  # rope at 3e-3 was slower to leave the plateau in a probe here
    learning_rate: float = 1e-3
    batch_size: int = 32
    evals: int = 16
    eval_sequences: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_whole("steps", self.steps, 1, 20_000)
        check_whole("vocab", self.vocab, 4, len(ALPHABET))
        check_whole("length", self.length, 2 * SHORTEST_STRETCH, 256)
        check_whole("n_head", self.n_head, 1, 16)
        check_whole("n_embd", self.n_embd, self.n_head, 512)
        if self.n_embd % self.n_head or (self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2):
            raise LabError(f"n_embd={self.n_embd} must split into {self.n_head} equal heads (of an even size for rope); try 64")
        if self.pos_encoding not in POS_ENCODINGS:
            raise LabError(f"pos_encoding={self.pos_encoding!r}; choose one of {POS_ENCODINGS}")
        check_number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 3e-3")
        check_whole("batch_size", self.batch_size, 1, 512)
        check_whole("evals", self.evals, 2, 200)
        check_whole("eval_sequences", self.eval_sequences, 2, 512)
        check_whole("seed", self.seed, 0, 2**31 - 1)

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab, block_size=self.length, n_layer=2, n_head=self.n_head,
                         n_embd=self.n_embd, pos_encoding=self.pos_encoding)  # fmt: skip

    def cost(self) -> tuple[float, str]:
        config = self.model_config()
        seconds = self.steps * step_seconds(config, self.batch_size, self.length)
        sets = len(eval_halves(self.length))  # each evaluation: a forward pass per set, then one per sequence (its SE)
        seconds += self.evals * sets * step_seconds(config, self.eval_sequences, self.length) / 2
        seconds += self.evals * sets * self.eval_sequences * step_seconds(config, 1, self.length) / 2
        text = (f"{self.steps} steps of a 2-layer model ({GPT(config).num_parameters():,} parameters) on repeating "
                f"random letters, {self.evals} evaluations of {self.eval_sequences} sequences on each of "
                f"{halves_text(self.length)}-letter halves")  # fmt: skip
        return seconds, text


@dataclass(frozen=True)
class InductionResult:
    params: dict[str, Any]
    parameters: int
    steps: list[int]  # the evaluated steps
    first_half_loss: list[float]  # per evaluation: nats/token on the first half
    repeated_loss: list[float]  # ... on the repeated half
    scores: list[list[list[float]]]  # per evaluation: (n_layer, n_head) induction scores
    best_score_se: list[float]  # per evaluation: standard error of the best head's score over sequences
    best_head: list[int]  # [layer, head]: the head with the highest score at the last evaluation
    formed_at: int | None  # first evaluated step where the best score reached THRESHOLD
    pattern_steps: list[int]  # snapshots whose attention pattern of best_head is kept
    patterns: list[list[list[float]]]  # (len(pattern_steps), 2·half, 2·half)
    pattern_text: str  # the evaluation sequence the patterns are drawn on
    uniform_score: float  # what evenly spread attention scores
    copying_head: list[int]  # [layer, head], layer ≥ 1: the head whose removal hurts the repeated half most
    copying_ablated_loss: float  # the repeated half's loss (nats/token) at the end with that head switched off
    copying_shifts: list[float]  # its attention s = 0 .. SHIFTS − 1 letters after the induction score's key
    elapsed: float
    experiment: str = "induction-heads"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved

    @property
    def best_scores(self) -> list[float]:
        """At each evaluation, the highest score over all heads."""
        return [max(max(row) for row in scores) for scores in self.scores]


def repeating_batch(vocab: int, length: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` windows of ``length + 1`` tokens, (batch, length + 1): each a random stretch of
    ``SHORTEST_STRETCH .. length // 2`` distinct tokens, repeated until the window is full."""
    rows = []
    for _ in range(batch):
        stretch = int(torch.randint(SHORTEST_STRETCH, length // 2 + 1, (1,), generator=generator))
        first = torch.randperm(vocab, generator=generator)[:stretch]
        rows.append(first.repeat(length // len(first) + 2)[: length + 1])
    return torch.stack(rows)


def eval_halves(length: int) -> list[int]:
    """The halves the heads are scored on: ``length // 2`` and two shorter ones, e.g. 16 → [16, 12, 8].

    A head that attends a fixed distance back, whatever the tokens (a *positional* head, which
    layer 0 can learn with no help), lands exactly on "the token after the earlier copy" when the
    copy is that distance back, so on halves of one length it scores like an induction head
    (probe here: a layer-0 head scored 0.93 at half 8 and 0.20 at half 5). Only matching tokens
    finds the copy at every distance: averaged over three halves, a fixed-distance head scores
    at most about 1/3, under ``THRESHOLD``."""
    half = length // 2
    step = max(1, half // 4)
    return [half, max(2, half - step), max(2, half - 2 * step)]


def eval_sets(params: InductionParams) -> list[torch.Tensor]:
    """One batch of ``eval_sequences`` random halves repeated once per half of ``eval_halves``."""
    return [repeated_random_tokens(params.vocab, half, params.eval_sequences, seed=params.seed + 1 + i)
            for i, half in enumerate(eval_halves(params.length))]  # fmt: skip


@dataclass(frozen=True)
class Measured:
    """One evaluation: ``scores`` (n_layer, nh) each head's induction score averaged over the
    halves; the losses on halves of ``length // 2`` (the first set)."""

    scores: torch.Tensor
    first_half_loss: float
    repeated_loss: float


def measure(model: GPT, sets: list[torch.Tensor]) -> Measured:
    """Induction scores of every head on each set of ``eval_sets``, averaged (n_layer, nh)."""
    each = [induction_scores(model, tokens) for tokens in sets]
    scores = torch.stack([m.scores for m in each]).mean(0)
    return Measured(scores, each[0].first_half_loss, each[0].repeated_loss)


def sequence_scores(model: GPT, tokens: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """Induction score of head (layer, head) on each sequence of ``tokens`` (B, 2·half): (B,)."""
    return torch.stack([induction_scores(model, row[None]).scores[layer, head] for row in tokens])


def score_se(model: GPT, sets: list[torch.Tensor], layer: int, head: int) -> float:
    """Standard error of head (layer, head)'s score averaged over the sets: the sets are
    independent, so SE = sqrt(Σ SE_i²) / (number of sets)."""
    errors = [standard_error(sequence_scores(model, tokens, layer, head).tolist()) or 0.0 for tokens in sets]
    return math.sqrt(sum(e * e for e in errors)) / len(sets)


def halves_text(length: int) -> str:
    """``eval_halves`` in words: "16, 12 and 8"."""
    *rest, last = eval_halves(length)
    return f"{', '.join(map(str, rest))} and {last}"


def copying_head(model: GPT, sets: list[torch.Tensor]) -> tuple[int, int, float]:
    """The head of layer ≥ 1 whose removal (its output set to 0) raises the loss on the repeated
    halves of ``sets[0]`` the most: (layer, head, that loss in nats/token). Layer 0 cannot copy
    from the earlier copy by itself: its keys know only their own letter and position."""
    tokens = sets[0]
    half = tokens.shape[1] // 2
    losses = {(layer, head): float(ablated_token_losses(model, tokens, layer, head)[:, half:].mean())
              for layer in range(1, model.config.n_layer) for head in range(model.config.n_head)}  # fmt: skip
    (layer, head), loss = max(losses.items(), key=lambda item: item[1])
    return layer, head, loss


def shift_scores(model: GPT, sets: list[torch.Tensor], layer: int, head: int) -> list[float]:
    """Head (layer, head)'s attention to the key s = 0 .. SHIFTS − 1 letters after the token
    after the earlier copy (``induction_score_of(..., shift=s)``), averaged over the sets."""
    name = f"blocks.{layer}.attn.hook_pattern"
    rows = []
    for tokens in sets:
        half = tokens.shape[1] // 2
        _, cache = run_with_cache(model, tokens, [name])
        rows.append([float(induction_score_of(cache[name], half, s)[head]) for s in range(min(SHIFTS, half))])
    return [sum(row[s] for row in rows if s < len(row)) / sum(s < len(row) for row in rows) for s in range(len(rows[0]))]


def formed_step(steps: list[int], best: list[float], threshold: float = THRESHOLD) -> int | None:
    """The first evaluated step whose best score reached ``threshold`` (None: never)."""
    return next((step for step, score in zip(steps, best, strict=True) if score >= threshold), None)


def run(params: InductionParams, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> InductionResult:
    started = time.perf_counter()
    reporter = Reporter(progress, stop, 1)
    reporter.begin("training on repeating letters")
    torch.manual_seed(params.seed)
    model = GPT(params.model_config(), seed=params.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(params.seed)
    sets = eval_sets(params)
    eval_tokens = sets[0]  # halves of length // 2: the losses and the drawn pattern
    eval_at = sorted({round(i * params.steps / (params.evals - 1)) for i in range(params.evals)})
    steps, first, repeated, scores, snapshots, events = [], [], [], [], {}, []
    for step in range(params.steps + 1):
        if step in eval_at:
            model.eval()
            measured = measure(model, sets)
            steps.append(step)
            first.append(measured.first_half_loss)
            repeated.append(measured.repeated_loss)
            scores.append(measured.scores)
            snapshots[step] = copy.deepcopy(model.state_dict())
            events.append({"type": "eval", "step": step, "val_loss": measured.repeated_loss})
            reporter.callback({"type": "metric", "variant": "repeated half", "step": step, "val_loss": measured.repeated_loss})
            model.train()
        if step == params.steps:
            break
        reporter.check_stop()
        batch = repeating_batch(params.vocab, params.length, params.batch_size, generator)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, params.steps // 60) == 0:
            events.append({"type": "step", "step": step + 1, "loss": loss.item()})
            reporter.callback({"type": "metric", "variant": "training", "step": step + 1, "train_loss": loss.item()})
            reporter.at((step + 1) / params.steps, f"step {step + 1} of {params.steps}")
    model.eval()
    layer, head = divmod(int(scores[-1].argmax()), params.n_head)
    best = [float(s.max()) for s in scores]
    formed = formed_step(steps, best)
    chosen = pattern_steps(steps, formed)
    patterns = []
    probe = GPT(params.model_config()).eval()
    for step in chosen:
        probe.load_state_dict(snapshots[step])
        patterns.append(probe_pattern(probe, eval_tokens[:1], layer, head))
    best_se = []
    for step in steps:
        probe.load_state_dict(snapshots[step])
        index = int(scores[steps.index(step)].argmax())
        best_se.append(score_se(probe, sets, *divmod(index, params.n_head)))
    copier = copying_head(model, sets)
    shifts = shift_scores(model, sets, copier[0], copier[1])
    tokenizer = CharTokenizer.from_text(ALPHABET[: params.vocab])
    result = InductionResult(
        params=params.to_dict(), parameters=model.num_parameters(), steps=steps, first_half_loss=plain(first),
        repeated_loss=plain(repeated), scores=plain(torch.stack(scores)), best_score_se=plain(best_se),
        best_head=[layer, head], formed_at=formed, pattern_steps=chosen, patterns=plain(torch.stack(patterns)),
        pattern_text=tokenizer.decode(eval_tokens[0].tolist()), uniform_score=rounded(sum(map(uniform_induction_score, eval_halves(params.length))) / 3),
        copying_head=list(copier[:2]), copying_ablated_loss=rounded(copier[2]), copying_shifts=plain(shifts),
        elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    config = TrainConfig(batch_size=params.batch_size, max_steps=params.steps, learning_rate=params.learning_rate,
                         seed=params.seed, checkpoint_interval=0, max_snapshots=0, compile=LAB_COMPILE)  # fmt: skip
    artifacts = Artifacts(model, tokenizer, "repeating random letters", "char", config, events,
                          corpus_text=tokenizer.decode(repeating_batch(params.vocab, params.length, 64,
                                                                       torch.Generator().manual_seed(params.seed)).flatten().tolist()))  # fmt: skip
    return replace(result, artifacts=artifacts)


def pattern_steps(steps: list[int], formed: int | None, count: int = PATTERN_SNAPSHOTS) -> list[int]:
    """A few evaluated steps to draw: the first, the last before formation and the first after
    it (when it formed), and the last; evenly spaced ones fill up to ``count``."""
    chosen = {steps[0], steps[-1]}
    if formed is not None:
        at = steps.index(formed)
        chosen |= {steps[max(0, at - 1)], formed}
    for i in range(count):
        if len(chosen) >= min(count, len(steps)):
            break
        chosen.add(steps[round(i * (len(steps) - 1) / max(1, count - 1))])
    return sorted(chosen)


def probe_pattern(model: GPT, tokens: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """Head (layer, head)'s attention pattern (T, T) on the first sequence of ``tokens``."""
    return attention_maps(model, tokens[0].tolist())[layer, head]


def reading(result: InductionResult) -> str:
    layer, head = result.best_head
    best = result.best_scores
    vocab, half = result.params["vocab"], result.params["length"] // 2
    final_se = result.best_score_se[-1]
    last = result.steps[-1]
    chance = math.log(vocab)
    if result.formed_at is None:
        text = (f"Induction did not appear within {last} steps: the best head's score (averaged over halves of "
                f"{halves_text(result.params['length'])} letters) reached {best[-1]:.2f} "
                f"(it counts as formed at {THRESHOLD}; attention spread evenly scores {result.uniform_score:.2f}), "
                f"and the loss on the repeated half is {result.repeated_loss[-1]:.2f} nats/token against "
                f"{result.first_half_loss[-1]:.2f} on the first half (guessing among {vocab} letters: {chance:.2f}).")  # fmt: skip
        seen = math.log(half)
        if result.first_half_loss[-1] - result.repeated_loss[-1] > 0.5:
            text += (f" The repeated half still got easier without an induction head: guessing only among the {half} "
                     f"letters already seen costs ln {half} = {seen:.2f}")  # fmt: skip
            text += (", so the model learned which letters had appeared, not which letter followed which."
                     if result.repeated_loss[-1] >= seen else
                     ", and it does better than that, so it uses more than which letters appeared." + copying_text(result))  # fmt: skip
        if abs(best[-1] - THRESHOLD) < CALL_RATIO * final_se:
            text += f" The final score is within {CALL_RATIO:g} standard errors (±{final_se:.2f}) of the mark: too close to call."
        return text + " Train longer (more steps) to see whether one forms."
    at = result.steps.index(result.formed_at)
    before = max(0, at - 1)
    text = (f"Induction appeared between step {result.steps[before]} and step {result.formed_at} (evaluated every "
            f"{result.steps[1] - result.steps[0]} steps, so no closer than that): the best head's score went from "
            f"{best[before]:.2f} to {best[at]:.2f} (formed = {THRESHOLD}; evenly spread attention scores "
            f"{result.uniform_score:.2f}), and the loss on the repeated half from {result.repeated_loss[before]:.2f} to "
            f"{result.repeated_loss[at]:.2f} nats/token while the first half stayed near {result.first_half_loss[at]:.2f} "
            f"(guessing among {vocab} letters: {chance:.2f}).")  # fmt: skip
    text += (f" At step {last}, layer {layer} head {head} scores {best[-1]:.2f} ± {final_se:.2f} (averaged over halves "
             f"of {halves_text(result.params['length'])} letters) and the repeated half costs {result.repeated_loss[-1]:.2f} nats/token.")  # fmt: skip
    if best[at] - THRESHOLD < CALL_RATIO * result.best_score_se[at]:
        text += (f" At the crossing the score is within {CALL_RATIO:g} standard errors (±{result.best_score_se[at]:.2f}) of the "
                 "mark, so the exact step is too close to call.")  # fmt: skip
    return text


def copying_text(result: InductionResult) -> str:
    """What the copying head (``copying_head``) does, measured: how much the repeated half needs
    it, and where it looks relative to the letter after the earlier copy."""
    layer, head = result.copying_head
    without, now = result.copying_ablated_loss, result.repeated_loss[-1]
    if without - now < CARRIES:
        return (f" No single head carries the copying: switching off the one that matters most (layer {layer} head "
                f"{head}) raises the repeated half's loss only from {now:.2f} to {without:.2f} nats/token, so it is "
                "spread over heads.")  # fmt: skip
    text = (f" Switching off layer {layer} head {head} alone raises the repeated half's loss from {now:.2f} to "
            f"{without:.2f} nats/token: that head does the copying.")  # fmt: skip
    shifts = result.copying_shifts
    further = max(range(len(shifts)), key=shifts.__getitem__)
    if further == 0:
        return text + (f" Its attention on the letter after the earlier copy is {shifts[0]:.2f}, spread too thin to "
                       "count as an induction head.")  # fmt: skip
    return text + (f" It puts {shifts[further]:.2f} of its attention {further} letter{'s' * (further > 1)} further on "
                   f"than the letter after the earlier copy ({shifts[0]:.2f} there) and reads the answer from what "
                   "layer 0 carried forward into that key from the letters before it: in-context copying by a "
                   "displaced route, which the induction score (Olsson et al.'s prefix matching: attention to the "
                   "letter after the earlier copy) does not count.")  # fmt: skip


def figures(result: InductionResult) -> list[go.Figure]:
    layer, head = result.best_head
    losses = go.Figure()
    losses.add_trace(go.Scatter(x=result.steps, y=result.first_half_loss, name="first half (unpredictable)",
                                mode="lines+markers", line=dict(color=PALETTE[0])))  # fmt: skip
    losses.add_trace(go.Scatter(x=result.steps, y=result.repeated_loss, name="repeated half",
                                mode="lines+markers", line=dict(color=PALETTE[1])))  # fmt: skip
    score = go.Figure()
    score.add_trace(go.Scatter(x=result.steps, y=result.best_scores, name="best head at each step", mode="lines+markers",
                               line=dict(color=PALETTE[2])))  # fmt: skip
    score.add_trace(go.Scatter(x=result.steps, y=[s[layer][head] for s in result.scores], mode="lines",
                               name=f"layer {layer} head {head} (best at the end)", line=dict(color=PALETTE[3], dash="dot")))  # fmt: skip
    score.add_hline(y=THRESHOLD, line_dash="dash", annotation_text="formed")
    score.add_hline(y=result.uniform_score, line_dash="dot", annotation_text="evenly spread")
    for fig in (losses, score):
        if result.formed_at is not None:
            fig.add_vline(x=result.formed_at, line_dash="dash", line_color="grey")
        fig.update_xaxes(title="training step")
    losses.update_yaxes(title="loss (nats/token)")
    score.update_yaxes(title="induction score", range=[0, 1.05])
    n = len(result.pattern_steps)
    grid = make_subplots(rows=1, cols=n, subplot_titles=[f"step {s}" for s in result.pattern_steps])
    for i, pattern in enumerate(result.patterns):
        grid.add_trace(go.Heatmap(z=pattern, zmin=0, zmax=1, colorscale="Viridis", showscale=i == n - 1,
                                  hovertemplate="query %{y}, key %{x}: %{z:.2f}<extra></extra>"), row=1, col=i + 1)  # fmt: skip
        grid.update_yaxes(autorange="reversed", row=1, col=i + 1)
    return [base_layout(losses, "loss on each half of a repeated sequence"),
            base_layout(score, "induction score over training"),
            base_layout(grid, f"layer {layer} head {head}'s attention on '{result.pattern_text}' (row = query)")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="induction-heads",
    title="Induction heads form",
    claim="Small transformers learn to copy from their context: a head that finds the previous occurrence of the current token and predicts what followed it appears suddenly during training (Olsson et al. 2022).",
    params_type=InductionParams,
    result_type=InductionResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(steps=20, evals=3, eval_sequences=4, batch_size=8, length=16, n_embd=32),
    keeps_model=True,
)  # fmt: skip
