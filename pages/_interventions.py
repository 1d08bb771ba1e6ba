"""The explorer's "Interventions" view: change the model and see what breaks — ablate a head,
patch activations from a clean prompt into a corrupted one, find induction heads.

UI only: the numbers come from ``toygpt.interventions``, the figures and readings from
``toygpt.lessons.interventions``. Drawn inside ``pages/explore.py`` (not a page of its own).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from pages._shared import capped_text, current_seed, keep_selection, show_source
from toygpt.interventions import (
    ABLATIONS,
    HeadAblation,
    InductionScores,
    Patching,
    ablate_heads,
    activation_patching,
    induction_scores,
    repeated_random_tokens,
)
from toygpt.lessons.interventions import (
    ABLATION_TOKENS,
    ablation_figure,
    ablation_reading,
    ablation_view,
    ablation_window,
    head_patching_figure,
    induction_figure,
    induction_loss_figure,
    induction_reading,
    moved_tokens,
    patching_reading,
    residual_patching_figure,
    token_change_figure,
)
from toygpt.model import GPT

KINDS = ["Head ablation", "Activation patching", "Induction heads"]
MAX_SEQUENCES = 64


@st.cache_resource(max_entries=8, show_spinner="Ablating each head in turn…")
def cached_ablation(model_key: str, ids: tuple[int, ...], method: str, _model: GPT) -> HeadAblation:
    return ablate_heads(_model, torch.tensor([ids]), method)


@st.cache_resource(max_entries=8, show_spinner="Patching each layer and position…")
def cached_patching(model_key: str, clean: tuple[int, ...], corrupted: tuple[int, ...],
                    answers: tuple[int | None, int | None], _model: GPT) -> Patching:  # fmt: skip
    return activation_patching(_model, list(clean), list(corrupted), *answers)


@st.cache_resource(max_entries=8, show_spinner="Scoring every head on repeated random tokens…")
def cached_induction(model_key: str, half: int, sequences: int, seed: int, _model: GPT) -> InductionScores:
    tokens = repeated_random_tokens(_model.config.vocab_size, half, sequences, seed)
    return induction_scores(_model, tokens)


def interventions_view(explored: Any, tokens: Any, default_text: str) -> None:
    """``explored``: the explorer's model (key, label, model, tokenizer); ``tokens``: the prompt's."""
    st.caption("Looking inside by changing the model: knock out a head, copy an activation from one "
               "prompt into another, or test heads for copying on repeated random tokens.")  # fmt: skip
    kind = st.segmented_control("Intervention", KINDS, default=KINDS[0], required=True, key="explore_intervention")
    if kind == "Head ablation":
        ablation_ui(explored, default_text)
    elif kind == "Activation patching":
        patching_ui(explored, tokens)
    else:
        induction_ui(explored)


def ablation_ui(explored: Any, default_text: str) -> None:
    text = capped_text(st.text_area("Text to score the heads on", default_text, height=110, key="explore_ablation_text"))
    method = st.radio("Ablation", ABLATIONS, horizontal=True, key="explore_ablation_method",
                      format_func={"zero": "zero (head's output set to 0)",
                                   "mean": "mean (held at its average over this text)"}.get)  # fmt: skip
    try:
        ids, _ = explored.tokenizer.encode_with_spans(text)
        window = ablation_window(ids, explored.model.config.block_size)
    except ValueError as exc:
        st.error(f"This text cannot be scored: {exc}")
        return
    kept = window[0].tolist()
    if len(ids) > len(kept):
        st.caption(f"Scoring the first {len(kept)} of the text's {len(ids)} tokens "
                   f"(at most {min(explored.model.config.block_size, ABLATION_TOKENS)} predictions: one pass per head).")  # fmt: skip
    ablation = cached_ablation(explored.key, tuple(kept), method, explored.model)
    heads = [(layer, head) for layer in range(explored.model.config.n_layer) for head in range(explored.model.config.n_head)]
    top = ablation.top_heads(1)[0][:2]
    keep_selection("explore_ablation_head", heads, top)
    chosen = st.selectbox("Head to look at (default: the one whose ablation cost most)", heads,
                          key="explore_ablation_head",
                          format_func=lambda lh: f"layer {lh[0]}, head {lh[1]} (Δ loss {float(ablation.loss_change[lh]):+.3f})")  # fmt: skip
    view = ablation_view(explored.model, window, method, chosen, ablation)
    labels = [explored.tokenizer.token_label(i) for i in kept]
    st.markdown(ablation_reading(view))
    left, right = st.columns(2)
    left.plotly_chart(ablation_figure(view), width="stretch", key="explore_ablation_chart")
    right.plotly_chart(token_change_figure(view, labels), width="stretch", key="explore_ablation_tokens_chart")
    st.caption(f"Predictions whose loss moved most without layer {view.layer} head {view.head}:")
    st.dataframe(moved_tokens(view, labels), hide_index=True, key="explore_ablation_table")
    show_source(ablate_heads)


def token_id(explored: Any, text: str, what: str) -> int | None:
    """The one token ``text`` encodes to (None, with the reason shown, otherwise)."""
    try:
        ids = explored.tokenizer.encode(text)
    except ValueError as exc:
        st.error(f"{what} cannot be encoded: {exc}")
        return None
    if len(ids) != 1:
        st.error(f"{what} {text!r} is {len(ids)} tokens; type exactly one token "
                 f"({' | '.join(explored.tokenizer.token_label(i) for i in ids[:8])})")  # fmt: skip
        return None
    return ids[0]


def patching_ui(explored: Any, tokens: Any) -> None:
    if tokens is None:
        st.warning("Fix the prompt above (see the message): activation patching changes one of its tokens.")
        return
    if not tokens.ids:
        st.info("Type a prompt above: activation patching changes one of its tokens.")
        return
    T = len(tokens.ids)
    st.caption(f"The clean prompt is the explorer's prompt ({T} tokens). Change one of its tokens to make the "
               "corrupted prompt; then each activation is copied from the clean run into the corrupted one, one at a "
               "time, to see where the information that changed the prediction lives.")  # fmt: skip
    positions = list(range(T))
    keep_selection("explore_patch_position", positions, max(0, T - 2))
    cols = st.columns(2)
    position = cols[0].selectbox("Token to change", positions, key="explore_patch_position",
                                 format_func=lambda i: f"{i}: {tokens.labels[i]}")  # fmt: skip
    replacement = cols[1].text_input("Replace it with (one token)", key="explore_patch_with")
    answers = st.columns(2)
    clean_answer = answers[0].text_input("Clean answer (blank: the clean prompt's top prediction)", key="explore_patch_clean")
    corrupted_answer = answers[1].text_input("Corrupted answer (blank: the corrupted prompt's top prediction)",
                                             key="explore_patch_corrupted")  # fmt: skip
    if not replacement:
        st.info(f"Type the token to put at position {position} instead of {tokens.labels[position]}.")
        return
    new = token_id(explored, replacement, "The replacement")
    chosen = [token_id(explored, a, w) if a else None for a, w in ((clean_answer, "The clean answer"),
                                                                     (corrupted_answer, "The corrupted answer"))]  # fmt: skip
    if new is None or any(a is None and text for a, text in zip(chosen, (clean_answer, corrupted_answer), strict=True)):
        return
    corrupted = list(tokens.ids)
    corrupted[position] = new
    try:
        patching = cached_patching(explored.key, tuple(tokens.ids), tuple(corrupted), tuple(chosen), explored.model)
    except ValueError as exc:
        st.error(f"Nothing to patch: {exc}")
        return
    label = explored.tokenizer.token_label
    corrupted_labels = [label(i) for i in corrupted]
    st.markdown(patching_reading(patching, corrupted_labels, label(patching.clean_token), label(patching.corrupted_token)))
    st.plotly_chart(residual_patching_figure(patching, corrupted_labels), width="stretch", key="explore_patch_stream_chart")
    st.plotly_chart(head_patching_figure(patching), width="stretch", key="explore_patch_heads_chart")
    st.caption("Restored = (logit difference with the patch − corrupted) / (clean − corrupted): 0 leaves the "
               "corrupted prediction, 1 brings back the clean one; values outside 0..1 are shown as they are.")  # fmt: skip
    show_source(activation_patching)


def induction_ui(explored: Any) -> None:
    config = explored.model.config
    longest = min(config.block_size // 2, 128)
    if longest < 2:
        st.info(f"This model reads {config.block_size} tokens: too few to repeat a sequence.")
        return
    cols = st.columns(2)
    half = cols[0].slider("Random tokens before the repeat", 2, longest, min(32, longest), key="explore_induction_half")
    sequences = cols[1].number_input("Sequences", 1, MAX_SEQUENCES, 8, key="explore_induction_sequences")
    scores = cached_induction(explored.key, int(half), int(sequences), current_seed(), explored.model)
    st.markdown(induction_reading(scores))
    left, right = st.columns(2)
    left.plotly_chart(induction_figure(scores), width="stretch", key="explore_induction_chart")
    right.plotly_chart(induction_loss_figure(scores), width="stretch", key="explore_induction_loss_chart")
    st.caption(f"Random tokens drawn with the sidebar's seed ({current_seed()}); the score is the attention from "
               "each token of the repeat to the token after its previous occurrence, averaged.")  # fmt: skip
    show_source(induction_scores)
