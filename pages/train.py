"""Training: start a run, watch it learn live, then compare, resume, fine-tune, share or delete runs.

UI only. Training runs on a background thread owned by ``toygpt.jobs`` (the one global
``job_registry()``); this page starts a job and shows it in the shared job panel
(``pages/_shared.job_panel``: pinned in the URL as ``?job=...`` so navigation and a browser
refresh find it again, redrawn once a second, Stop), with its metrics and sample under the chart.
Runs on disk come from ``toygpt.runs``; estimates from ``toygpt.estimates.estimate``; figures from
``toygpt.viz``. Layout: the current job (if any), "Start a run", then "Your runs".
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
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
)
from toygpt import data as corpora
from toygpt.compilation import expected_compile
from toygpt.estimates import ASSUMED_FLOPS, estimate, measure_step_seconds, recent_step_seconds
from toygpt.formatting import clock, human_bytes
from toygpt.jobs import JobRefused, TrainSpec, TrainStatus, memory_parts
from toygpt.lab import is_lab_run
from toygpt.limits import MemoryBudgetError
from toygpt.model import PRESETS, GPTConfig, total_parameters
from toygpt.resume import plan_resume
from toygpt.run_archive import export_run_hf_zip, export_zip, import_zip
from toygpt.runs import (
    RunError,
    RunInfo,
    delete_run,
    list_runs,
    open_run,
    read_metrics,
    status_now,
)
from toygpt.status import Status
from toygpt.tokenizers import (
    TIKTOKEN_NAMES,
    CharTokenizer,
    TokenizerError,
    available_tokenizers,
    get_tiktoken,
    parse_tokenizer_name,
)
from toygpt.train import TrainConfig
from toygpt.viz import loss_curves_figure

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
PROBE_MAX_PARAMS = 30_000_000  # above this a 3-step timing probe takes too long for a page: guessed instead
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()<>!#|~$])")


# --------------------------------------------------------------------------------------------
# Small helpers: formatting, the pinned job, messages that survive a rerun
# --------------------------------------------------------------------------------------------


def plain(text: str) -> str:
    """Text a user controls (file names, messages quoting a zip's contents) shown literally in
    markdown: ``"[x](http://y)"`` must not become a link."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def loss_text(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value) else "–"


def flash(kind: str, text: str) -> None:
    """A message shown after the next rerun (st.rerun would wipe one drawn now)."""
    st.session_state["train_flash"] = (kind, text)


def show_flash() -> None:
    kind, text = st.session_state.pop("train_flash", (None, None))
    if kind:
        getattr(st, kind)(text)


# --------------------------------------------------------------------------------------------
# The current job: the shared job panel, with this page's metrics and sample under its chart
# --------------------------------------------------------------------------------------------


def steps_per_second(metrics: list[dict[str, Any]]) -> float | None:
    """The measured pace of the latest logged step (the trainer's median of its recent steps)."""
    ms = next((row.get("ms_per_step") for row in reversed(metrics) if row.get("type") == "step"), None)
    return 1000 / ms if isinstance(ms, int | float) and ms > 0 else None


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
            "Whatever it saved is in **Your runs** below; a stopped run can be resumed.",
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


@st.cache_data(max_entries=8, show_spinner=False)
def char_vocab_size(text: str) -> int:
    return CharTokenizer.from_text(text).vocab_size


def read_upload(upload: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not), decoded once per uploaded file, not on every rerun."""
    cached = st.session_state.get("train_upload_cache")
    if cached and cached[0] == upload.file_id:
        return cached[1], cached[2]
    try:
        result: tuple[str | None, str | None] = (corpora.read_user_text(upload.getvalue()), None)
    except corpora.CorpusError as exc:
        result = (None, str(exc))
    st.session_state["train_upload_cache"] = (upload.file_id, *result)
    return result


def upload_ui() -> Corpus:
    upload = st.file_uploader("Your text (.txt, UTF-8, up to 20 MB)", type=["txt"], key="train_upload")
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


def vocab_size_of(spec: str, text: str) -> int:
    fixed = parse_tokenizer_name(spec).vocab_size  # None for char: it depends on the text
    return char_vocab_size(text) if fixed is None else fixed


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


def pace_of(model_config: GPTConfig, config: TrainConfig, resume: str | None) -> tuple[float | None, str]:
    """(seconds per step, where that figure comes from): a resumed run's own recent pace, else a
    timed probe of this shape; None for models too big to probe (the estimate then says so)."""
    if resume:
        try:
            own = recent_step_seconds(read_metrics(resume))
        except (RunError, OSError):
            own = None
        if own:
            return own, f"{resume}'s own pace over its last logged steps ({1 / own:,.1f} steps/s)"
    if total_parameters(model_config) > PROBE_MAX_PARAMS:
        return None, ""
    threads = job_registry().num_threads
    try:
        seconds = probe_step_seconds(model_config, config.replace(max_steps=1, max_seconds=None), threads)
    except MemoryBudgetError:  # the probe itself would not fit: the memory warning below says why
        return None, ""
    return seconds, (f"3 training steps of this model timed here just now, on the {threads or 'default'} "
                     f"thread{'s' if threads != 1 else ''} a job gets ({1 / seconds:,.1f} steps/s)")


def estimate_ui(model_config: GPTConfig, spec: TrainSpec) -> dict[str, Any]:
    """Parameters, memory and time before starting (and a warning when the app would refuse it);
    the estimate, to be shown again beside what the run took. The memory is the number the job
    registry checks (``toygpt.jobs.memory_parts``)."""
    config, resume = spec.train_config, spec.resume
    pace, source = pace_of(model_config, config, resume)
    est = estimate(model_config, config, seconds_per_step=pace)
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
        timing = f"time comes from {source}, plus the validations"
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
    return {"steps": est["steps"], "seconds": est["seconds"], "measured": est["measured"], "source": source}


def training_now() -> set[str]:
    """Ids of the runs this server is training at this moment."""
    return job_registry().training_runs()


def run_choices(infos: list[RunInfo], writable: bool) -> list[str]:
    """Runs a new job can start from: not being trained right now (and not the demo, to resume)."""
    busy = training_now()
    return [i.id for i in infos if i.id not in busy and i.status != Status.UNREADABLE and not (writable and i.read_only)]


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
    return spec, shape.replace(vocab_size=vocab_size_of(tokenizer, corpus.text))


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
    st.caption(f"{run_id} is at step {plan.step:,} ({status_now(info, training_now())}); it continues to step "
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
# Your runs: table, loss curves, manage (download, upload, delete, resume, fine-tune)
# --------------------------------------------------------------------------------------------


def shape_text(config: dict[str, Any]) -> str:
    try:
        return f"{config['n_layer']}L × {config['n_head']}H × {config['n_embd']}, context {config['block_size']}"
    except KeyError:
        return "?"


def parameters_of(config: dict[str, Any]) -> int | None:
    try:
        return total_parameters(GPTConfig.from_dict(config))
    except (ValueError, TypeError):
        return None


def training_time(info: RunInfo) -> float | None:
    try:
        elapsed = open_run(info.id).info().get("elapsed")
    except (ValueError, OSError):
        return None
    return float(elapsed) if isinstance(elapsed, int | float) else None


def live_snapshots() -> dict[str, TrainStatus]:
    """run id -> the snapshot of the job training it now (its run.json lags: saved at checkpoints)."""
    snaps = (job.snapshot() for job in job_registry().active())
    return {snap.run_id: snap for snap in snaps if isinstance(snap, TrainStatus) and snap.run_id}


def runs_table(infos: list[RunInfo]) -> pd.DataFrame:
    """One row per run; numbers stay numbers (missing ones are nulls, not text). A run being
    trained shows its job's step, best val loss and time as of this redraw, and says so."""
    live = live_snapshots()
    busy = set(live)
    rows = []
    for i in infos:
        snap = live.get(i.id)
        rows.append({
            "run": i.id, "status": f"{status_now(i, busy)} (as of {time.strftime('%H:%M:%S')}; live above)"
            if snap else status_now(i, busy), "corpus": i.corpus, "tokenizer": i.tokenizer,
            "model": shape_text(i.model_config), "parameters": parameters_of(i.model_config),
            "steps": snap.step if snap else i.steps,
            "best val loss": snap.best_val_loss if snap else i.best_val_loss,
            "training time": clock(snap.elapsed if snap else training_time(i)), "created": i.created,
        })  # fmt: skip
    return pd.DataFrame(rows).astype({"parameters": "Int64", "best val loss": "float64"})


def eval_rows(run_id: str) -> list[dict[str, Any]]:
    """A run's validation measurements (an "end" row repeats the last *batch* loss as train_loss)."""
    return [row for row in read_metrics(run_id) if row.get("type") == "eval"]


def with_curves(ids: list[str], wanted: int) -> list[str]:
    """The first ``wanted`` of ``ids`` that have a loss curve to draw (a lab result may have none)."""
    found = []
    for run_id in ids:
        try:
            if eval_rows(run_id):
                found.append(run_id)
        except (RunError, OSError):
            continue
        if len(found) == wanted:
            break
    return found


def compare_ui(infos: list[RunInfo]) -> None:
    ids = [i.id for i in infos if i.status != Status.UNREADABLE]
    if "train_compare" in st.session_state:
        st.session_state["train_compare"] = [r for r in st.session_state["train_compare"] if r in ids]
    else:
        st.session_state["train_compare"] = with_curves(ids, 3)
    cols = st.columns([3, 1], vertical_alignment="bottom")  # room for "Log scale" at 800 px
    chosen = cols[0].multiselect("Compare the loss curves of", ids, key="train_compare")
    log_y = cols[1].toggle("Log scale", key="train_compare_log")
    curves = {}
    for run_id in chosen:
        try:
            curves[run_id] = eval_rows(run_id)
        except (RunError, OSError) as exc:
            st.warning(f"{run_id}: {exc}")
    if not any(curves.values()):
        st.caption("Pick runs above to compare their train and validation loss.")
        return
    st.plotly_chart(loss_curves_figure(curves, log_y=log_y), width="stretch", key="train_compare_chart")
    st.caption("Measured at each validation: solid is the training split, dashed the held-out split. "
               "When dashed climbs while solid falls, the model is memorising (overfitting).")


def set_up(mode: str, key: str, run_id: str) -> None:
    """Callback: prepare "Start a run" (above) to resume or fine-tune ``run_id``."""
    st.session_state["train_mode"] = mode
    st.session_state[key] = run_id
    st.toast(f"{MODES[mode]}: {run_id} is set up in **Start a run** above.")


def delete_ui(info: RunInfo) -> None:
    busy = info.id in training_now()
    why = ("the shipped demo model cannot be deleted" if info.read_only else
           "it is training right now: stop it first" if busy else None)
    if st.session_state.get("train_confirm_delete") != info.id:
        st.button(f"Delete {info.id}…", key="train_delete", disabled=why is not None, help=why,
                  on_click=lambda: st.session_state.update(train_confirm_delete=info.id))
        return
    st.warning(f"Delete **{info.id}** and all its files for good?")
    yes, no = st.columns(2)
    if yes.button(f"Yes, delete {info.id}", key="train_delete_yes", type="primary"):
        st.session_state.pop("train_confirm_delete", None)
        after = neighbour(info.id)
        try:
            delete_run(info.id)
        except (RunError, OSError) as exc:
            st.error(f"Not deleted: {exc}")
            return
        flash("success", f"Deleted {info.id}.")
        st.session_state["train_manage_next"] = after
        st.rerun()
    no.button("Cancel", key="train_delete_no", on_click=lambda: st.session_state.pop("train_confirm_delete", None))


def neighbour(run_id: str) -> str | None:
    """The run listed after ``run_id`` (else before it): what Manage shows once it is deleted."""
    ids = [i.id for i in list_runs()]
    if run_id not in ids or len(ids) < 2:
        return None
    at = ids.index(run_id)
    return ids[at + 1] if at + 1 < len(ids) else ids[at - 1]


def manage_ui(infos: list[RunInfo]) -> None:
    ids = [i.id for i in infos]
    wanted = st.session_state.pop("train_manage_next", None)  # a run just imported, or deleted's neighbour
    if wanted in ids:
        st.session_state["train_manage_run"] = wanted
    keep_selection("train_manage_run", ids)
    run_id = st.selectbox("Run", ids, key="train_manage_run")
    info = next(i for i in infos if i.id == run_id)
    busy = training_now()
    status = status_now(info, busy)
    if status == Status.INTERRUPTED:
        st.caption("interrupted: this server is not training it (stopped or crashed mid-run, or it "
                   "trains in another process such as the CLI). Resume continues from its last save.")
    elif info.message:
        st.caption(f"{status}: {plain(info.message)}")
    cols = st.columns(4)
    cols[0].download_button("Download .zip", data=functools.partial(export_zip, run_id), file_name=f"{run_id}.zip",
                            mime="application/zip", key="train_download", on_click="ignore",
                            help="The whole run folder: weights, tokenizer, configs, logs and snapshots.")
    hf_download_ui(cols[3], info)
    cols[1].button("Resume…", key="train_resume", disabled=info.read_only or run_id in busy,
                   on_click=set_up, args=("resume", "train_resume_run", run_id))
    cols[2].button("Fine-tune…", key="train_finetune", disabled=run_id in busy,
                   on_click=set_up, args=("finetune", "train_finetune_run", run_id))
    delete_ui(info)


def hf_download_ui(column: Any, info: RunInfo) -> None:
    """The run as a Hugging Face GPT-2 folder (zipped), or why GPT-2's format cannot hold it."""
    from toygpt.hf_format import gpt2_format_problems

    try:
        problems = gpt2_format_problems(GPTConfig.from_dict(info.model_config))
    except (TypeError, ValueError) as exc:
        problems = [f"its model config cannot be read ({exc})"]
    column.download_button(
        "Download for 🤗 transformers", data=functools.partial(export_run_hf_zip, info.id),
        file_name=f"{info.id}-hf.zip", mime="application/zip", key="train_download_hf", on_click="ignore",
        disabled=bool(problems),
        help=("Cannot be exported: " + "; ".join(problems)) if problems else
        "A folder GPT2LMHeadModel.from_pretrained loads (same logits), with the tokenizer and a README "
        "saying how to encode text. Same as `python -m toygpt runs export-hf`.",
    )  # fmt: skip
    if problems:
        column.caption("GPT-2's format cannot hold this variant: " + problems[0].split(":")[0])


def import_ui() -> None:
    """Each uploaded zip is imported once (not on every rerun while it sits in the uploader)."""
    upload = st.file_uploader("Upload a run (.zip from **Download .zip** or `python -m toygpt runs export`)",
                              type=["zip"], key="train_import")
    if upload is None:
        return
    done = st.session_state.get("train_imported", {})
    if upload.file_id not in done:
        try:
            run_id = import_zip(upload.getvalue())
            done[upload.file_id] = ("success", f"Imported {plain(upload.name)} as the run **{run_id}**.")
            st.session_state["train_manage_next"] = run_id  # Manage shows the run just imported
        except RunError as exc:  # the reason may quote the zip's member names: shown literally
            done[upload.file_id] = ("error", f"{plain(upload.name)} was rejected: {plain(str(exc))}")
        st.session_state["train_imported"] = done
        if done[upload.file_id][0] == "success":
            st.rerun()  # the sidebar and the table above list it
    kind, text = done[upload.file_id]
    getattr(st, kind)(text)


def lab_filter_ui(infos: list[RunInfo]) -> list[RunInfo]:
    """The learner's own runs; the Concepts lab's results only when asked (they live in the lab)."""
    from_lab = [i for i in infos if is_lab_run(i)]
    if not from_lab:
        return infos
    shown = st.toggle(f"Also list the Concepts lab's runs ({len(from_lab)})", key="train_show_lab",
                      help="Each lab experiment saves its result as a run; the lab page shows them.")
    return infos if shown else [i for i in infos if not is_lab_run(i)]


def runs_section(infos: list[RunInfo]) -> None:
    st.header("Your runs")
    show_flash()
    infos = lab_filter_ui(infos)
    if infos:
        st.dataframe(runs_table(infos), hide_index=True, width="stretch", key="train_runs_table",
                     column_config={"best val loss": st.column_config.NumberColumn(
                         format="%.3f", help="The lowest validation loss measured while it trained "
                         "(each measurement: the run's eval batches of held-out text; Home and the "
                         "sidebar show this same figure)."),
                                    "parameters": st.column_config.NumberColumn(format="localized")})
        compare_ui(infos)
    else:
        st.info("No runs yet: start one above, or upload a run's .zip below.")
    left, right = st.columns(2)
    with left:
        st.subheader("Manage a run")
        if infos:
            manage_ui(infos)
        else:
            st.caption("Nothing to manage yet.")
    with right:
        st.subheader("Upload a run")
        import_ui()


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

st.title("Training")
st.markdown("Train a GPT on a corpus right here, on this machine's CPU, and watch its loss fall and "
            "its samples improve. Then pick the run in the sidebar and look inside **that** model.")
try:
    all_runs = list_runs()
except OSError as exc:
    st.error(f"Cannot read the runs folder: {exc}. Set TOYGPT_RUNS_DIR to a folder you can write.")
    all_runs = []
job_panel(JOBS, *pinned_job(JOBS))
launcher_section(all_runs)
runs_section(all_runs)
