"""Experiment 9, "weight tying": the head that reads tokens out shares its matrix with the
embedding that writes them in (GPT-2, after Press & Wolf 2017, "Using the Output Embedding to
Improve Language Models", and Inan et al. 2017). Tied vs untied, same seed, data order and
steps; then, in the untied model, how alike each token's head row and embedding row became.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from toygpt.certainty import CALL_RATIO, compare_runs, standard_error
from toygpt.formatting import about, human_count
from toygpt.lab.budget import training_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import ExperimentSpec, ProgressFn, TrainingSetup, fmt, rounded
from toygpt.lab.variants import Artifacts, char_corpus, train_variant, with_artifacts
from toygpt.model import GPT, total_parameters
from toygpt.viz import PALETTE, base_layout, loss_curves_figure

VARIANTS = {"tied": True, "untied": False}


@dataclass(frozen=True)
class WeightTyingParams(TrainingSetup):
    """Tied vs untied head on the same model, data, seed and steps."""

    preset: str = "small"
    steps: int = 400

    def cost(self) -> tuple[float, str]:
        model = self.model_config()
        seconds = sum(training_seconds(model.replace(tie_embeddings=tied), self.batch_size, model.block_size, self.steps)
                      for tied in VARIANTS.values())  # fmt: skip
        text = (f"2 trainings (tied, untied head) × {self.steps} steps of the {self.preset} preset "
                f"(≈ {human_count(total_parameters(model))} parameters tied) on {self.corpus}")  # fmt: skip
        return seconds, text


@dataclass(frozen=True)
class WeightTyingResult:
    params: dict[str, Any]
    steps: int
    corpus: str
    vocab_size: int
    n_embd: int
    parameters: dict[str, int]  # variant → unique parameters
    curves: dict[str, list[dict[str, Any]]]
    final_val: dict[str, float | None]
    token_labels: list[str]  # one per vocabulary row
    matched_before: list[float]  # untied, at init: cosine(head row i, embedding row i) per token
    matched_after: list[float]  # untied, trained: the same
    unrelated_after: float  # untied, trained: mean cosine(head row i, embedding row j), i ≠ j
    budget_seconds: float
    elapsed: float
    experiment: str = "weight-tying"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def row_cosines(head: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every head row with every embedding row, (V, V): entry (i, j)
    compares token i's output direction with token j's input vector; the diagonal pairs a token
    with itself.

    >>> row_cosines(torch.eye(2), torch.tensor([[2.0, 0.0], [1.0, 1.0]])).round(decimals=3).tolist()
    [[1.0, 0.707], [0.0, 0.707]]
    """
    return F.normalize(head.float(), dim=1) @ F.normalize(embedding.float(), dim=1).T


def matched_and_unrelated(model: GPT) -> tuple[list[float], float]:
    """For an untied model: cosine of each token's own head and embedding rows, and the mean
    cosine over all mismatched pairs (the level two unrelated rows sit at)."""
    with torch.no_grad():
        cos = row_cosines(model.lm_head.weight, model.transformer.wte.weight)
    V = cos.shape[0]
    off = (cos.sum() - cos.diagonal().sum()) / max(V * V - V, 1)
    return [rounded(v) for v in cos.diagonal().tolist()], rounded(float(off))


def run(params: WeightTyingParams, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> WeightTyingResult:
    """Train the tied and the untied model; measure how alike the untied one's two matrices became."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, 2 * params.steps + 1)
    reporter.begin("loading the corpus", weight=1)
    corpus = char_corpus(params.corpus)
    config, runs, sizes = params.train_config(), {}, {}
    before: list[float] = []
    for label, tied in VARIANTS.items():
        reporter.begin(f"{label} head", weight=params.steps)
        model = GPT(params.model_config(corpus.tokenizer.vocab_size, tie_embeddings=tied), seed=params.seed)
        sizes[label] = model.num_parameters()
        if not tied:
            before, _ = matched_and_unrelated(model)
        runs[label] = train_variant(label, model, corpus.data, config, reporter)
    after, unrelated = matched_and_unrelated(runs["untied"].model)
    vocab = corpus.tokenizer.vocab_size
    result = WeightTyingResult(
        params=params.to_dict(), steps=params.steps, corpus=params.corpus, vocab_size=vocab,
        n_embd=runs["tied"].model.config.n_embd, parameters=sizes, curves={k: r.rows for k, r in runs.items()},
        final_val={k: r.final_loss and rounded(r.final_loss) for k, r in runs.items()},
        token_labels=[corpus.tokenizer.token_label(i) for i in range(vocab)],
        matched_before=before, matched_after=after, unrelated_after=unrelated,
        budget_seconds=rounded(params.budget().seconds), elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return with_artifacts(result, runs["tied"], corpus, config)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def reading(result: WeightTyingResult) -> str:
    tied, untied = result.parameters["tied"], result.parameters["untied"]
    saved = untied - tied
    text = (f"Tying saved {saved:,} parameters (the {result.vocab_size} × {result.n_embd} head): the tied model has "
            f"{tied:,}, the untied {untied:,} ({100 * saved / untied:.1f}% fewer).")  # fmt: skip
    a, b = result.final_val["tied"], result.final_val["untied"]
    if a is not None and b is not None:
        gap = round(b, 2) - round(a, 2)
        better = "the tied model" if gap > 0 else "the untied model" if gap < 0 else "neither"
        text += (f" After {result.steps} steps on {result.corpus} the validation loss was tied {fmt(a)}, untied {fmt(b)}: "
                 f"{better} was lower by {abs(gap):.2f}." + compare_runs(result.curves["tied"], result.curves["untied"]).sentence())  # fmt: skip
    after, before = result.matched_after, result.matched_before
    se = standard_error(after)
    lead = mean(after) - result.unrelated_after
    text += (f" In the untied model each token's head row and embedding row began unrelated (mean cosine "
             f"{mean(before):.3f}) and ended at {mean(after):.3f}, against {result.unrelated_after:.3f} for a "
             f"token's head row beside another token's embedding row")  # fmt: skip
    margin = CALL_RATIO * (se or 0.0)
    if se is not None and abs(lead) > margin:
        text += (f": training made the two matrices {'alike' if lead > 0 else 'opposed'} token by token "
                 f"(a lead of {lead:.3f}, beyond ±{margin:.3f}, {CALL_RATIO:g} standard errors over {len(after)} tokens)"
                 + (", the likeness tying imposes outright." if lead > 0 else "."))  # fmt: skip
    else:
        text += (f": too close to call at this budget (a lead of {lead:.3f}, within ±{margin:.3f}, {CALL_RATIO:g} "
                 f"standard errors over {len(after)} tokens).")  # fmt: skip
    return text + f" It took {result.elapsed:.0f} s (the budget said {about(result.budget_seconds)})."


def figures(result: WeightTyingResult) -> list[go.Figure]:
    curves = loss_curves_figure(result.curves)
    curves.update_layout(title=f"tied vs untied head: loss on {result.corpus}")
    order = sorted(range(len(result.matched_after)), key=lambda i: -result.matched_after[i])
    labels = [result.token_labels[i] for i in order]
    cos = go.Figure()
    cos.add_trace(go.Bar(x=labels, y=[result.matched_after[i] for i in order], name="after training",
                         marker_color=PALETTE[1]))  # fmt: skip
    cos.add_trace(go.Scatter(x=labels, y=[result.matched_before[i] for i in order], name="at initialisation",
                             mode="markers", marker=dict(color=PALETTE[0])))  # fmt: skip
    cos.add_hline(y=result.unrelated_after, line_dash="dash",
                  annotation_text=f"unrelated pairs after training: {result.unrelated_after:.3f}")  # fmt: skip
    cos.update_xaxes(title="token (sorted by similarity after training)", type="category")
    cos.update_yaxes(title="cosine(head row, embedding row)")
    sizes = go.Figure(go.Bar(x=list(result.parameters), y=list(result.parameters.values()),
                             marker_color=[PALETTE[0], PALETTE[1]], text=[f"{v:,}" for v in result.parameters.values()]))  # fmt: skip
    sizes.update_yaxes(title="parameters")
    return [curves, base_layout(cos, "untied model: each token's head row vs its embedding row"),
            base_layout(sizes, "parameters")]  # fmt: skip


EXPERIMENT = ExperimentSpec(
    name="weight-tying",
    title="Weight tying",
    claim="GPT-2 uses one matrix both to embed tokens and to score the next token (weight tying): fewer parameters, and the two jobs want similar vectors anyway.",
    params_type=WeightTyingParams,
    result_type=WeightTyingResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", steps=10, batch_size=4, eval_batches=2),
)  # fmt: skip
