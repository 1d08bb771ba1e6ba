"""Experiment 3, "positional encodings: learned vs sinusoidal": learned, sinusoidal and no
positions on a text where order matters."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from toygpt.certainty import compare_runs
from toygpt.inspection import position_similarity, position_vectors
from toygpt.lab.budget import training_seconds
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    ExperimentSpec,
    LabError,
    ProgressFn,
    TrainingSetup,
    check_whole,
    fmt,
    plain,
    rounded,
    shown_gap,
)
from toygpt.lab.variants import Artifacts, char_corpus, train_variant, with_artifacts
from toygpt.model import GPT
from toygpt.tokenizers import Tokenizer
from toygpt.viz import PALETTE, base_layout, loss_curves_figure

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
        check_whole("scored_lines", self.scored_lines, 1, 5000)

    def cost(self) -> tuple[float, str]:
        model = self.model_config()
        seconds = 3 * training_seconds(model, self.batch_size, model.block_size, self.steps)
        text = f"3 trainings (learned, sinusoidal, none) × {self.steps} steps of the {self.preset} preset on {self.corpus}"
        return seconds, text


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


def run(
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
            size[variant] = rounded(position_to_token_size(model))
        runs[variant] = train_variant(variant, model, corpus.data, config, reporter)
        if before is not None:
            similarity[variant] = {"before": plain(before), "after": plain(position_similarity(model))}
        overall, per_index, counts = order_accuracy(model, corpus.tokenizer, lines)
        accuracy[variant], by_index[variant] = rounded(overall), [rounded(a) for a in per_index]
    result = PositionResult(
        params=params.to_dict(), steps=params.steps, corpus=params.corpus,
        scored="answer" if any(s in line for line in lines for s in SEPARATORS) else "word",
        curves={k: r.rows for k, r in runs.items()},
        final_val={k: r.final_loss and rounded(r.final_loss) for k, r in runs.items()},
        accuracy=accuracy, accuracy_by_index=by_index, init_size_ratio=size, count_by_index=counts, similarity=similarity,
        elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return with_artifacts(result, runs["learned"], corpus, config)


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


def reading(result: PositionResult) -> str:
    what, index_name, _ = SCORED.get(result.scored, SCORED["word"])
    losses = ", ".join(f"{k} {fmt(v)}" for k, v in result.final_val.items())
    accuracy = ", ".join(f"{k} {100 * v:.1f}%" for k, v in result.accuracy.items())
    text = (f"After {result.steps} steps on {result.corpus}, the validation loss was {losses}.")
    ranked = sorted((v, k) for k, v in result.final_val.items() if v is not None)
    if len(ranked) >= 2:
        (low, first), (_, second) = ranked[0], ranked[1]
        text += (f" Lowest: {first}, {shown_gap(low, ranked[1][0]):.2f} below {second}."
                 + compare_runs(result.curves[first], result.curves[second], result.params.get("eval_batches")).sentence())  # fmt: skip
    text += f" Share of {what} predicted right: {accuracy}."
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


def figures(result: PositionResult) -> list[go.Figure]:
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
    figs = [curves, base_layout(accuracy, f"what each variant gets right, by position in {where}")]
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
    return base_layout(fig, "cosine similarity of position vectors", height=380 * len(names))


EXPERIMENT = ExperimentSpec(
    name="positions",
    title="Positional encodings",
    claim="Without position information attention cannot tell order; learned positions (GPT-2) and sinusoidal ones (the original Transformer) both fix that.",
    params_type=PositionParams,
    result_type=PositionResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(preset="nano", steps=20, batch_size=4, eval_batches=2, scored_lines=40),
)  # fmt: skip
