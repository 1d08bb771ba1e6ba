"""Experiment 5, "a model can learn from one example": k gradient steps on one sentence, on a
copy of a trained run's model, and what that costs on the validation text."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from toygpt import data as corpora
from toygpt.lab.budget import step_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    ExperimentParams,
    ExperimentSpec,
    LabError,
    ProgressFn,
    check_number,
    check_whole,
    rounded,
)
from toygpt.lab.variants import Artifacts, load_source, source_config
from toygpt.model import GPT
from toygpt.runs import DEMO_RUN, Run
from toygpt.sample import generate_text
from toygpt.tokenizers import Tokenizer, TokenizerError
from toygpt.train import TrainConfig, estimate_loss
from toygpt.viz import PALETTE, base_layout


@dataclass(frozen=True)
class SingleExampleParams(ExperimentParams):
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
        check_whole("steps", self.steps, 1, 500)
        check_number("learning_rate", self.learning_rate, 1e-7, 1.0, "; try 1e-3")
        if self.optimizer not in ("adam", "sgd"):
            raise LabError(f"optimizer={self.optimizer!r}; choose 'adam' or 'sgd'")
        if not isinstance(self.sample_prompt, str):
            raise LabError("sample_prompt must be text (may be empty)")
        check_whole("sample_tokens", self.sample_tokens, 1, 1000)
        check_whole("eval_batches", self.eval_batches, 1, 200)
        check_whole("seed", self.seed, 0, 2**31 - 1)

    def cost(self) -> tuple[float, str]:
        config = source_config(self.run_id)
        step = step_seconds(config, 1, config.block_size)
        evals = 2 * self.eval_batches * step_seconds(config, 12, config.block_size) / 3  # forward only: 1/3
        seconds = self.steps * step + evals + 2 * self.sample_tokens * SAMPLE_TOKEN_S
        text = (f"{self.steps} gradient steps on one sentence, 2 × {self.eval_batches} validation batches and "
                f"2 samples of {self.sample_tokens} tokens, on a copy of {self.run_id}")  # fmt: skip
        return seconds, text


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


@torch.no_grad()
def token_probabilities(model: GPT, ids: Sequence[int]) -> list[float]:
    """p(token i | tokens before it) for i = 1..n−1 (teacher-forced, one forward pass)."""
    idx = torch.tensor([list(ids)])
    probs = F.softmax(model.eval()(idx[:, :-1])[0][0], dim=-1)  # (n−1, V)
    return [rounded(p) for p in probs.gather(-1, idx[0, 1:, None])[:, 0].tolist()]


def _val_data(run: Run, tokenizer: Tokenizer) -> tuple[corpora.TokenData | None, str]:
    try:
        return corpora.prepare(run.corpus_text(), tokenizer), ""
    except (ValueError, OSError) as exc:  # CorpusError/TokenizerError are ValueErrors
        return None, f"no validation loss: the corpus of run {run.id} is not available ({exc})"


def _val_loss(model: GPT, data: corpora.TokenData | None, params: SingleExampleParams) -> float | None:
    if data is None:
        return None
    block = min(model.config.block_size, data.max_block_size)
    return rounded(estimate_loss(model, data, 12, block, params.eval_batches, params.seed, splits=("val",))["val"])


def _example_ids(params: SingleExampleParams, tokenizer: Tokenizer, block_size: int) -> list[int]:
    try:
        ids = tokenizer.encode(params.sentence)
    except TokenizerError as exc:
        raise LabError(f"this model's tokenizer cannot encode the sentence: {exc}") from None
    if len(ids) < 2:
        raise LabError("the sentence is one token long; it needs two at least (one to read, one to predict)")
    return ids[-(block_size + 1) :]  # what learn_from_example uses, too


def _example_window(example: str | Sequence[int] | torch.Tensor, tokenizer: Any | None, block_size: int) -> torch.Tensor:
    if isinstance(example, str):
        if tokenizer is None:
            raise ValueError("pass tokenizer= to learn from text (or pass the token ids instead)")
        ids = tokenizer.encode(example)
    else:
        ids = [int(i) for i in (example.tolist() if isinstance(example, torch.Tensor) else example)]
    if len(ids) < 2:
        raise ValueError(f"the example has {len(ids)} token(s); it needs at least 2 (one to read, one to predict)")
    return torch.tensor(ids[-(block_size + 1) :], dtype=torch.long).unsqueeze(0)  # (1, ≤ block_size + 1)


def learn_from_example(
    model: GPT,
    example: str | Sequence[int] | torch.Tensor,
    steps: int = 10,
    lr: float = 1e-3,
    *,
    tokenizer: Any | None = None,
    optimizer: str = "adam",
) -> dict[str, Any]:
    """Take ``steps`` gradient steps on one example; return its loss before and after.

    **Modifies ``model`` in place** — pass a copy (``copy.deepcopy(model)``) of a model you want
    to keep, and never a cached/shared one. The example is text (with ``tokenizer``) or token
    ids; only its last ``block_size + 1`` tokens are used. Dropout is off (eval mode), so the
    result is deterministic. ``optimizer``: "adam" (what training uses) or "sgd" (the textbook
    rule w ← w − lr·∂loss/∂w).

    Returns ``{"loss_before", "loss_after", "losses": [loss before each step, ..., after],
    "tokens": n}``.
    """
    check_whole("steps", steps, 1, 10**9)
    check_number("lr", lr, 1e-12, 100.0)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer={optimizer!r}; choose 'adam' or 'sgd'")
    device = next(model.parameters()).device
    ids = _example_window(example, tokenizer, model.config.block_size).to(device)
    x, y = ids[:, :-1], ids[:, 1:]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(steps):
        _, loss = model(x, y)
        losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(model(x, y)[1]))
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {"loss_before": losses[0], "loss_after": losses[-1], "losses": losses, "tokens": int(ids.shape[1])}


def run(
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
        probs_before=before[0], probs_after=after[0], example_losses=[rounded(x) for x in learned["losses"]],
        val_before=before[1], val_after=after[1], val_note=note, samples_before=before[2], samples_after=after[2],
        elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    config = TrainConfig(max_steps=params.steps, learning_rate=params.learning_rate, warmup_steps=0, seed=params.seed)
    info = run.info()
    artifacts = Artifacts(model, tokenizer, str(info.get("corpus", "?")), str(info.get("tokenizer", "?")), config, [], None, run.id)
    return replace(result, artifacts=artifacts)


def _sample(model: GPT, tokenizer: Tokenizer, params: SingleExampleParams) -> str:
    try:
        return generate_text(model, tokenizer, params.sample_prompt, params.sample_tokens, seed=params.seed).text
    except TokenizerError as exc:
        raise LabError(f"the sample prompt cannot be encoded by this model's tokenizer: {exc}") from None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def reading(result: SingleExampleResult) -> str:
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


def figures(result: SingleExampleResult) -> list[go.Figure]:
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
    return [base_layout(probs, "the sentence, token by token: probability before and after"),
            base_layout(steps, "what one example teaches (its loss) and costs (validation loss)")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="single-example",
    title="Learning from a single example",
    claim="A model can learn from a single data point rather than a batch — and what it learns from one example costs something elsewhere.",
    params_type=SingleExampleParams,
    result_type=SingleExampleResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(steps=3, sample_tokens=20, eval_batches=2),
    keeps_model=True,
)  # fmt: skip
