"""Plotly figures of the results of ``toygpt.sample`` and ``toygpt.inspection``.

Every ``*_figure`` function takes a result and returns a ``plotly.graph_objects.Figure``, so it
works in the dashboard (``st.plotly_chart(fig, width="stretch")``) and in a notebook alike.
``surprisal_html`` returns an HTML string with the user's text escaped.

Readable in light and dark themes: backgrounds are transparent (the page's theme shows through),
text colours are left to the theme, and colour scales are perceptually uniform (Viridis for
probabilities, a diverging red-blue for similarities, where 0 sits in the middle).

Token labels can repeat ("e" appears many times), and plotly merges repeated category names on
an axis, so positions are plotted as numbers 0..T-1 with the labels as tick text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from toygpt.inspection import EmbeddingPCA, LogitLens, ResidualStats, Surprisal, TraceStep
from toygpt.model import causal_mask
from toygpt.sample import GenerationStep, SamplingStages

PROBABILITY_SCALE = "Viridis"
SIMILARITY_SCALE = "RdBu"
BAR_COLOUR = "#636EFA"
CHOSEN_COLOUR = "#EF553B"
# One colour per run or variant, in order (plotly's default sequence), shared by every chart.
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]
MAX_TICKS = 40  # more tick labels than this overlap; show every n-th
MAX_CELL_TEXT = 1500  # heatmap cells with text written in them, at most


def token_labels(ids: Sequence[int], tokenizer: Any | None = None) -> list[str]:
    """Printable labels for ``ids``: ``tokenizer.token_label`` when given, else the ids."""
    if tokenizer is None:
        return [str(int(i)) for i in ids]
    return [tokenizer.token_label(int(i)) for i in ids]


def base_layout(fig: go.Figure, title: str, height: int | None = None) -> go.Figure:
    """The layout every figure here shares: a title, a transparent background and tight margins."""
    fig.update_layout(
        title=title,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        margin=dict(l=10, r=10, t=60, b=10),
        height=height,
    )
    return fig


def _ticks(labels: Sequence[str]) -> dict[str, Any]:
    """Tick values/texts for positions 0..T-1, thinned so at most ``MAX_TICKS`` show."""
    every = max(1, math.ceil(len(labels) / MAX_TICKS))
    positions = list(range(0, len(labels), every))
    return dict(tickmode="array", tickvals=positions, ticktext=[labels[i] for i in positions])


def log_ticks(values: Sequence[float]) -> dict[str, Any]:
    """Tick settings for a log axis over ``values``: labels at 1, 2, 5 × 10^k (only 10^k when
    the data spans more than 2 decades), written plainly. Plotly's own log ticks label every
    minor step once a range is under a decade or two ("5 4 3 2 100 9 8 7 6 5"), which reads as
    noise.

    >>> log_ticks([0.3, 4.0])["ticktext"]
    ['0.2', '0.5', '1', '2', '5']
    """
    positive = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v) and v > 0]
    if not positive:
        return {}
    low, high = min(positive), max(positive)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1,) if math.log10(high / low) > 2 else (1, 2, 5)
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in steps]
    if sum(low <= t <= high for t in ticks) < 2:  # a narrow range: its ends and middle, rounded
        shown = sorted({float(f"{v:.2g}") for v in (low, math.sqrt(low * high), high)})
    else:
        shown = [t for t in ticks if low / 2 <= t <= high * 2]
    return dict(tickmode="array", tickvals=shown, ticktext=[_plain_number(t) for t in shown])


def _plain_number(value: float) -> str:
    """``50000`` → ``"50,000"``; ``0.002`` → ``"0.002"``; ``1e-05`` stays (tiny numbers read best so)."""
    return f"{value:,.0f}" if value >= 1000 and value == round(value) else f"{value:.3g}"


def tidy_log_axes(fig: go.Figure) -> go.Figure:
    """Give every log-scale axis of ``fig`` the ticks of :func:`log_ticks` over the data drawn
    on it (for figures built elsewhere, e.g. ``toygpt.lab``'s); returns ``fig``."""
    layout = fig.layout
    for name in [key for key in layout.to_plotly_json() if key.startswith(("xaxis", "yaxis"))]:
        axis = layout[name]
        if axis.type != "log":
            continue
        letter, suffix = name[0], name[5:]  # "yaxis2" → "y", "2"
        values: list[float] = []
        for trace in fig.data:
            if (getattr(trace, f"{letter}axis", None) or letter) == f"{letter}{suffix}":
                values += [v for v in (getattr(trace, letter, None) or []) if v is not None]
        axis.update(log_ticks(values))
    return fig


def _as_list(values: Any) -> list[float]:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().tolist()
    return [float(v) for v in values]


def _hide_future(single: torch.Tensor) -> list[list[float | None]]:
    """A (T, T) attention map as nested lists with the masked future left blank (None), so
    "hidden by the causal mask" looks different from "allowed, but given weight 0"."""
    T = single.shape[-1]
    blanked = single.detach().float().cpu().masked_fill(~causal_mask(T), float("nan"))
    return [[None if math.isnan(v) else v for v in row] for row in blanked.tolist()]


def _labels_or_positions(labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} tokens; pass one label per token")
    return list(labels)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def attention_heatmap_figure(
    maps: torch.Tensor, labels: Sequence[str] | None = None, layer: int = 0, head: int = 0
) -> go.Figure:
    """One head's attention: rows are queries (the token reading), columns keys (read from).

    ``maps`` is (n_layer, n_head, T, T) from ``attention_maps`` or a single (T, T) map.
    """
    single = maps if maps.dim() == 2 else maps[layer, head]
    T = single.shape[-1]
    names = _labels_or_positions(labels, T)
    fig = go.Figure(
        go.Heatmap(
            z=_hide_future(single),
            colorscale=PROBABILITY_SCALE,
            zmin=0,
            zmax=1,
            hoverongaps=False,
            customdata=[[(names[i], names[j]) for j in range(T)] for i in range(T)],
            hovertemplate="query %{y} (%{customdata[0]}) → key %{x} (%{customdata[1]})<br>"
            "weight %{z:.3f}<extra></extra>",
            colorbar=dict(title="weight"),
        )
    )
    # The key axis's labels sit on top, under the title: its name goes into the title's second
    # line (an axis title up there collided with the title), and the margin makes room for both.
    fig.update_xaxes(**_ticks(names), side="top", tickangle=0 if T <= 24 else -90)
    fig.update_yaxes(title="query (attending)", **_ticks(names), autorange="reversed")
    title = "attention" if maps.dim() == 2 else f"attention: layer {layer}, head {head}"
    fig = base_layout(fig, f"{title}<br><sup>columns: the key attended to · rows: the query attending</sup>",
                      height=max(350, min(900, 40 + 18 * T)))
    return fig.update_layout(margin=dict(t=110 if T <= 24 else 150))


def attention_grid_figure(
    maps: torch.Tensor, labels: Sequence[str] | None = None, max_positions: int = 64
) -> go.Figure:
    """Every head of every layer at once: a grid with layers as rows and heads as columns.

    Long inputs show their last ``max_positions`` positions (said in the title), so a
    GPT-2-sized grid stays drawable.
    """
    n_layer, n_head, T, _ = maps.shape
    keep = min(T, max_positions)
    maps = maps[:, :, T - keep :, T - keep :]
    names = _labels_or_positions(labels, T)[T - keep :]
    titles = [f"L{layer} H{head}" for layer in range(n_layer) for head in range(n_head)]
    spacing = min(0.12, 0.3 / n_layer)  # room for each row's panel titles
    fig = make_subplots(n_layer, n_head, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=spacing)
    for layer in range(n_layer):
        for head in range(n_head):
            fig.add_trace(
                go.Heatmap(
                    z=_hide_future(maps[layer, head]), hoverongaps=False,
                    colorscale=PROBABILITY_SCALE, zmin=0, zmax=1, showscale=layer == head == 0,
                    hovertemplate=f"L{layer} H{head}<br>query %{{y}} → key %{{x}}<br>%{{z:.3f}}<extra></extra>",
                ),
                row=layer + 1, col=head + 1,
            )  # fmt: skip
    show_ticks = keep <= 16 and n_head <= 4
    fig.update_xaxes(showticklabels=show_ticks, **_ticks(names))
    fig.update_yaxes(showticklabels=show_ticks, autorange="reversed", **_ticks(names))
    note = f" (last {keep} of {T} positions)" if keep < T else ""
    return base_layout(fig, f"attention of every head{note}", height=max(320, 200 * n_layer + 60))


def attention_distance_figure(distance: torch.Tensor) -> go.Figure:
    """Mean attention distance (n_layer, n_head): how many tokens back each head looks."""
    n_layer, n_head = distance.shape
    fig = go.Figure(
        go.Heatmap(
            z=distance.detach().float().cpu().tolist(),
            x=list(range(n_head)),
            y=list(range(n_layer)),
            colorscale=PROBABILITY_SCALE,
            texttemplate="%{z:.1f}",
            hovertemplate="layer %{y}, head %{x}<br>looks %{z:.2f} tokens back<extra></extra>",
            colorbar=dict(title="tokens back"),
        )
    )
    fig.update_xaxes(title="head", dtick=1)
    fig.update_yaxes(title="layer", dtick=1, autorange="reversed")
    return base_layout(fig, "how far back each head looks (mean attention distance)")


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _stage_tokens(stages: SamplingStages, chosen: int | None, top_n: int) -> list[int]:
    """The ``top_n`` most likely tokens of the model, plus ``chosen`` if it is not among them."""
    order = torch.argsort(stages.model_probs, descending=True, stable=True)[:top_n].tolist()
    if chosen is not None and chosen not in order:
        order.append(int(chosen))
    return order


def sampling_stages_figure(
    stages: SamplingStages,
    labels: Sequence[str] | None = None,
    chosen: int | None = None,
    top_n: int = 15,
) -> go.Figure:
    """Probability bars after each stage (model, temperature, top-k, top-p) for the model's
    ``top_n`` favourite tokens; the ``chosen`` token is drawn in a second colour.

    ``labels`` has one label per vocabulary id (e.g. ``token_labels(range(V), tokenizer)``).
    """
    tokens = _stage_tokens(stages, chosen, top_n)
    names = [labels[t] if labels is not None else str(t) for t in tokens]
    stage_probs = stages.stage_probs()
    fig = make_subplots(len(stage_probs), 1, shared_xaxes=True, subplot_titles=list(stage_probs), vertical_spacing=0.08)
    colours = [CHOSEN_COLOUR if t == chosen else BAR_COLOUR for t in tokens]
    for row, probs in enumerate(stage_probs.values(), start=1):
        values = [float(probs[t]) for t in tokens]
        fig.add_trace(
            go.Bar(x=list(range(len(tokens))), y=values, marker_color=colours, customdata=names,
                   hovertemplate="%{customdata}: %{y:.4f}<extra></extra>", showlegend=False),
            row=row, col=1,
        )  # fmt: skip
    fig.update_xaxes(**_ticks(names))
    fig.update_yaxes(range=[0, 1], title="p")
    cut = f"top-k kept {stages.top_k_kept}, top-p cut after rank {stages.top_p_cutoff_rank}"
    mark = f"; chosen: {names[tokens.index(chosen)]!s}" if chosen is not None else ""
    return base_layout(fig, f"sampling, stage by stage ({cut}{mark})", height=170 * len(stage_probs) + 80)


# --------------------------------------------------------------------------------------------
# Logit lens, surprisal, residual stream, forward trace
# --------------------------------------------------------------------------------------------


def logit_lens_figure(lens: LogitLens, labels: Sequence[str] | None = None, vocab_labels: Sequence[str] | None = None) -> go.Figure:
    """Layers × positions: each cell shows the layer's favourite next token (its label) and is
    coloured by that token's probability. ``labels`` label the input tokens (one per position);
    ``vocab_labels`` label predicted ids (one per vocabulary id; default: the ids)."""
    n_points, T, _ = lens.top_ids.shape
    names = _labels_or_positions(labels, T)
    top = lens.top_ids[..., 0].tolist()
    text = [[vocab_labels[i] if vocab_labels is not None else str(i) for i in row] for row in top]
    hover = [[_top_k_hover(lens, layer, pos, vocab_labels) for pos in range(T)] for layer in range(n_points)]
    fig = go.Figure(
        go.Heatmap(
            z=lens.top_probs[..., 0].detach().float().cpu().tolist(),
            text=text, customdata=hover,
            texttemplate="%{text}" if n_points * T <= MAX_CELL_TEXT else None,
            colorscale=PROBABILITY_SCALE, zmin=0, zmax=1, colorbar=dict(title="p(top)"),
            hovertemplate="%{customdata}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title="input position (predicting the token after it)", **_ticks(names))
    # Read top to bottom in the model's order: the embedding on top, the last block at the
    # bottom (that row, through ln_f and lm_head, *is* the model's prediction).
    fig.update_yaxes(tickmode="array", tickvals=list(range(n_points)), ticktext=lens.layer_names,
                     autorange="reversed", title="read after (top: first, bottom: last)")
    return base_layout(fig, "logit lens: each layer's guess for the next token", height=max(300, 45 * n_points + 120))


def _top_k_hover(lens: LogitLens, layer: int, pos: int, vocab_labels: Sequence[str] | None) -> str:
    pairs = zip(lens.top_ids[layer, pos].tolist(), lens.top_probs[layer, pos].tolist(), strict=True)
    lines = [f"{html.escape(vocab_labels[i] if vocab_labels is not None else str(i))}: {p:.3f}" for i, p in pairs]
    return f"{lens.layer_names[layer]}, position {pos}<br>" + "<br>".join(lines)


def surprisal_html(pieces: Sequence[str], surprisal: Surprisal | Sequence[float] | torch.Tensor, max_nats: float | None = None) -> str:
    """The text with each token's background shaded by its surprisal (darker = harder), as HTML.

    ``pieces`` are the tokens' own text (``tokenizer.decode([id])`` for each id), so joined they
    read as the original text; every piece is HTML-escaped, so user text cannot inject markup.
    ``max_nats`` is the surprisal of full colour (default: the largest in the text).
    """
    values = _as_list(surprisal.nats if isinstance(surprisal, Surprisal) else surprisal)
    if len(values) != len(pieces):
        raise ValueError(f"got {len(pieces)} text pieces for {len(values)} surprisal values; pass one per token")
    finite = [v for v in values if math.isfinite(v)]
    top = max_nats if max_nats is not None else max(finite, default=1.0)
    spans = []
    for piece, nats in zip(pieces, values, strict=True):
        text = html.escape(piece)
        if not math.isfinite(nats):
            spans.append(f'<span title="first token: nothing predicts it">{text}</span>')
            continue
        alpha = min(1.0, max(0.0, nats / top)) if top > 0 else 0.0
        spans.append(
            f'<span style="background-color: rgba(239, 85, 59, {alpha * 0.85:.3f}); border-radius: 3px" '
            f'title="{nats:.2f} nats">{text}</span>'
        )
    return '<div style="white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.7; font-family: monospace">' + "".join(spans) + "</div>"


def surprisal_figure(surprisal: Surprisal, labels: Sequence[str] | None = None) -> go.Figure:
    """Bars of per-token surprisal in bits (the first token has no bar: nothing predicts it)."""
    bits = _as_list(surprisal.bits)
    names = _labels_or_positions(labels, len(bits))
    shown = [None if not math.isfinite(b) else b for b in bits]
    fig = go.Figure(
        go.Bar(x=list(range(len(bits))), y=shown, customdata=names, marker_color=BAR_COLOUR,
               hovertemplate="%{customdata}: %{y:.2f} bits<extra></extra>")
    )  # fmt: skip
    fig.update_xaxes(**_ticks(names))
    fig.update_yaxes(title="surprisal (bits)")
    return base_layout(fig, f"surprisal per token (mean {surprisal.mean_nats / math.log(2):.2f} bits)")


def residual_stats_figure(stats: ResidualStats) -> go.Figure:
    """Norm and standard deviation of the residual stream after each layer."""
    x = list(range(len(stats.layer_names)))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=_as_list(stats.norm), name="mean ‖x‖", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=x, y=_as_list(stats.std), name="std", mode="lines+markers"), secondary_y=True)
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=stats.layer_names)
    fig.update_yaxes(title="mean ‖x‖", secondary_y=False)
    fig.update_yaxes(title="std", secondary_y=True)
    return base_layout(fig, "size of the residual stream, layer by layer")


def trace_figure(steps: Sequence[TraceStep]) -> go.Figure:
    """Standard deviation of the values at every step of a forward trace (log scale)."""
    names = [step.name for step in steps]
    stds = [step.summary["std"] for step in steps]
    dims = [f"{step.dims} = {step.shape}" for step in steps]
    fig = go.Figure(
        go.Bar(x=list(range(len(steps))), y=stds, customdata=list(zip(names, dims, strict=True)), marker_color=BAR_COLOUR,
               hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>std %{y:.4g}<extra></extra>")
    )  # fmt: skip
    fig.update_xaxes(**_ticks(names), tickangle=-60)
    fig.update_yaxes(title="std of values", type="log", **log_ticks(stds))
    return base_layout(fig, "the forward pass, step by step: how spread out the numbers are", height=450)


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have a finite ``key`` (val_loss is only measured sometimes)."""
    steps, values = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(row.get("step", len(steps)))
            values.append(float(value))
    return steps, values


def loss_curves_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], log_y: bool = False) -> go.Figure:
    """Loss curves of several runs: ``{"run label": [{"step", "train_loss", "val_loss"}, ...]}``.

    Each run keeps one colour; training loss is a solid line, validation loss dashed with dots.
    """
    fig = go.Figure()
    for i, (label, rows) in enumerate(runs.items()):
        colour = PALETTE[i % len(PALETTE)]
        for key, dash, mode in (("train_loss", "solid", "lines"), ("val_loss", "dash", "lines+markers")):
            steps, values = _series(rows, key)
            if steps:
                name = f"{label} · {key.split('_')[0]}"
                fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode, line=dict(color=colour, dash=dash)))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="loss (nats per token)", type="log" if log_y else "linear")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22))  # beside the plot it squeezed it at 800 px
    return tidy_log_axes(base_layout(fig, "loss curves"))


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def embedding_figure(pca: EmbeddingPCA, labels: Sequence[str] | None = None, max_text: int = 200) -> go.Figure:
    """Token embeddings on their first two principal components, each point labelled with its
    token (``labels`` has one entry per vocabulary id; text is written when ≤ ``max_text``)."""
    names = [labels[i] if labels is not None else str(i) for i in pca.ids]
    coords = pca.coords.detach().float().cpu()
    fig = go.Figure(
        go.Scatter(
            x=coords[:, 0].tolist(), y=coords[:, 1].tolist(), text=names,
            mode="markers+text" if len(names) <= max_text else "markers",
            textposition="top center", marker=dict(color=BAR_COLOUR, size=7),
            hovertemplate="%{text}<extra></extra>",
        )
    )  # fmt: skip
    share = [f"{100 * float(v):.0f}%" for v in pca.explained]
    fig.update_xaxes(title=f"PC 1 ({share[0]} of variance)")
    fig.update_yaxes(title=f"PC 2 ({share[1]} of variance)")
    return base_layout(fig, "token embeddings (PCA)", height=550)


def nearest_tokens_figure(pairs: Sequence[tuple[int, float]], labels: Sequence[str] | None = None, token: str = "") -> go.Figure:
    """Cosine similarity of the nearest tokens (from ``nearest_tokens``), most similar on top."""
    names = [labels[i] if labels is not None else str(i) for i, _ in pairs]
    fig = go.Figure(
        go.Bar(y=list(range(len(pairs))), x=[s for _, s in pairs], orientation="h", customdata=names,
               marker_color=BAR_COLOUR, hovertemplate="%{customdata}: %{x:.3f}<extra></extra>")
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(range(len(pairs))), ticktext=names)
    fig.update_xaxes(title="cosine similarity", range=[-1, 1])
    return base_layout(fig, f"tokens nearest to {token}".strip())


def position_similarity_figure(similarity: torch.Tensor, title: str = "position similarity") -> go.Figure:
    """Cosine similarity of every pair of position vectors (from ``position_similarity``)."""
    fig = go.Figure(
        go.Heatmap(
            z=similarity.detach().float().cpu().tolist(),
            colorscale=SIMILARITY_SCALE, zmid=0, zmin=-1, zmax=1,
            hovertemplate="positions %{y} and %{x}: %{z:.3f}<extra></extra>",
            colorbar=dict(title="cosine"),
        )
    )  # fmt: skip
    fig.update_xaxes(title="position")
    fig.update_yaxes(title="position", autorange="reversed")
    return base_layout(fig, title, height=500)


def generation_step_figure(step: GenerationStep, labels: Sequence[str] | None = None) -> go.Figure:
    """The model's top candidates at one generation step, the chosen token in a second colour
    (added as an extra bar when it was not among the candidates)."""
    pairs = list(step.candidates)
    if step.token_id not in [i for i, _ in pairs]:
        pairs.append((step.token_id, step.model_probability))
    names = [labels[i] if labels is not None else str(i) for i, _ in pairs]
    colours = [CHOSEN_COLOUR if i == step.token_id else BAR_COLOUR for i, _ in pairs]
    fig = go.Figure(
        go.Bar(x=list(range(len(pairs))), y=[p for _, p in pairs], marker_color=colours, customdata=names,
               hovertemplate="%{customdata}: %{y:.4f}<extra></extra>")
    )  # fmt: skip
    fig.update_xaxes(**_ticks(names))
    fig.update_yaxes(title="model probability", range=[0, 1])
    chosen = names[[i for i, _ in pairs].index(step.token_id)]
    # The title quotes the same probability the bars draw (the model's own); the draw's
    # probability after temperature/top-k/top-p is a different number and says so.
    after = "" if math.isclose(step.probability, step.model_probability, abs_tol=5e-4) else \
        f"; {step.probability:.3f} after the sampling settings"
    return base_layout(fig, f"step {step.index}: chose {chosen} (model's rank {step.rank}, "
                            f"model p={step.model_probability:.3f}{after})")
