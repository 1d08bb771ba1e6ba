"""What the sampling & attention explorer computes that ``sample`` and ``inspection`` do not:
the prompt as the model reads it, generation timed token by token (KV cache on and off), a
lean attention grid, attention drawn over the text, and one snapshot of a run seen whole.

Read after ``toygpt.sample`` and ``toygpt.inspection``: everything here calls them and adds only
bookkeeping (timing, cropping, labels) and two drawings that ``toygpt.viz`` does not have.
Nothing here imports streamlit, so a notebook can use it too::

    >>> tokens = prompt_tokens(tokenizer, "ROMEO:", max_tokens=64)     # doctest: +SKIP
    >>> maps = attention_maps(model, tokens.ids)                        # doctest: +SKIP
    >>> attention_grid_lean_figure(maps, tokens.labels).show()          # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from toygpt.inspection import attention_maps
from toygpt.model import GPT, causal_mask
from toygpt.sample import (
    Generation,
    GenerationStep,
    crop_context,
    encode_prompt,
    generate,
    generation_of,
)
from toygpt.sampling import SamplingConfig

# The most tokens the explorer inspects at once (attention, logit lens). The demo model reads 64;
# GPT-2 reads 1024, whose 12 × 12 attention maps alone would be 600 MB: the last 128 tell as much.
MAX_INSPECT_TOKENS = 128
GRID_GAP = 2  # empty cells between two heads in the lean grid


# --------------------------------------------------------------------------------------------
# The prompt as the model reads it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTokens:
    """The tokens of a prompt that the model reads, each with its own text and a label.

    ``pieces`` are the stretches of the prompt each token covers (joined, they give the kept
    text back exactly); ``labels`` are printable (``'␣'`` for a space, ``'↵'`` for a newline);
    ``dropped`` counts the tokens cut from the front to fit ``max_tokens``.
    """

    ids: list[int]
    pieces: list[str]
    labels: list[str]
    dropped: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def prompt_tokens(tokenizer: Any, prompt: str, max_tokens: int) -> PromptTokens:
    """Encode ``prompt`` and keep its last ``max_tokens`` tokens (an empty prompt gives none).

    A character the tokenizer cannot encode raises its ``ValueError`` (``UnknownCharactersError``
    for a character vocabulary), which names the characters.

    >>> from toygpt.tokenizers import CharTokenizer
    >>> t = prompt_tokens(CharTokenizer.from_text("ab "), "ab ba", max_tokens=3)
    >>> t.pieces, t.labels, t.dropped
    ([' ', 'b', 'a'], ['␣', 'b', 'a'], 2)
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r} must be a whole number ≥ 1; try 64")
    if not prompt:
        return PromptTokens([], [], [], 0)
    ids, spans = tokenizer.encode_with_spans(prompt)
    kept, dropped = crop_context(ids, max_tokens)
    pieces = [prompt[start:end] for start, end in spans[dropped:]]
    return PromptTokens(kept, pieces, [tokenizer.token_label(i) for i in kept], dropped)


def vocab_labels(tokenizer: Any) -> list[str]:
    """A printable label for every id of the vocabulary (charts label candidate tokens by id)."""
    return [tokenizer.token_label(i) for i in range(tokenizer.vocab_size)]


# --------------------------------------------------------------------------------------------
# Generation, timed token by token: what the KV cache saves
# --------------------------------------------------------------------------------------------


def time_generation(
    model: GPT, ids: Sequence[int], max_new_tokens: int, *, use_cache: bool, seed: int,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
) -> Generation:
    """Generate ``max_new_tokens`` after ``ids``, every step timed (``Generation.stats``;
    ``text`` is None: ids in, ids out)."""
    steps = list(generate(model, ids, max_new_tokens, sampling=sampling, seed=seed, use_cache=use_cache))
    return generation_of(steps, use_cache=use_cache)


def compare_kv_cache(
    model: GPT, ids: Sequence[int], max_new_tokens: int, *, seed: int,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
) -> tuple[Generation, Generation]:
    """(without cache, with cache): the same tokens (same seed), timed each way.

    A two-token warm-up of each path first, so neither pays for one-time allocations. The two
    token lists are equal by construction (``generate`` promises it; tests check it), so a
    page can show the saving is free.
    """
    for use_cache in (False, True):
        time_generation(model, ids, min(2, max_new_tokens), use_cache=use_cache, seed=seed, sampling=sampling)
    without = time_generation(model, ids, max_new_tokens, use_cache=False, seed=seed, sampling=sampling)
    with_cache = time_generation(model, ids, max_new_tokens, use_cache=True, seed=seed, sampling=sampling)
    return without, with_cache


def continuation_html(prompt: str, continuation: str, newest: str = "") -> str:
    """The prompt (dimmed), what the model wrote, then ``newest`` highlighted (the token just
    picked, in step mode), as escaped, monospaced HTML.

    Long unbroken lines (an untrained model rarely writes a space) wrap anywhere instead of
    running out of their column.

    >>> continuation_html("<i>", "!")
    '<div style="white-space: pre-wrap; overflow-wrap: anywhere; font-family: monospace; line-height: 1.5"><span style="opacity: 0.55">&lt;i&gt;</span>!</div>'
    """
    mark = f'<mark style="background-color: rgba(239, 85, 59, 0.45)">{html.escape(newest)}</mark>' if newest else ""
    return (
        '<div style="white-space: pre-wrap; overflow-wrap: anywhere; font-family: monospace; line-height: 1.5">'
        f'<span style="opacity: 0.55">{html.escape(prompt)}</span>{html.escape(continuation)}{mark}</div>'
    )


# --------------------------------------------------------------------------------------------
# Attention, drawn lean: every head in one heatmap; one query's weights over the text
# --------------------------------------------------------------------------------------------


def attention_mosaic(maps: torch.Tensor, gap: int = GRID_GAP) -> np.ndarray:
    """Tile maps (n_layer, n_head, T, T) into one array, layers down and heads across, with
    ``gap`` rows/columns of NaN (drawn as nothing) between tiles. The future (above each
    tile's diagonal) is NaN too, as in ``toygpt.viz``: "hidden by the causal mask" must look
    different from "allowed, but given weight 0".

    >>> attention_mosaic(torch.ones(2, 3, 4, 4), gap=1).shape   # 2·4 + 1 rows, 3·4 + 2 columns
    (9, 14)
    """
    n_layer, n_head, T, _ = maps.shape
    step = T + gap
    mosaic = np.full((n_layer * step - gap, n_head * step - gap), np.nan, dtype=np.float32)
    values = maps.detach().float().cpu().numpy().copy()
    values[..., ~causal_mask(T).numpy()] = np.nan
    for layer in range(n_layer):
        for head in range(n_head):
            mosaic[layer * step : layer * step + T, head * step : head * step + T] = values[layer, head]
    return mosaic


def attention_grid_lean_figure(
    maps: torch.Tensor, labels: Sequence[str] | None = None, max_positions: int = 64,
    selected: tuple[int, int] | None = None,
) -> go.Figure:
    """Every head of every layer as ONE heatmap trace (layers as rows, heads as columns).

    ``toygpt.viz.attention_grid_figure`` draws one subplot per head; that reads well for a few
    heads but costs ~20 ms per subplot to build and more to draw (GPT-2 has 144). One trace of a
    tiled NumPy array (sent to the browser as packed binary) builds in a few ms at any size.
    Long inputs show their last ``max_positions`` positions (said in the title). ``selected``
    (layer, head) is outlined: the head drawn large beside the grid.
    """
    n_layer, n_head, T, _ = maps.shape
    keep = min(T, max_positions)
    mosaic = attention_mosaic(maps[:, :, T - keep :, T - keep :])
    step = keep + GRID_GAP
    centres = [i * step + (keep - 1) / 2 for i in range(max(n_layer, n_head))]
    fig = go.Figure(
        go.Heatmap(
            z=mosaic, colorscale="Viridis", zmin=0, zmax=1, hoverongaps=False,
            colorbar=dict(title="weight", thickness=12), hovertemplate="weight %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(tickmode="array", tickvals=centres[:n_head], ticktext=[f"head {h}" for h in range(n_head)],
                     side="top", showgrid=False, zeroline=False)  # fmt: skip
    fig.update_yaxes(tickmode="array", tickvals=centres[:n_layer], ticktext=[f"layer {i}" for i in range(n_layer)],
                     autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x")  # fmt: skip
    if selected is not None:
        layer, head = selected
        fig.add_shape(type="rect", x0=head * step - 0.5, x1=head * step + keep - 0.5, y0=layer * step - 0.5,
                      y1=layer * step + keep - 0.5, line=dict(color="#EF553B", width=3))  # fmt: skip
    shown = f"last {keep} of {T} positions" if keep < T else f"{T} positions"
    what = "" if labels is None else f": {''.join(labels[T - keep :])[:24]}"
    mark = f"; outlined: layer {selected[0]}, head {selected[1]}" if selected is not None else ""
    fig.update_layout(  # the details go on a second, smaller line: half a page is narrow
        title=dict(text=f"attention of every head<br><sup>{html.escape(shown + what + mark)}</sup>"),
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", margin=dict(l=10, r=10, t=100, b=10),
        # tiles are square (scaleanchor): about 360 px of grid across, in half a wide page
        height=max(300, min(1100, round(360 * n_layer / n_head) + 130)),
    )  # fmt: skip
    return fig


def attention_text_html(pieces: Sequence[str], weights: Sequence[float] | torch.Tensor, query: int) -> str:
    """The text with each token shaded by how much token ``query`` attends to it (darkest = the
    most attended; hover for the weight), the query outlined, later tokens greyed (it cannot
    see them). User text is HTML-escaped, so it cannot inject markup.

    >>> attention_text_html(["a", "<b>"], [0.25, 0.75], query=1).count("&lt;b&gt;")
    1
    """
    values = weights.detach().float().cpu().tolist() if isinstance(weights, torch.Tensor) else list(weights)
    if len(values) != len(pieces) or not 0 <= query < len(pieces):
        raise ValueError(f"got {len(pieces)} pieces, {len(values)} weights and query {query}; pass one weight per piece")
    top = max(values[: query + 1]) or 1.0
    spans = []
    for j, (piece, weight) in enumerate(zip(pieces, values, strict=True)):
        text = html.escape(piece.replace("\n", "↵\n"))
        if j > query:
            spans.append(f'<span style="opacity: 0.35" title="after the query: hidden from it">{text}</span>')
            continue
        outline = "outline: 2px solid #EF553B; " if j == query else ""
        alpha = 0.85 * weight / top
        spans.append(
            f'<span style="{outline}background-color: rgba(99, 110, 250, {alpha:.3f}); border-radius: 3px" '
            f'title="weight {weight:.3f}">{text}</span>'
        )
    style = "white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.9; font-family: monospace; font-size: 1.15em"
    return f'<div style="{style}">' + "".join(spans) + "</div>"


# --------------------------------------------------------------------------------------------
# Watch it learn: one snapshot of a run, seen whole
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotView:
    """What a model makes of one prompt: a sampled continuation, the first step of it (the
    next-token candidates and the pick), and the attention maps of the prompt."""

    continuation: str
    first_step: GenerationStep
    ids: list[int]  # the prompt tokens the maps are of (its last MAX_INSPECT_TOKENS at most)
    maps: torch.Tensor  # (n_layer, n_head, T, T)


def snapshot_view(
    model: GPT, tokenizer: Any, prompt: str, max_new_tokens: int, *, seed: int, n_candidates: int = 10,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
) -> SnapshotView:
    """Sample ``max_new_tokens`` after ``prompt`` and take its attention maps. The same prompt,
    settings and seed on each snapshot of a run show how the model's answer changed as it learned.
    An empty prompt starts from the start token (as ``generate`` does)."""
    ids = encode_prompt(tokenizer, prompt, model)
    steps = list(generate(model, ids, max_new_tokens, seed=seed, tokenizer=tokenizer, n_candidates=n_candidates, sampling=sampling))
    if not steps:
        raise ValueError("max_new_tokens=0 samples nothing; ask for at least 1 token")
    inspected, _ = crop_context(ids, min(model.config.block_size, MAX_INSPECT_TOKENS))
    text = tokenizer.decode([step.token_id for step in steps])
    return SnapshotView(text, steps[0], inspected, attention_maps(model, inspected))


def loss_at_step(rows: Iterable[Mapping[str, Any]], step: int) -> float | None:
    """The validation loss measured at ``step`` (or the last one measured before it), from a
    run's metrics rows (``toygpt.runs.read_metrics``); None if none was measured by then.

    >>> loss_at_step([{"type": "eval", "step": 0, "val_loss": 4.2}, {"type": "eval", "step": 50, "val_loss": 2.9}], 60)
    2.9
    """
    best_step, loss = -1, None
    for row in rows:
        value, at = row.get("val_loss"), row.get("step")
        if row.get("type") != "eval" or not isinstance(value, int | float) or not isinstance(at, int):
            continue
        if best_step < at <= step and math.isfinite(value):
            best_step, loss = at, float(value)
    return loss
