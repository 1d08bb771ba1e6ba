"""Training: start a run (a new model, a fine-tune, or more steps of a run) and watch it learn.

UI only. Training runs as a background job owned by ``toygpt.jobs`` (the one global
``job_registry()``; each job in its own process, ``toygpt.job_process``); this page starts a job and shows it in the shared job panel
(``pages/_shared.job_panel``: pinned in the URL as ``?job=...`` so navigation and a browser
refresh find it again, redrawn once a second, Stop), with its metrics and sample under the chart.
Which runs a job may start from, the pace an estimate uses and the vocabulary a tokenizer will
have come from ``toygpt.lessons.training``; costs from ``toygpt.estimates``. Layout: the current
job (if any), then "Start a run". Every run on disk is on the Runs page.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import streamlit as st

from pages._shared import (
    JobPage,
    corpus_missing_ui,
    current_seed,
    describe_job,
    in_app_words,
    job_panel,
    job_registry,
    keep_selection,
    pin_job,
    pinned_job,
    plain,
    runs_on_disk,
    show_flash,
)
from toygpt import data as corpora
from toygpt.compilation import expected_compile
from toygpt.estimates import ASSUMED_FLOPS, estimate, measure_step_seconds
from toygpt.formatting import clock, human_bytes
from toygpt.jobs import JobRefused, TrainStatus
from toygpt.lessons.training import startable_runs, step_pace, steps_per_second, vocab_size_of
from toygpt.model import PRESETS, GPTConfig
from toygpt.pipeline import TrainSpec, memory_parts
from toygpt.resume import plan_resume
from toygpt.runs import RunInfo, open_run, status_now
from toygpt.tokenizers import TIKTOKEN_NAMES, TokenizerError, available_tokenizers, get_tiktoken
from toygpt.train import TrainConfig

JOB_PARAM = "job"  # ?job=<id> in the URL: a refresh (a new session) finds the running job again
UPLOAD = "__upload__"
MODES = {"new": "A new model", "finetune": "Fine-tune a run on another corpus", "resume": "Resume a run"}
TOKENIZERS = {
    "char": "char: one token per character of the corpus",
    "byte": "byte: the 256 byte values",
    "bpe-512": "BPE, 512 tokens, trained on the corpus",
    "bpe-2048": "BPE, 2,048 tokens, trained on the corpus",
    "gpt2": "GPT-2's BPE (50,257 tokens, through tiktoken)",
}
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size")
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def loss_text(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value) else "–"


# --------------------------------------------------------------------------------------------
# The current job: the shared job panel, with this page's metrics and sample under its chart
# --------------------------------------------------------------------------------------------


def metrics_ui(status: TrainStatus) -> None:
    """The live figures; speeds are measured (the median of the recent steps)."""
    cols = st.columns(6)
    cols[0].metric("Step", f"{status.step:,}")
    cols[1].metric("Train loss (batch)", loss_text(status.loss))
    cols[2].metric("Val loss", loss_text(status.val_loss), help=f"best so far: {loss_text(status.best_val_loss)}")
    pace = steps_per_second(status.metrics)
    cols[3].metric("Steps / s", f"{pace:,.1f}" if pace else "–", help="Measured: the median of the recent steps.")
    cols[4].metric("Tokens / s", f"{status.tokens_per_s:,.0f}" if status.tokens_per_s else "–",
                   help="Measured: the median of the recent steps.")
    if status.done:
        cols[5].metric("Time", clock(status.elapsed))
    else:
        cols[5].metric("ETA", clock(status.eta), help="From the measured pace of the recent steps.")


def guess_vs_actual(status: TrainStatus) -> None:
    """Once a run ends: the estimate shown before it started, beside what it did."""
    guess = st.session_state.get("train_guesses", {}).get(status.job_id)
    if guess is None or not status.done:
        return
    how = "measured pace" if guess["measured"] else "a FLOP-count guess"
    st.caption(f"Estimated before starting ({how}): ≈ {guess['steps']:,} steps in ≈ {clock(guess['seconds'])}. "
               f"It did {status.step:,} steps in {clock(status.elapsed)}.")


def sample_ui(status: TrainStatus) -> None:
    sample, interval = status.last_sample, status.sample_interval
    if not sample:
        st.caption(f"No sample yet: the model writes one every {interval} steps." if interval else
                   "Samples are off for this run (sample every 0 steps).")
        return
    st.caption(f"What the model writes at step {sample['step']:,} (from the prompt {sample['prompt']!r}):")
    st.code(sample["text"] or " ", language=None, wrap_lines=True)


def training_details(status: TrainStatus) -> None:
    metrics_ui(status)
    guess_vs_actual(status)
    sample_ui(status)


JOBS = JobPage(
    kind="train", param=JOB_PARAM, key="train", watch_others=True, offer_use=True,
    unknown="The training job in this link is not known to this server (was it restarted?). "
            "Whatever it saved is on the **Runs** page; a stopped run can be resumed.",
    stop_note="Stop ends it after the current step and saves, so it can be resumed.",
    details=training_details,
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Start a run: what to train on, which model, how long; the estimate; Start
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    label: str  # what the run records as its corpus
    text: str | None  # None: not available yet (the page said why)
    uploaded: bool  # the user's own text: it travels with the run (corpus.txt)


@st.cache_resource(max_entries=8, show_spinner="Loading the corpus…")
def corpus_text(name: str, seed: int) -> str:
    return corpora.load_corpus(name, seed)  # str is immutable: safe to share between sessions


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_vocab_size(spec: str, text: str) -> int:
    return vocab_size_of(spec, text)


def read_upload(upload: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not), decoded once per uploaded file, not on every rerun."""
    cached = st.session_state.get("train_upload_cache")
    if cached and cached[0] == upload.file_id:
        return cached[1], cached[2]
    try:
        result: tuple[str | None, str | None] = (corpora.read_user_text(upload.getvalue()), None)
    except corpora.CorpusError as exc:
        result = (None, in_app_words(exc))
    st.session_state["train_upload_cache"] = (upload.file_id, *result)
    return result


def upload_ui() -> Corpus:
    upload = st.file_uploader("Your text (.txt, UTF-8, up to 20 MB)", type=["txt"], key="train_upload",
                              max_upload_size=corpora.DEFAULT_MAX_BYTES // 1_000_000)
    if upload is None:
        st.info("Upload a text file to train on it: notes, code, a book from Project Gutenberg…")
        return Corpus("your text", None, True)
    text, error = read_upload(upload)
    if error:
        st.error(f"**{plain(upload.name)}** cannot be used: {error}")
    return Corpus(upload.name, text, True)


def corpus_ui(key: str) -> Corpus:
    infos = {info.name: info for info in corpora.list_corpora()}
    st.session_state.setdefault(key, "shakespeare" if corpora.cached_corpus_path("shakespeare").is_file() else "copy")
    name = st.selectbox("Corpus", [*infos, UPLOAD], key=key,
                        format_func=lambda n: "your own .txt (upload)" if n == UPLOAD else f"{n} ({infos[n].kind})")
    if name == UPLOAD:
        return upload_ui()
    st.caption(infos[name].description)
    if infos[name].kind == "download" and not corpora.cached_corpus_path(name).is_file():
        corpus_missing_ui(name, "train_corpus_missing")
        return Corpus(name, None, False)
    try:
        return Corpus(name, corpus_text(name, 0), False)
    except corpora.CorpusError as exc:
        st.error(str(exc))
        return Corpus(name, None, False)


def preview_ui(corpus: Corpus) -> None:
    if corpus.text:
        with st.expander(f"Peek at the corpus ({len(corpus.text):,} characters)"):
            st.code(corpus.text[:600], language=None)


def apply_preset() -> None:
    """Callback: the shape fields follow the preset picked."""
    values = PRESETS[st.session_state["train_preset"]]
    for name in SHAPE_KEYS:
        st.session_state[f"train_{name}"] = values[name]


def model_ui() -> GPTConfig | None:
    """Preset + shape; None (with the reason) for an impossible shape. vocab_size comes later."""
    st.session_state.setdefault("train_preset", "small")
    for name in SHAPE_KEYS:
        st.session_state.setdefault(f"train_{name}", PRESETS[st.session_state["train_preset"]][name])
    st.selectbox("Model preset", list(PRESETS), key="train_preset", on_change=apply_preset,
                 help="nano trains in seconds; small is the classic CPU recipe; gpt2 is the real "
                 "GPT-2's shape (too big for this app: see the estimate).")
    with st.expander("Change its shape"):
        cols = st.columns(5)
        n_layer = cols[0].number_input("Layers", 1, 48, key="train_n_layer")
        n_head = cols[1].number_input("Heads", 1, 64, key="train_n_head")
        n_embd = cols[2].number_input("Width (n_embd)", 4, 2048, step=4, key="train_n_embd")
        block_size = cols[3].number_input("Context (tokens)", 2, 2048, key="train_block_size")
        dropout = cols[4].number_input("Dropout", 0.0, 0.9, value=0.0, step=0.05, key="train_dropout")
    try:
        return GPTConfig(n_layer=int(n_layer), n_head=int(n_head), n_embd=int(n_embd),
                         block_size=int(block_size), dropout=float(dropout))
    except ValueError as exc:
        st.error(f"This shape is impossible: {exc}")
        return None


def tokenizer_ui() -> str:
    spec = st.selectbox("Tokenizer", list(TOKENIZERS), key="train_tokenizer", format_func=TOKENIZERS.get)
    missing = available_tokenizers().get(spec) if spec in TIKTOKEN_NAMES else None
    if missing:
        st.caption(f"Not on this machine yet: {missing}")
    return spec


def settings_ui(seed: int) -> TrainConfig | None:
    """How long and how fast; None (with the reason) for settings TrainConfig refuses."""
    defaults = {"train_budget": "seconds", "train_seconds": 60, "train_steps": 1000, "train_lr": 3e-3,
                "train_batch": 12, "train_warmup": 50, "train_eval_every": 200, "train_sample_every": 200}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    budget = st.radio("Stop after", ["seconds", "steps"], horizontal=True, key="train_budget",
                      format_func={"seconds": "a time budget", "steps": "a number of steps"}.get)
    cols = st.columns(3)
    if budget == "seconds":
        seconds = cols[0].number_input("Seconds", 1, 24 * 3600, key="train_seconds")
        limits = {"max_seconds": float(seconds), "max_steps": None}
    else:
        steps = cols[0].number_input("Steps", 1, 1_000_000, key="train_steps")
        limits = {"max_steps": int(steps), "max_seconds": None}
    lr = cols[1].select_slider("Learning rate", LEARNING_RATES, key="train_lr", format_func=lambda v: f"{v:g}")
    batch = cols[2].number_input("Batch size", 1, 1024, key="train_batch")
    with st.expander("More settings"):
        more = st.columns(3)
        warmup = more[0].number_input("Warm-up steps", 0, 100_000, key="train_warmup")
        eval_every = more[1].number_input("Validate every (steps)", 1, 100_000, key="train_eval_every")
        sample_every = more[2].number_input("Write a sample every (steps, 0: never)", 0, 100_000, key="train_sample_every")
    try:
        return TrainConfig(**limits, learning_rate=float(lr), batch_size=int(batch), warmup_steps=int(warmup),
                           eval_interval=int(eval_every), sample_interval=int(sample_every), seed=seed)
    except ValueError as exc:
        st.error(f"These settings cannot train: {exc}")
        return None


@st.cache_resource(max_entries=16, ttl=600, show_spinner="Timing three training steps of this model here…")
def probe_step_seconds(model_config: GPTConfig, config: TrainConfig, threads: int | None) -> float:
    """Seconds per step measured here (kept ten minutes: the machine's load changes)."""
    return measure_step_seconds(model_config, config, num_threads=threads)


def estimate_ui(model_config: GPTConfig, spec: TrainSpec) -> dict[str, Any]:
    """Parameters, memory and time before starting (and a warning when the app would refuse it);
    the estimate, to be shown again beside what the run took. The memory is the number the job
    registry checks (``toygpt.pipeline.memory_parts``)."""
    config = spec.train_config
    threads = job_registry().num_threads
    pace = step_pace(model_config, config, spec.resume, functools.partial(probe_step_seconds, threads=threads), threads)
    est = estimate(model_config, config, seconds_per_step=pace.seconds)
    try:
        memory = memory_parts(spec)
    except ValueError:  # the source run is unreadable: Start says why; show the configs' estimate
        memory = dict(est["memory_bytes"])
    limit = job_registry().max_memory_bytes
    cols = st.columns(3)
    learning = f"{est['trainable_params']:,} of them learn" if est["trainable_params"] < est["params"] else None
    cols[0].metric("Parameters", f"{est['params']:,}", help=learning)
    if learning:
        st.caption(f"Only the last {config.train_last_blocks} block(s) and ln_f learn: {learning}, so "
                   "gradients and AdamW's moments are kept for those alone.")  # fmt: skip
    parts = ", ".join(f"{name} {human_bytes(size, decimals=1)}" for name, size in memory.items() if size)
    cols[1].metric("Memory", human_bytes(sum(memory.values()), decimals=1), help=parts)
    guess = "" if est["measured"] else " (a guess)"
    if config.max_seconds is not None:
        cols[2].metric(f"Steps in the budget{guess}", f"≈ {est['steps']:,}", help=f"{clock(est['seconds'])} of training")
    else:
        cols[2].metric(f"Time{guess}", f"≈ {clock(est['seconds'])}", help=f"{est['steps']:,} steps")
    if est["measured"]:
        timing = f"time comes from {pace.source}, plus the validations"
    else:
        timing = (f"time is a guess: this model is too big to time here, so it assumes "
                  f"{ASSUMED_FLOPS['cpu'] / 1e9:.0f} GFLOP/s for {est['flops_per_step'] / 1e9:,.2f} GFLOP per step")
    compiling = expected_compile(model_config, config)  # "" when this run trains eagerly
    st.caption(
        f"Memory is 4 bytes per parameter for the weights, 12 more per parameter that learns "
        f"(gradients, AdamW's two moments), plus the activations of one batch and the corpus's "
        f"token ids ({parts}); {timing}. Building a BPE tokenizer and encoding the "
        f"corpus{', ' + compiling if compiling else ''} come on top, and another job or page using the CPU "
        "slows it down."
    )
    if sum(memory.values()) > limit:
        st.warning(f"That is above this app's limit of {human_bytes(limit, decimals=1)} per run: pick a smaller preset, "
                   "batch or context, or train it with `python -m toygpt train`.")
    return {"steps": est["steps"], "seconds": est["seconds"], "measured": est["measured"], "source": pace.source}


def run_choices(infos: list[RunInfo], writable: bool) -> list[str]:
    return startable_runs(infos, job_registry().training_runs(), writable)


def new_model_ui(name: str | None, seed: int) -> tuple[TrainSpec | None, GPTConfig | None]:
    left, right = st.columns(2)
    with left:
        corpus = corpus_ui("train_corpus")
        tokenizer = tokenizer_ui()
        preview_ui(corpus)
    with right:
        shape = model_ui()
        config = settings_ui(seed)
    if corpus.text is None or shape is None or config is None:
        return None, None
    spec = TrainSpec(corpus=corpus.label, tokenizer=tokenizer, model=shape, train=config, name=name,
                     corpus_text=corpus.text if corpus.uploaded else None)
    return spec, shape.replace(vocab_size=cached_vocab_size(tokenizer, corpus.text))


def finetune_ui(infos: list[RunInfo], name: str | None, seed: int) -> tuple[TrainSpec | None, GPTConfig | None]:
    from toygpt.pretrained import PRETRAINED_PREFIX, list_pretrained

    pretrained = {PRETRAINED_PREFIX + p.name: p for p in list_pretrained()}
    options = run_choices(infos, writable=False) + list(pretrained)
    if not options:
        st.info("No finished run to fine-tune yet: train a new model first (or add GPT-2 weights on the "
                "Sampling & attention page).")  # fmt: skip
        return None, None
    keep_selection("train_finetune_run", options)
    labels = {key: p.label for key, p in pretrained.items()}
    left, right = st.columns(2)
    with left:
        source = st.selectbox("Start from the weights of", options, key="train_finetune_run",
                              format_func=lambda key: labels.get(key, key),
                              help="Its model and tokenizer are kept; training goes on on the corpus below, in a new run.")
        corpus = corpus_ui("train_finetune_corpus")
        preview_ui(corpus)
    with right:
        config = settings_ui(seed)
        if source in pretrained:
            weights = pretrained[source]
            shape, tokenizer = weights.config, weights.tokenizer.get("encoding") or weights.tokenizer.get("type", "?")
            config = gpt2_finetune_ui(shape, config)
        else:
            info = next(i for i in infos if i.id == source)
            shape, tokenizer = open_run(source).model_config(), info.tokenizer
    note = ": the corpus must use only characters it knows (the job says so if not)" if tokenizer == "char" else ""
    st.caption(f"The new run keeps {labels.get(source, source)}'s model shape and tokenizer ({tokenizer}){note}.")
    if corpus.text is None or config is None:
        return None, None
    spec = TrainSpec(corpus=corpus.label, tokenizer=tokenizer, train=config, name=name, init_from=source,
                     corpus_text=corpus.text if corpus.uploaded else None)  # fmt: skip
    return spec, shape


def gpt2_finetune_ui(shape: GPTConfig, config: TrainConfig | None) -> TrainConfig | None:
    """Fine-tuning a pretrained GPT-2 on two CPU cores: only the last blocks learn, on a short
    context (the memory and time below follow these two numbers)."""
    st.session_state.setdefault("train_ft_blocks", 1)
    st.session_state.setdefault("train_ft_context", min(128, shape.block_size))
    cols = st.columns(2)
    blocks = cols[0].number_input(f"Blocks that learn (the last k of {shape.n_layer})", 1, shape.n_layer,
                                  key="train_ft_blocks",
                                  help="The others, the embeddings and the tied head stay as they are: no gradients "
                                  "and no AdamW state for them, and the backward pass stops early. ln_f learns too.")  # fmt: skip
    context = cols[1].number_input("Context (tokens)", 8, shape.block_size, key="train_ft_context",
                                   help=f"The model reads up to {shape.block_size}; a short context is much cheaper.")
    if config is None:
        return None
    try:
        return config.replace(train_last_blocks=int(blocks), block_size=int(context))
    except ValueError as exc:
        st.error(f"These settings cannot train: {exc}")
        return None


def resume_ui(infos: list[RunInfo]) -> tuple[TrainSpec | None, GPTConfig | None]:
    options = run_choices(infos, writable=True)
    if not options:
        st.info("No run to resume yet (the shipped demo is read-only: fine-tune it instead).")
        return None, None
    keep_selection("train_resume_run", options)
    cols = st.columns(2)
    run_id = cols[0].selectbox("Run", options, key="train_resume_run")
    more = cols[1].number_input("More steps", 1, 1_000_000, value=500, key="train_more_steps")
    info = next(i for i in infos if i.id == run_id)
    plan = plan_resume(run_id, more_steps=int(more))
    saved = plan.saved_config
    st.caption(f"{run_id} is at step {plan.step:,} ({status_now(info, job_registry().training_runs())}); it continues to step "
               f"{plan.config.max_steps:,} with its saved settings (learning rate {saved.learning_rate:g}, "
               f"batch {saved.batch_size}); the learning-rate schedule stretches to the new end.")
    return TrainSpec(corpus=info.corpus, tokenizer=info.tokenizer, train=plan.config, resume=run_id), plan.model_config


def start(spec: TrainSpec, guess: dict[str, Any] | None = None) -> None:
    """Start the job, or say why not (one job at a time: who is running, and when it ends).
    ``guess`` (the estimate shown) is kept, to be shown beside what the run took."""
    registry = job_registry()
    if spec.tokenizer in TIKTOKEN_NAMES and not spec.resume and not spec.init_from:
        try:
            with st.spinner(f"Loading the {spec.tokenizer} tokenizer…"):
                get_tiktoken(spec.tokenizer)
        except TokenizerError as exc:
            st.error(f"Not started: {exc}")
            return
    try:
        job = registry.start(spec)
    except JobRefused as exc:
        st.error(f"Not started: {exc}")
        for other in registry.active():
            st.info(describe_job(other.snapshot()))
        return
    if guess is not None:
        st.session_state.setdefault("train_guesses", {})[job.id] = guess
    pin_job(JOBS, job.id)
    st.rerun()


def launcher_section(infos: list[RunInfo]) -> None:
    st.header("Start a run")
    seed = current_seed()
    mode = st.radio("Start from", list(MODES), horizontal=True, key="train_mode", format_func=MODES.get)
    name = None
    if mode != "resume":  # a resumed run keeps its name
        name = st.text_input("Name of the new run (optional)", key="train_name", max_chars=60,
                             placeholder="e.g. my first model; it becomes the run's id") or None
    try:
        if mode == "new":
            spec, shape = new_model_ui(name, seed)
        elif mode == "finetune":
            spec, shape = finetune_ui(infos, name, seed)
        else:
            spec, shape = resume_ui(infos)
    except (ValueError, OSError) as exc:  # RunError, CheckpointError, CorpusError are ValueErrors
        st.error(f"This cannot start: {in_app_words(exc)}")
        spec, shape = None, None
    guess = None
    if spec is not None and shape is not None:
        guess = estimate_ui(shape, spec)
    if st.button("Start training", key="train_start", type="primary", disabled=spec is None) and spec is not None:
        start(spec, guess)
    if spec is None:
        st.caption("Start is enabled once the corpus, the model and the settings above are usable.")
    elif mode != "resume":
        st.caption(f"Seed {seed} (sidebar): the same seed and settings give the same run.")


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

st.title("Training")
st.markdown("Train a GPT on a corpus right here, on this machine's CPU, and watch its loss fall and "
            "its samples improve. Then pick the run in the sidebar and look inside **that** model. "
            "Every run, to compare, download or delete, is on the **Runs** page.")
show_flash()
all_runs = runs_on_disk()
job_panel(JOBS, *pinned_job(JOBS))
launcher_section(all_runs)
