"""Architecture walkthrough: shape a GPT and see its size and cost, follow your text through the
active model step by step, and try each idea of the architecture on a live computation."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

from pages._shared import (
    active_model,
    capped_text,
    current_seed,
    in_app_words,
    keep_selection,
    show_source,
)
from toygpt.formatting import human_bytes, human_count
from toygpt.inspection import (
    embedding_pca,
    forward_trace,
    nearest_tokens,
    position_similarity,
    residual_stats,
)
from toygpt.lessons.walkthrough import (
    future_change,
    future_change_figure,
    init_residual_comparison,
    memory_estimate,
    output_distribution,
    output_distribution_figure,
    parameter_treemap_figure,
    part_figures,
    positions_at_init,
    residual_comparison_figure,
    sequence_mixing,
    sequence_mixing_figure,
    shares_embedding,
    stack_dot,
    trace_parts,
    trace_table,
    tying_saving,
)
from toygpt.model import (
    GPT,
    NORM_POSITIONS,
    POS_ENCODINGS,
    PRESETS,
    Block,
    GPTConfig,
    flops_per_token,
    parameter_counts,
    preset,
    total_parameters,
)
from toygpt.tokenizers import ByteTokenizer, CharTokenizer, Tokenizer
from toygpt.viz import (
    embedding_figure,
    nearest_tokens_figure,
    position_similarity_figure,
    residual_stats_figure,
    trace_figure,
)

DEFAULT_PROMPT = "ROMEO:\nBut soft, what light"
CUSTOM = "custom"  # the Preset box once the values match no preset
SHAPED, SIDEBAR = "shaped", "sidebar"  # what the trace follows
UNTRAINED_TRACE_LIMIT = 200_000_000  # parameters: beyond this an untrained copy is too big to build here
MAX_TRACE_TOKENS = 64  # a short prompt: every step gets a readable heatmap
DEFAULT_VOCAB = 65  # the characters of tiny shakespeare (the demo model's vocabulary)
CONFIG_KEYS = {
    "n_layer": "arch_n_layer", "n_head": "arch_n_head", "n_embd": "arch_n_embd",
    "block_size": "arch_block_size", "vocab_size": "arch_vocab_size",
    "norm_position": "arch_norm_position", "pos_encoding": "arch_pos_encoding",
    "scale_residual_init": "arch_scale_init", "tie_embeddings": "arch_tie",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Cached computations (the inputs are hashable; the model is identified by ActiveModel.key)
# --------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=16, show_spinner="Initialising a model of this shape (seconds for GPT-2 sizes)…")
def cached_init_comparison(config: GPTConfig, seed: int):
    return init_residual_comparison(config, seed)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_mixing(length: int, seed: int):
    return sequence_mixing(length=length, seed=seed)


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_trace(model_key: str, ids: tuple[int, ...], _model: GPT):
    with torch.inference_mode():
        return forward_trace(_model, list(ids), keep_values=True)


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_step_figures(model_key: str, ids: tuple[int, ...], part: str, head: int, _steps) -> dict:
    """The heatmaps of one part of the trace (plotly takes ~30 ms a figure: build them once)."""
    return part_figures(_steps, part, head)


@st.cache_resource(max_entries=2, show_spinner="Initialising an untrained model of this shape…")
def untrained_model(config: GPTConfig, seed: int) -> GPT:
    """A freshly initialised model of the shaped config (shared by sessions: only read)."""
    return GPT(config, seed=seed).eval()


@dataclass(frozen=True)
class Traced:
    """The model the trace follows, and the tokenizer that turns the prompt into its ids."""

    key: str  # names the weights, for the caches above
    label: str
    model: GPT
    tokenizer: Tokenizer


def shaped_tokenizer(config: GPTConfig, active, text: str) -> tuple[Tokenizer | None, str]:
    """A tokenizer whose ids fit ``config.vocab_size``: the sidebar model's when they fit, else
    bytes (V ≥ 256), else the prompt's own characters; or None and why not."""
    if active is not None and active.tokenizer.vocab_size <= config.vocab_size:
        return active.tokenizer, f"the sidebar model's {active.tokenizer.name} tokenizer"
    if config.vocab_size >= 256:
        return ByteTokenizer(), "the byte tokenizer (256 ids)"
    try:
        chars = CharTokenizer.from_text(text)
    except ValueError as exc:
        return None, str(exc)
    if chars.vocab_size > config.vocab_size:
        return None, (f"vocab_size {config.vocab_size} is fewer than the prompt's {chars.vocab_size} distinct "
                      "characters; raise vocab_size (256 reads any text as bytes)")
    return chars, f"a char tokenizer of the prompt's {chars.vocab_size} characters"


def trace_target_ui(config: GPTConfig | None, active, text: str) -> Traced | None:
    """The visible choice of what to trace; None (with the reason) when it cannot be traced."""
    labels = {SHAPED: "the shaped config above (untrained, seeded)",
              SIDEBAR: f"the sidebar model: {active.label} (trained)" if active else "the sidebar model (none picked)"}  # fmt: skip
    st.session_state.setdefault("arch_trace_source", SIDEBAR if active is not None else SHAPED)
    source = st.radio("Trace", [SHAPED, SIDEBAR], key="arch_trace_source", format_func=labels.get, horizontal=True)
    if source == SIDEBAR:
        if active is None:
            st.info("No model is active: pick one in the sidebar (or train one on the Training page), "
                    "or trace the shaped config.")  # fmt: skip
            return None
        return Traced(active.key, f"**{active.label}** (trained)", active.model, active.tokenizer)
    if config is None:
        st.info("The config above is not valid yet: fix it to trace it.")
        return None
    if total_parameters(config) > UNTRAINED_TRACE_LIMIT:
        st.info(f"{total_parameters(config):,} parameters is too big to build here for a trace; shrink the config.")
        return None
    tokenizer, which = shaped_tokenizer(config, active, text)
    if tokenizer is None:
        st.warning(f"The shaped config cannot read this prompt: {which}.")
        return None
    seed = current_seed()
    label = (f"an **untrained** model of the shaped config ({config.n_layer} blocks × {config.n_head} heads × "
             f"{config.n_embd}, {config.norm_position}-LN, {config.pos_encoding} positions; seed {seed}; "
             f"prompt read by {which})")  # fmt: skip
    key = f"untrained|{config.to_dict()}|seed {seed}"
    return Traced(key, label, untrained_model(config, seed), tokenizer)


# --------------------------------------------------------------------------------------------
# 1. Shape the model
# --------------------------------------------------------------------------------------------


def preset_values(name: str) -> dict:
    values = {**GPTConfig().to_dict(), "vocab_size": DEFAULT_VOCAB, **PRESETS[name]}
    return {field: values[field] for field in CONFIG_KEYS}


def apply_values(values: dict) -> None:
    for field, key in CONFIG_KEYS.items():
        st.session_state[key] = values[field]


def shaped() -> None:
    """Callback of every knob: the Preset box names the preset these values are (else
    "custom"), and the trace below follows the shape just changed."""
    values = {field: st.session_state[key] for field, key in CONFIG_KEYS.items()}
    same = [name for name in PRESETS if preset_values(name) == values]
    st.session_state["arch_preset"] = same[0] if same else CUSTOM
    st.session_state["arch_trace_source"] = SHAPED


def preset_chosen() -> None:
    if st.session_state["arch_preset"] != CUSTOM:
        apply_values(preset_values(st.session_state["arch_preset"]))
    st.session_state["arch_trace_source"] = SHAPED


def config_ui() -> GPTConfig | None:
    """Preset + every knob; returns the config, or None after explaining why it is invalid."""
    if "arch_preset" not in st.session_state:
        st.session_state["arch_preset"] = "small"
        apply_values(preset_values("small"))
    st.selectbox("Preset", [*PRESETS, CUSTOM], key="arch_preset", on_change=preset_chosen,
                 help="nano/small/medium train on a laptop CPU; gpt2 is the shape of the real 124M GPT-2. "
                 "It says custom once a value below differs from every preset.")  # fmt: skip
    cols = st.columns(5)
    cols[0].number_input("n_layer (blocks)", 1, 96, key="arch_n_layer", on_change=shaped)
    cols[1].number_input("n_head (heads per block)", 1, 128, key="arch_n_head", on_change=shaped)
    cols[2].number_input("n_embd (width C)", 1, 12288, key="arch_n_embd", on_change=shaped)
    cols[3].number_input("block_size (context T)", 1, 32768, key="arch_block_size", on_change=shaped)
    cols[4].number_input("vocab_size (V)", 1, 300_000, key="arch_vocab_size", on_change=shaped,
                         help="65 = the characters of tiny shakespeare; 50257 = GPT-2's BPE")  # fmt: skip
    cols = st.columns(4)
    cols[0].radio("LayerNorm position", NORM_POSITIONS, key="arch_norm_position", horizontal=True, on_change=shaped,
                  help="pre: before each sub-layer, as GPT-2; post: after the residual add, as the original Transformer")  # fmt: skip
    cols[1].selectbox("Position encoding", POS_ENCODINGS, key="arch_pos_encoding", on_change=shaped)
    cols[2].checkbox("Scaled residual init", key="arch_scale_init", on_change=shaped,
                     help="GPT-2: the residual projections start with std 0.02/√(2·n_layer) instead of 0.02")  # fmt: skip
    cols[3].checkbox("Tie lm_head to wte", key="arch_tie", on_change=shaped)
    values = {field: st.session_state[key] for field, key in CONFIG_KEYS.items()}
    try:
        return GPTConfig(**{k: int(v) if isinstance(v, float) else v for k, v in values.items()})
    except ValueError as exc:
        st.error(f"This combination does not work: {exc}")
        return None


def size_and_cost(config: GPTConfig) -> None:
    """The diagram beside the numbers; the per-module parameters as a table and a treemap."""
    left, right = st.columns([2, 3])
    with left:
        st.graphviz_chart(stack_dot(config, max_blocks=2), width="stretch")
    with right:
        memory = memory_estimate(config)
        cols = st.columns(2)
        cols[0].metric("Parameters", f"{memory.params:,}")
        cols[1].metric("Weights (float32)", human_bytes(memory.weights))
        cols = st.columns(2)
        cols[0].metric("Training memory", human_bytes(memory.training),
                       help="weights + gradients + AdamW's two moments (activations not counted)")  # fmt: skip
        cols[1].metric("FLOPs per token (training)", human_count(flops_per_token(config)),
                       help=f"{flops_per_token(config):,}: forward + backward ≈ 3 × forward")  # fmt: skip
        st.caption(
            f"Memory: weights {human_bytes(memory.weights)} + gradients {human_bytes(memory.grads)} + "
            f"Adam state {human_bytes(memory.adam)}. One forward pass costs "
            f"{flops_per_token(config, training=False):,} FLOPs per token (a multiply-add counts 2)."
        )
        table, tree = st.tabs(["Table", "Treemap"])
        rows = pd.DataFrame(parameter_counts(config))
        rows["share"] = rows["params"] / memory.params
        table.dataframe(rows, hide_index=True, height=300, column_config={
            "params": st.column_config.NumberColumn("parameters", format="%,d"),
            "share": st.column_config.NumberColumn("share", format="percent")})  # fmt: skip
        tree.plotly_chart(parameter_treemap_figure(config), width="stretch", key="arch_treemap")


# --------------------------------------------------------------------------------------------
# 2. Follow your text through the model
# --------------------------------------------------------------------------------------------


def prompt_ids_ui(active, text: str) -> list[int] | None:
    """The prompt, encoded by ``active``'s tokenizer and cut to a traceable length."""
    if not text:
        st.warning("Type a prompt: the trace needs at least one token.")
        return None
    try:
        ids = active.tokenizer.encode(text)
    except ValueError as exc:  # TokenizerError (unknown characters, lone surrogates) is a ValueError
        st.error(f"The traced model's tokenizer cannot encode this text: {in_app_words(exc)}")
        return None
    limit = min(active.model.config.block_size, MAX_TRACE_TOKENS)
    if not ids:
        st.warning("The prompt encodes to no tokens; type some text.")
        return None
    if len(ids) > limit:
        st.info(f"The prompt is {len(ids)} tokens; the trace follows the first {limit}.")
        ids = ids[:limit]
    labels = [active.tokenizer.token_label(i) for i in ids]
    st.caption(f"{len(ids)} tokens: " + " · ".join(f"`{label}`" for label in labels))
    return ids


def step_ui(index: int, step, figure) -> None:
    with st.container(border=True):
        left, right = st.columns([2, 3])
        shape = " × ".join(str(n) for n in step.shape)
        left.markdown(f"**{index}. {step.name}**  \n`{step.dims}` = `{shape}`")
        left.caption(step.note)
        s = step.summary
        left.caption(f"mean {s['mean']:.3g} · std {s['std']:.3g} · min {s['min']:.3g} · max {s['max']:.3g}"
                     + (f" · {int(s['masked'])} masked (-inf)" if s["masked"] else ""))  # fmt: skip
        with left:
            show_source(step.source)
        right.plotly_chart(figure, width="stretch", key=f"arch_step_{index}")


def trace_ui(traced: Traced, ids: list[int]):
    steps = cached_trace(traced.key, tuple(ids), traced.model)
    st.markdown(f"One forward pass of {traced.label} on your {len(ids)} tokens: "
                f"{len(steps)} steps, in the order the model computes them.")  # fmt: skip
    with st.expander("Every step with its shape", expanded=False):
        st.dataframe(pd.DataFrame(trace_table(steps)), hide_index=True, width="stretch", key="arch_trace_table")
        st.plotly_chart(trace_figure(steps), width="stretch", key="arch_trace_overview")
    parts = trace_parts(steps)
    names = [name for name, _ in parts]
    cols = st.columns([3, 1])
    part = cols[0].radio("Part of the model", names, key="arch_trace_part", horizontal=True)
    part = part if part in names else names[0]
    heads = list(range(traced.model.config.n_head))
    keep_selection("arch_trace_head", heads)  # another model may have fewer heads
    head = cols[1].selectbox("Head", heads, key="arch_trace_head")
    figures = cached_step_figures(traced.key, tuple(ids), part, head, steps)
    if "attention" in figures:
        st.plotly_chart(figures["attention"], width="stretch", key="arch_attention_stages")
    for index in dict(parts)[part]:
        step_ui(index, steps[index], figures[index])
    return steps


# --------------------------------------------------------------------------------------------
# 3. Concept cards
# --------------------------------------------------------------------------------------------


def needs_model(active, ids) -> bool:
    if active is None or not ids:
        st.info("This card runs on the active model and your prompt: pick a model in the sidebar "
                "and type a prompt above.")  # fmt: skip
        return False
    return True


def needs_config(config) -> bool:
    if config is None:
        st.info("This card follows the config above; fix it first.")
    return config is not None


def attention_vs_rnn_card() -> None:
    st.markdown("An RNN reads one position at a time and passes a state along: position *t* must "
                "wait for *t − 1*, and the first token reaches the last only through every step in "
                "between. Self-attention reads all earlier positions at once, each one step away. "
                "Below: how strongly each input can move each output (the size of the gradient "
                "∂output/∂input), for a random tanh RNN and a fresh toygpt attention layer.")  # fmt: skip
    length = st.slider("Sequence length", 4, 32, 16, key="arch_rnn_length")
    mixing = cached_mixing(length, current_seed())
    cols = st.columns(3)
    cols[0].metric("Steps one after another (RNN / attention)", f"{mixing.rnn_sequential_steps} / 1")
    cols[1].metric("First token → last output (RNN)", f"{100 * float(mixing.rnn[-1, 0]):.2g}%")
    cols[2].metric("First token → last output (attention)", f"{100 * float(mixing.attention[-1, 0]):.2g}%")
    st.plotly_chart(sequence_mixing_figure(mixing), width="stretch", key="arch_mixing")
    show_source(sequence_mixing)


def masked_attention_card(active, ids) -> None:
    st.markdown("The causal mask hides later tokens, so replacing a token cannot change any "
                "prediction made before it. Replace one token of your prompt and watch which "
                "positions' logits move.")  # fmt: skip
    if not needs_model(active, ids):
        return
    if len(ids) < 2:
        st.info("Type a prompt of at least 2 tokens to see earlier positions stay put.")
        return
    cols = st.columns(2)
    position = cols[0].slider("Position to replace", 0, len(ids) - 1, len(ids) // 2, key="arch_mask_position")
    replacement = cols[1].text_input("Replace it with (one token)", "x", key="arch_mask_token")
    try:
        new_ids = active.tokenizer.encode(replacement)
        if len(new_ids) != 1:
            st.warning(f"{replacement!r} is {len(new_ids)} tokens for this tokenizer; type exactly one token.")
            return
        with torch.inference_mode():
            result = future_change(active.model, ids, position, new_ids[0])
    except ValueError as exc:
        st.warning(in_app_words(exc))
        return
    labels = [active.tokenizer.token_label(i) for i in ids]
    st.plotly_chart(future_change_figure(result, labels), width="stretch", key="arch_future_change")
    if position:
        st.success(f"Positions 0–{position - 1}: largest logit change {result.largest_change_before:.2g} "
                   "(exactly 0 means untouched).")  # fmt: skip
    show_source(future_change)


def norm_position_card(config, active, ids) -> None:
    st.markdown("**Pre-LN** (GPT-2) normalises the *input* of each sub-layer and leaves the "
                "residual stream itself alone, so it grows block by block. **Post-LN** (the original "
                "Transformer) normalises the stream after every add, so its size is reset each time.")  # fmt: skip
    show_source(Block.forward, "Source: `Block.forward` (both arrangements)")
    if needs_config(config):
        try:
            stats = cached_init_comparison(config, current_seed())
        except ValueError as exc:
            st.info(str(exc))
        else:
            init = "scaled init (GPT-2)" if config.scale_residual_init else "plain 0.02 init"
            pre, post = (stats[f"{norm}, {init}"].norm for norm in ("pre-LN", "post-LN"))
            st.plotly_chart(residual_comparison_figure({f"{n}, {init}": stats[f"{n}, {init}"] for n in ("pre-LN", "post-LN")},
                                                       "norm", "at initialisation, this config's shape (log scale)", log_y=True),
                            width="stretch", key="arch_norm_init")  # fmt: skip
            st.caption(f"After the last block: pre-LN ‖x‖ = {float(pre[-1]):.3g} (grown from {float(pre[0]):.3g}); "
                       f"post-LN ‖x‖ = {float(post[-1]):.3g} ≈ √{config.n_embd}, the length of a LayerNorm "
                       "output with unit weights.")  # fmt: skip
    if active is not None and ids:
        with torch.inference_mode():
            own = residual_stats(active.model, ids)
        st.caption(f"Your model ({active.model.config.norm_position}-LN) on your prompt:")
        st.plotly_chart(residual_stats_figure(own), width="stretch", key="arch_norm_own")


def residual_init_card(config) -> None:
    st.markdown("Each block *adds* two outputs (attention, MLP) to the residual stream. GPT-2 "
                "draws those two projections (`c_proj`) with std 0.02/√(2·n_layer) instead of "
                "0.02, so the stream's size does not grow with depth at the start of training.")  # fmt: skip
    if not needs_config(config):
        return
    try:
        stats = cached_init_comparison(config, current_seed())
    except ValueError as exc:
        st.info(str(exc))
        return
    norm = f"{config.norm_position}-LN"
    chosen = {k: v for k, v in stats.items() if k.startswith(norm)}
    scaled, plain = (chosen[f"{norm}, {init}"].std[-1] for init in ("scaled init (GPT-2)", "plain 0.02 init"))
    cols = st.columns(3)
    cols[0].metric("std after the last block, scaled", f"{float(scaled):.4f}")
    cols[1].metric("std after the last block, plain", f"{float(plain):.4f}")
    cols[2].metric("plain ÷ scaled", f"{float(plain / scaled):.2f}×")
    if config.norm_position == "post":
        st.caption("With post-LN every block ends in a LayerNorm, so both lines sit at std 1: the "
                   "scaling matters for pre-LN, where nothing renormalises the stream.")  # fmt: skip
    st.plotly_chart(residual_comparison_figure(chosen, "std", f"{norm}, {config.n_layer} blocks, at initialisation"),
                    width="stretch", key="arch_residual_init")  # fmt: skip
    show_source(GPT.reset_parameters)


def positions_card(config, active) -> None:
    st.markdown("Attention itself ignores order; a position vector added to each token tells the "
                "model where it is. Sinusoidal vectors are fixed: neighbours look alike from the "
                "start. Learned vectors start as noise and get their structure from training.")  # fmt: skip
    if needs_config(config):
        tables = positions_at_init(config.block_size, config.n_embd, current_seed())
        cols = st.columns(len(tables))
        for col, (name, similarity) in zip(cols, tables.items(), strict=True):
            col.plotly_chart(position_similarity_figure(similarity, name), width="stretch", key=f"arch_pos_{name}")
    if active is not None and active.model.config.pos_encoding == "learned":
        with torch.inference_mode():
            similarity = position_similarity(active.model)[:128, :128]
        st.plotly_chart(position_similarity_figure(similarity, f"{active.label}: learned, after training"),
                        width="stretch", key="arch_pos_own")  # fmt: skip


def embeddings_card(active, ids) -> None:
    st.markdown("Each token id picks one row of `wte`: a vector the model learned. Tokens used "
                "alike end up pointing alike (high cosine similarity).")  # fmt: skip
    if not needs_model(active, ids):
        return
    tokenizer, model = active.tokenizer, active.model
    text = st.text_input("Token to look up", "e", key="arch_embed_token")
    try:
        token_ids = tokenizer.encode(text)
        if not token_ids:
            st.warning("Type a token to look up.")
            return
        with torch.inference_mode():
            near = nearest_tokens(model, token_ids[0], k=10)
            shown = None if model.config.vocab_size <= 300 else sorted({*ids, token_ids[0], *(i for i, _ in near)})
            pca = embedding_pca(model, shown)
    except ValueError as exc:
        st.warning(in_app_words(exc))
        return
    wanted = set(pca.ids) | {i for i, _ in near} | {token_ids[0]}
    labels = {i: tokenizer.token_label(i) for i in wanted}
    cols = st.columns(2)
    cols[0].plotly_chart(nearest_tokens_figure(near, labels, labels[token_ids[0]]), width="stretch", key="arch_near")
    cols[1].plotly_chart(embedding_figure(pca, labels), width="stretch", key="arch_pca")
    if len(token_ids) > 1:
        st.caption(f"{text!r} is {len(token_ids)} tokens; showing the first, {labels[token_ids[0]]!r}.")


def tying_card(config, active) -> None:
    st.markdown("The token embedding `wte` (V × C) turns ids into vectors; the head `lm_head` "
                "(C × V) turns vectors back into a score per token. GPT-2 uses one matrix for both.")  # fmt: skip
    if needs_config(config):
        saving = tying_saving(config)
        cols = st.columns(3)
        cols[0].metric("Untied", f"{saving.untied:,}")
        cols[1].metric("Tied", f"{saving.tied:,}")
        cols[2].metric("Saved", f"{saving.saved:,}", help="vocab_size × n_embd: one whole V × C matrix")
        gpt2 = tying_saving(preset("gpt2"))
        st.caption(f"Tying removes {saving.share:.1%} of this untied model's parameters; for GPT-2 "
                   f"small, {human_count(gpt2.saved)} of {human_count(gpt2.untied)} ({gpt2.share:.0%}): "
                   f"its {preset('gpt2').vocab_size:,}-token vocabulary makes the matrix big.")  # fmt: skip
    if active is not None:
        tied = shares_embedding(active.model)
        st.caption(f"Your model's lm_head and wte {'are one and the same matrix' if tied else 'are two separate matrices'}.")


def output_head_card(active, ids) -> None:
    st.markdown("The last vector goes through `lm_head` to one score (logit) per vocabulary "
                "entry; softmax turns the scores into probabilities that sum to 1: the model's "
                "guess for the next token.")  # fmt: skip
    if not needs_model(active, ids):
        return
    with torch.inference_mode():
        result = output_distribution(active.model, ids, k=10)
    labels = {i: active.tokenizer.token_label(i) for i in result.top_ids}
    st.caption(f"What comes after the last token of your prompt, `{active.tokenizer.token_label(ids[-1])}`:")
    cols = st.columns(3)
    cols[0].metric("Sum of all probabilities", f"{result.total:.6f}")
    cols[1].metric("Entropy", f"{result.entropy_nats:.2f} nats")
    cols[2].metric("A uniform guess", f"{result.uniform_entropy_nats:.2f} nats", help="ln(vocab_size)")
    st.plotly_chart(output_distribution_figure(result, labels), width="stretch", key="arch_output")


CARDS = ["Attention vs RNN", "Masked attention", "Pre-LN vs post-LN", "Residual init",
         "Positions", "Embeddings", "Weight tying", "Output head"]  # fmt: skip


def concept_cards(config, active, ids) -> None:
    tabs = st.tabs(CARDS, key="arch_card", on_change="rerun")  # only the open card computes
    draw = [
        attention_vs_rnn_card,
        lambda: masked_attention_card(active, ids),
        lambda: norm_position_card(config, active, ids),
        lambda: residual_init_card(config),
        lambda: positions_card(config, active),
        lambda: embeddings_card(active, ids),
        lambda: tying_card(config, active),
        lambda: output_head_card(active, ids),
    ]
    for tab, card in zip(tabs, draw, strict=True):
        if tab.open:
            with tab:
                card()


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

st.title("Architecture: inside a GPT")
st.markdown("A GPT is a stack of identical blocks between a token embedding and an output head. "
            "Shape one below and see what it costs; then follow your own text through the active "
            "model, one operation at a time, with the code that computes each step.")  # fmt: skip

st.header("Shape the model")
config = config_ui()
if config is not None:
    size_and_cost(config)

st.header("Follow your text through a model")
active = active_model()
prompt = capped_text(st.text_area("Prompt", DEFAULT_PROMPT, key="arch_prompt", height=80))
traced = trace_target_ui(config, active, prompt)
traced_ids = prompt_ids_ui(traced, prompt) if traced is not None else None
if traced_ids:
    trace_ui(traced, traced_ids)
# The concept cards look at the sidebar's trained model, with the prompt in its own tokens.
ids = traced_ids if traced is not None and active is not None and traced.model is active.model else None
if active is not None and ids is None and prompt:
    try:
        ids = active.tokenizer.encode(prompt)[: min(active.model.config.block_size, MAX_TRACE_TOKENS)] or None
    except ValueError:
        ids = None

st.header("Concepts, each computed live")
concept_cards(config, active, ids)
