"""What the explorer's "Interventions" view computes: head ablation on a chosen text, activation
patching of a clean and a corrupted prompt, induction scores; each with its figures and a
reading built from the numbers (and how sure it is). The interventions themselves are
``toygpt.interventions``; this module picks the inputs a page can offer and words the result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import torch

from toygpt.certainty import CALL_RATIO, standard_error
from toygpt.interventions import (
    HeadAblation,
    InductionScores,
    Patching,
    ablate_heads,
    ablated_token_losses,
    uniform_induction_score,
)
from toygpt.model import GPT
from toygpt.viz import PALETTE, SIMILARITY_SCALE, base_layout

ABLATION_TOKENS = 128  # the text is cut to this many predictions: one pass per head (GPT-2 has 144)


def ablation_window(ids: Sequence[int], block_size: int, max_tokens: int = ABLATION_TOKENS) -> torch.Tensor:
    """The first ``min(block_size, max_tokens) + 1`` tokens of ``ids`` as one window (1, L + 1):
    L predictions, each scored against the next token. ValueError for fewer than 2 tokens."""
    if len(ids) < 2:
        raise ValueError("the text needs at least two tokens: one to read and one to predict")
    return torch.tensor([list(ids[: min(block_size, max_tokens) + 1])])


def per_token_error(changes: torch.Tensor) -> float | None:
    """The standard error of the mean of per-token ``changes`` (``toygpt.certainty``), None for one."""
    return standard_error(changes.double().tolist())


def sureness(change: float, se: float | None, unit: str = "nats/token") -> str:
    """How sure a mean change is, from its standard error: clear beyond ``CALL_RATIO`` of them
    (the rule every reading here and in the lab uses), else too close to call."""
    if not se:
        return ("measured on a single token, so its noise cannot be judged" if se is None else
                "the same change on every token, so there is no noise to weigh it against")  # fmt: skip
    ratio = abs(change) / se
    if ratio < CALL_RATIO:
        return (f"too close to call: within {CALL_RATIO:g} standard errors of the per-token changes "
                f"(±{se:.3f} {unit})")  # fmt: skip
    return f"clear: {ratio:.1f} standard errors of the per-token changes (±{se:.3f} {unit})"


@dataclass(frozen=True)
class AblationView:
    """Head ablation on one window, and the per-token change of one chosen head."""

    ablation: HeadAblation
    layer: int
    head: int
    token_change: torch.Tensor  # (L,) ablated − base loss of each prediction, nats
    top_change: torch.Tensor  # (L,) the same for the head whose ablation cost most

    @property
    def base(self) -> torch.Tensor:
        return self.ablation.base_losses[0]


def ablation_view(model: GPT, window: torch.Tensor, method: str, head: tuple[int, int] | None = None,
                  ablation: HeadAblation | None = None) -> AblationView:  # fmt: skip
    """Ablate every head on ``window`` (1, L + 1) (or reuse ``ablation`` of that window); the
    per-token change of ``head`` (default: the head whose ablation raised the loss most)."""
    ablation = ablate_heads(model, window, method) if ablation is None else ablation
    top = ablation.top_heads(1)[0][:2]
    layer, h = head if head is not None else top

    def change(layer: int, head: int) -> torch.Tensor:
        return ablated_token_losses(model, window, layer, head, method)[0] - ablation.base_losses[0]

    chosen = change(layer, h)
    return AblationView(ablation, layer, h, chosen, chosen if (layer, h) == top else change(*top))


def moved_tokens(view: AblationView, labels: Sequence[str], k: int = 8) -> list[dict[str, object]]:
    """The ``k`` predictions whose loss moved most (either way) when the chosen head was ablated:
    position, the token read, the token predicted, loss before and after, change."""
    order = view.token_change.abs().argsort(descending=True)[:k]
    rows = []
    for i in order.tolist():
        before = float(view.base[i])
        rows.append({"position": i, "reads": labels[i], "predicts": labels[i + 1], "loss before": round(before, 3),
                     "loss ablated": round(before + float(view.token_change[i]), 3),
                     "change": round(float(view.token_change[i]), 3)})  # fmt: skip
    return rows


def ablation_reading(view: AblationView) -> str:
    """The head whose ablation cost most, its size against the text's own noise, and the chosen head."""
    ablation = view.ablation
    n = ablation.base_losses.numel()
    layer, head, change = ablation.top_heads(1)[0]
    text = (f"On these {n} predictions (loss {ablation.base_loss:.3f} nats/token untouched), {ablation.method}-"
            f"ablating layer {layer} head {head} raised the loss most: by {change:+.3f} nats/token — "
            f"{sureness(change, per_token_error(view.top_change))}.")  # fmt: skip
    harmless = int((ablation.loss_change.abs() < 0.005).sum())
    total = ablation.loss_change.numel()
    text += f" {harmless} of {total} heads move it by less than 0.005."
    mean = float(view.token_change.mean())
    text += (f" Layer {view.layer} head {view.head} (chosen below): {mean:+.3f} nats/token, "
             f"{sureness(mean, per_token_error(view.token_change))}.")  # fmt: skip
    return text


def head_heatmap_figure(values: torch.Tensor, title: str, colour_title: str) -> go.Figure:
    """A layer × head heatmap (rows = layers from 0 at the top), diverging around 0."""
    z = values.tolist()
    n_layer, n_head = values.shape
    bound = max(float(values.abs().max()), 1e-9)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"head {h}" for h in range(n_head)], y=[f"layer {i}" for i in range(n_layer)],
        colorscale=SIMILARITY_SCALE, reversescale=True, zmin=-bound, zmax=bound,
        colorbar=dict(title=colour_title), text=[[f"{v:+.3f}" for v in row] for row in z], texttemplate="%{text}",
        hovertemplate="%{y}, %{x}: %{z:+.4f}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return base_layout(fig, title, height=120 + 40 * n_layer)


def ablation_figure(view: AblationView) -> go.Figure:
    a = view.ablation
    return head_heatmap_figure(a.loss_change, f"loss change when each head is {a.method}-ablated "
                               f"({a.base_losses.numel()} predictions)", "Δ loss (nats)")  # fmt: skip


def token_change_figure(view: AblationView, labels: Sequence[str]) -> go.Figure:
    """One bar per prediction: loss with the chosen head ablated minus without (x = the token read)."""
    change = view.token_change.tolist()
    colours = [PALETTE[1] if c > 0 else PALETTE[0] for c in change]
    fig = go.Figure(go.Bar(x=list(range(len(change))), y=change, marker_color=colours,
                           customdata=[[labels[i], labels[i + 1]] for i in range(len(change))],
                           hovertemplate="reads %{customdata[0]} → predicts %{customdata[1]}: %{y:+.3f}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(title="position (the token read)", tickmode="array", tickvals=list(range(len(change))),
                     ticktext=list(labels[: len(change)]))  # fmt: skip
    fig.update_yaxes(title="Δ loss (nats), red = worse without the head")
    return base_layout(fig, f"layer {view.layer} head {view.head}: each prediction's loss change")


# --------------------------------------------------------------------------------------------
# Activation patching
# --------------------------------------------------------------------------------------------


def stream_label(name: str) -> str:
    """``blocks.0.hook_resid_pre`` → "embedding"; the output of block i → "after block i"."""
    if name == "blocks.0.hook_resid_pre":
        return "embedding"
    return f"after block {name.split('.')[1]}"


def residual_patching_figure(patching: Patching, labels: Sequence[str]) -> go.Figure:
    z = patching.residual.tolist()
    rows = [stream_label(n) for n in patching.residual_names]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(labels))), y=rows, zmin=0.0, zmax=1.0, colorscale="Viridis",
        colorbar=dict(title="restored"), text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
        hovertemplate="%{y}, position %{x}: %{z:.3f} restored<extra></extra>",
    ))  # fmt: skip
    fig.update_xaxes(title="position (corrupted prompt's token)", tickmode="array", tickvals=list(range(len(labels))),
                     ticktext=list(labels))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return base_layout(fig, "residual stream patched from the clean run at one (layer, position)",
                       height=120 + 40 * len(rows))  # fmt: skip


def head_patching_figure(patching: Patching) -> go.Figure:
    fig = head_heatmap_figure(patching.heads, "one head's output patched from the clean run (every position)",
                              "restored")  # fmt: skip
    fig.update_traces(zmin=0.0, zmax=1.0, colorscale="Viridis", reversescale=False, zmid=None)
    return fig


def patching_reading(patching: Patching, labels: Sequence[str], clean_label: str, corrupted_label: str) -> str:
    """Where patching restores the clean prediction; exact numbers of one pair of prompts."""
    text = (f"The clean prompt prefers {clean_label} over {corrupted_label} by {patching.clean_diff:.2f} logits, "
            f"the corrupted one by {patching.corrupted_diff:.2f}.")  # fmt: skip
    T = patching.residual.shape[1]
    for row, name in ((0, patching.residual_names[0]), (len(patching.residual_names) - 1, patching.residual_names[-1])):
        best = int(patching.residual[row].argmax())
        text += (f" Patching the stream {stream_label(name)} restores most at position {best} ({labels[best]}): "
                 f"{float(patching.residual[row, best]):.2f}.")  # fmt: skip
    flat = int(patching.heads.argmax())
    layer, head = divmod(flat, patching.heads.shape[1])
    best_head = float(patching.heads[layer, head])
    if best_head < 0.1:
        text += f" No single head carries it: the best one, layer {layer} head {head}, restores {best_head:.2f}."
    else:
        text += f" Of single heads, layer {layer} head {head} restores most: {best_head:.2f}."
    return text + (f" These are exact for this pair of {T}-token prompts (no sampling noise); another pair can "
                   "route the information differently.")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Induction heads
# --------------------------------------------------------------------------------------------


def induction_figure(scores: InductionScores) -> go.Figure:
    fig = head_heatmap_figure(scores.scores, f"induction score of each head ({scores.half} random tokens, repeated)",
                              "score")  # fmt: skip
    fig.update_traces(zmin=0.0, zmax=1.0, colorscale="Viridis", reversescale=False)
    return fig


def induction_loss_figure(scores: InductionScores) -> go.Figure:
    losses = scores.loss_by_position.tolist()
    fig = go.Figure(go.Scatter(x=list(range(len(losses))), y=losses, mode="lines+markers", line=dict(color=PALETTE[2])))
    fig.add_vline(x=scores.half - 0.5, line_dash="dash", annotation_text="repeat starts")
    fig.update_xaxes(title="position (predicting the next token)")
    fig.update_yaxes(title="loss (nats/token), mean over sequences")
    return base_layout(fig, "loss by position: does the repeat get easier?")


def induction_reading(scores: InductionScores) -> str:
    layer, head, best = scores.best_head
    uniform = uniform_induction_score(scores.half)
    n = scores.sequence_drops.numel()
    text = (f"On {n} sequences of {scores.half} random tokens repeated once, the best induction head is layer "
            f"{layer} head {head}, scoring {best:.2f} (1 = all its attention on the token after the previous "
            f"occurrence; attention spread evenly would score {uniform:.2f}).")  # fmt: skip
    drop, se = scores.loss_drop, per_token_error(scores.sequence_drops)
    text += (f" The loss is {scores.first_half_loss:.2f} nats/token on the first half and {scores.repeated_loss:.2f} "
             f"on the repeated half: a drop of {drop:.2f}, ")  # fmt: skip
    if not se or abs(drop) < CALL_RATIO * se:
        return text + f"too close to call (±{se or 0.0:.2f} over the {n} sequences)."
    verdict = "the model copies from context" if drop > 0 else "the repeat is harder, not easier"
    return text + f"clear (±{se:.2f} over the {n} sequences): {verdict}."
