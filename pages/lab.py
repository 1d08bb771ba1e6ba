"""Concepts lab: claims about transformers, each an experiment the user runs and reads.

UI only. Every experiment lives in ``toygpt.lab`` (parameters, a run function, a reading computed
from the numbers, figures); this page draws the setup, starts a ``LabJob`` through the one global
``job_registry()`` (the training launcher's registry, so one CPU-heavy job runs at a time), shows
it in the shared job panel (``pages/_shared.job_panel``, pinned as ``?lab_job=...``), and shows
saved results (runs tagged ``lab:<experiment>``), newest first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from pages._shared import (
    JobPage,
    capped_text,
    corpus_missing_ui,
    current_seed,
    describe_job,
    in_app_words,
    job_panel,
    job_registry,
    keep_selection,
    pin_job,
    pinned_job,
    show_source,
)
from toygpt import data as corpora
from toygpt import lab
from toygpt.checkpoint import CheckpointError
from toygpt.jobs import JobRefused
from toygpt.runs import DEMO_RUN, RunError, list_runs, open_run, usable_as_model
from toygpt.status import Status
from toygpt.tokenizers import TokenizerError
from toygpt.viz import tidy_log_axes

JOB_PARAM = "lab_job"  # ?lab_job=<id>: navigation and refresh find the running experiment again
NAMES = list(lab.EXPERIMENTS)
PASTE, UPLOAD = "__paste__", "__upload__"
TOKENIZER_CHOICES = ["char", "byte", "bpe-300", "bpe-512", "bpe-1024", "bpe-2048", "gpt2"]
DEPTH_CHOICES = [1, 2, 3, 4, 6, 8, 12, 16]
JOBS = JobPage(
    kind="lab", param=JOB_PARAM, key="lab", finished_note="The result is shown below.", curves_when_done=False,
    watch_others=True,  # another tab sees a running experiment, and is offered its link (and Stop)
    unknown="The experiment in this link is not known to this server (was it restarted?). "
            "Whatever finished was saved: pick it under **Result**.",
    stop_note="Stop ends it after the current step; a stopped experiment saves nothing.",
)  # fmt: skip


def key_of(name: str) -> str:
    """Widget-key part of an experiment name: ``"norm-position"`` → ``"norm_position"``."""
    return name.replace("-", "_")


# --------------------------------------------------------------------------------------------
# Setups: widgets in, validated parameters out (None, with the reason shown, when invalid)
# --------------------------------------------------------------------------------------------


def training_ui(key: str, defaults: lab.TrainingSetup, corpora_names: list[str]) -> dict[str, Any]:
    """The knobs every training experiment shares, in one row."""
    cols = st.columns(4)
    chosen = dict(
        preset=cols[0].selectbox("Model preset", lab.TRAIN_PRESETS, index=lab.TRAIN_PRESETS.index(defaults.preset),
                                 key=f"lab_{key}_preset", help="nano: 2 layers, 64 wide; small: 4 layers, 128 wide."),
        corpus=cols[1].selectbox("Corpus", corpora_names, index=corpora_names.index(defaults.corpus),
                                 key=f"lab_{key}_corpus", help="Built-in corpora are generated here, offline; "
                                 "shakespeare is downloaded on first use."),
        steps=int(cols[2].number_input("Steps per training", 1, lab.MAX_STEPS, defaults.steps, step=50,
                                       key=f"lab_{key}_steps")),
        learning_rate=float(cols[3].number_input("Learning rate", 1e-6, 1.0, defaults.learning_rate, step=1e-3,
                                                 format="%.4f", key=f"lab_{key}_lr")),
    )  # fmt: skip
    return chosen


def all_corpora() -> list[str]:
    return list(corpora.BUILTIN) + list(corpora.DOWNLOADS)


def corpus_ready(name: str, key: str) -> bool:
    """Built-in corpora always are; a downloadable one only once it is in the cache (a job must
    not start only to fail on the download): otherwise the same download-or-upload as the
    Training and Tokenizer pages."""
    if name not in corpora.DOWNLOADS or corpora.cached_corpus_path(name).is_file():
        return True
    corpus_missing_ui(name, f"lab_{key}_corpus_missing")
    return False


def norm_position_ui(key: str, seed: int) -> lab.norm_position.NormPositionParams | None:
    d = lab.norm_position.NormPositionParams()
    chosen = training_ui(key, d, all_corpora())
    cols = st.columns([2, 1])
    sweep = cols[0].checkbox("Then raise the learning rate, with no warmup, until one of them diverges",
                             value=d.lr_sweep, key=f"lab_{key}_sweep",
                             help=f"Learning rates {', '.join(f'{lr:g}' for lr in d.sweep_lrs)}; both variants at "
                             "each, stopping at the first that breaks one of them.")  # fmt: skip
    sweep_steps = int(cols[1].number_input("Steps per sweep training", 1, lab.MAX_STEPS, d.sweep_steps, step=25,
                                           key=f"lab_{key}_sweep_steps", disabled=not sweep))  # fmt: skip
    if not corpus_ready(chosen["corpus"], key):
        return None
    return lab.norm_position.NormPositionParams(**chosen, lr_sweep=sweep, sweep_steps=sweep_steps, seed=seed)


def residual_scaling_ui(key: str, seed: int) -> lab.residual_scaling.ResidualScalingParams | None:
    d = lab.residual_scaling.ResidualScalingParams()
    chosen = training_ui(key, d, all_corpora())
    depths = st.multiselect("Depths (layers)", DEPTH_CHOICES, default=list(d.depths), key=f"lab_{key}_depths",
                            help="Each depth is trained twice: with and without the scaling. Width and heads "
                            "come from the preset.")  # fmt: skip
    if not corpus_ready(chosen["corpus"], key):
        return None
    return lab.residual_scaling.ResidualScalingParams(**chosen, depths=tuple(depths), seed=seed)


def positions_ui(key: str, seed: int) -> lab.positions.PositionParams:
    d = lab.positions.PositionParams()
    chosen = training_ui(key, d, list(lab.positions.ORDER_CORPORA))
    st.caption("toy-english is learned within the budget (spelling and word order depend on order); "
               "the question|answer tasks need position too, but take a small model far longer than two minutes.")
    return lab.positions.PositionParams(**chosen, seed=seed)


def text_source_ui(key: str) -> tuple[str, str | None] | None:
    """(corpus name, your text or None), or None when the chosen text is unusable (said why)."""
    options = all_corpora() + [PASTE, UPLOAD]
    labels = {PASTE: "paste your own text", UPLOAD: "upload a .txt file"}
    source = st.selectbox("Text", options, index=options.index("toy-english"), key=f"lab_{key}_source",
                          format_func=lambda o: labels.get(o, o))  # fmt: skip
    if source == PASTE:
        text = capped_text(st.text_area("Your text", key=f"lab_{key}_text", height=150,
                                        placeholder="Paste a few thousand characters or more…"))  # fmt: skip
        return ("your text", text) if text.strip() else _no_text("Paste some text to measure the tokenizers on.")
    if source == UPLOAD:
        upload = st.file_uploader("A UTF-8 text file (up to 20 MB)", type=["txt"], key=f"lab_{key}_upload",
                                  max_upload_size=corpora.DEFAULT_MAX_BYTES // 1_000_000)
        if upload is None:
            return _no_text("Upload a text file to measure the tokenizers on.")
        try:
            return "your text", capped_text(corpora.read_user_text(upload.getvalue()))
        except corpora.CorpusError as exc:
            st.error(f"That file cannot be used: {in_app_words(exc)}")
            return None
    return (source, None) if corpus_ready(source, key) else None


def _no_text(message: str) -> None:
    st.info(message)
    return None


def tokenization_ui(key: str, seed: int) -> lab.tokenization.TokenizationParams | None:
    d = lab.tokenization.TokenizationParams()
    text = text_source_ui(key)
    cols = st.columns([3, 1, 1])
    names = cols[0].multiselect("Tokenizers", TOKENIZER_CHOICES, default=list(d.tokenizers), key=f"lab_{key}_tokenizers",
                                help="BPE vocabularies are trained on this text; gpt2 is GPT-2's own tokenizer "
                                "(50,257 tokens), which works offline.")  # fmt: skip
    block = int(cols[1].number_input("Block size (tokens)", 4, 1024, d.block_size, step=16, key=f"lab_{key}_block"))
    seconds = float(cols[2].number_input("Training seconds each", 0.0, 120.0, d.train_seconds, step=5.0,
                                         key=f"lab_{key}_seconds", help="0 skips training: only the counts."))  # fmt: skip
    if text is None:
        return None
    corpus, own = text
    return lab.tokenization.TokenizationParams(corpus=corpus, text=own, tokenizers=tuple(names),
                                  block_size=block, train_seconds=seconds, seed=seed)  # fmt: skip


def run_choices() -> list[str]:
    """Trained runs to learn on or look inside (lab runs whose weights are a by-product are left out)."""
    ids = [i.id for i in list_runs() if usable_as_model(i)]
    first = [r for r in (st.session_state.get("active_run"), DEMO_RUN) if r in ids][:1]
    return first + [i for i in ids if i not in first]


def run_picker_ui(key: str) -> str | None:
    ids = run_choices()
    if not ids:
        st.info("No trained model yet (the demo model is missing too): train one on the Training page first.")
        return None
    keep_selection(f"lab_{key}_run_id", ids)  # a deleted run is replaced, in the browser too
    return st.selectbox("Trained run", ids, key=f"lab_{key}_run_id",
                        help="The sidebar's model comes first. It is only read: the experiment works on a copy.")


def single_example_ui(key: str, seed: int) -> lab.single_example.SingleExampleParams | None:
    d = lab.single_example.SingleExampleParams()
    run_id = run_picker_ui(key)
    sentence = st.text_input("One sentence to learn", d.sentence, key=f"lab_{key}_sentence", max_chars=2000)
    cols = st.columns(4)
    steps = int(cols[0].number_input("Gradient steps (k)", 1, 500, d.steps, key=f"lab_{key}_steps"))
    lr = float(cols[1].number_input("Learning rate", 1e-7, 1.0, d.learning_rate, step=1e-4, format="%.5f",
                                    key=f"lab_{key}_lr"))  # fmt: skip
    optimizer = cols[2].selectbox("Optimizer", ["adam", "sgd"], key=f"lab_{key}_optimizer",
                                  help="adam: what training uses; sgd: the textbook w ← w − lr·gradient.")  # fmt: skip
    prompt = cols[3].text_input("Sample prompt", d.sample_prompt, key=f"lab_{key}_prompt",
                                help="Samples before and after start from this (empty: the model's start token).")  # fmt: skip
    if run_id is None or not sentence_fits(run_id, sentence):
        return None
    return lab.single_example.SingleExampleParams(run_id=run_id, sentence=sentence, steps=steps, learning_rate=lr,
                                   optimizer=optimizer, sample_prompt=prompt, seed=seed)  # fmt: skip


def sentence_fits(run_id: str, sentence: str) -> bool:
    """Check, before any job starts, that the run's tokenizer can encode the sentence."""
    try:
        open_run(run_id).tokenizer().encode(sentence)
    except (TokenizerError, RunError, CheckpointError) as exc:
        st.error(f"{run_id}'s tokenizer cannot read this sentence: {in_app_words(exc)}")
        return False
    return True


def attention_range_ui(key: str, seed: int) -> lab.attention_range.AttentionRangeParams | None:
    d = lab.attention_range.AttentionRangeParams()
    run_id = run_picker_ui(key)
    cols = st.columns(2)
    windows = int(cols[0].number_input("Validation windows", 1, 256, d.windows, key=f"lab_{key}_windows"))
    far = int(cols[1].number_input("'Far' means at least this many tokens back", 1, 4096, d.far, key=f"lab_{key}_far"))
    return None if run_id is None else lab.attention_range.AttentionRangeParams(run_id=run_id, windows=windows, far=far, seed=seed)


def extrapolation_ui(key: str, seed: int) -> lab.extrapolation.ExtrapolationParams | None:
    d = lab.extrapolation.ExtrapolationParams()
    chosen = training_ui(key, d, all_corpora())
    cols = st.columns([1, 3])
    block = int(cols[0].number_input("Training context T (tokens)", 8, 256, d.block_size, step=8, key=f"lab_{key}_block",
                                     help="Each model trains on windows of T tokens, then reads windows of 4T."))  # fmt: skip
    encodings = cols[1].multiselect("Position encodings", lab.extrapolation.ENCODINGS, default=list(d.encodings),
                                    key=f"lab_{key}_encodings")  # fmt: skip
    if not corpus_ready(chosen["corpus"], key):
        return None
    return lab.extrapolation.ExtrapolationParams(**chosen, block_size=block, encodings=tuple(encodings), seed=seed)


def recurrence_ui(key: str, seed: int) -> lab.recurrence.RecurrenceParams | None:
    d = lab.recurrence.RecurrenceParams()
    chosen = training_ui(key, d, all_corpora())
    cols = st.columns(2)
    layers = int(cols[0].number_input("LSTM layers", 1, 8, d.lstm_layers, key=f"lab_{key}_layers",
                                      help="Its width is then chosen so that its parameter count matches the preset's."))  # fmt: skip
    prompt = cols[1].text_input("Sample prompt", d.sample_prompt, key=f"lab_{key}_prompt", max_chars=200)
    st.caption("The LSTM lives in the lab only: the saved run keeps the transformer's weights, so the sidebar and "
               "the explorer (whose views are attention maps, which an LSTM does not have: it carries one state "
               "of h and c vectors per layer instead) never offer it.")  # fmt: skip
    if not corpus_ready(chosen["corpus"], key):
        return None
    return lab.recurrence.RecurrenceParams(**chosen, lstm_layers=layers, sample_prompt=prompt, seed=seed)


def weight_tying_ui(key: str, seed: int) -> lab.weight_tying.WeightTyingParams | None:
    chosen = training_ui(key, lab.weight_tying.WeightTyingParams(), all_corpora())
    return lab.weight_tying.WeightTyingParams(**chosen, seed=seed) if corpus_ready(chosen["corpus"], key) else None


def induction_ui(key: str, seed: int) -> lab.induction.InductionParams:
    d = lab.induction.InductionParams()
    cols = st.columns(3)
    steps = int(cols[0].number_input("Training steps", 10, 20_000, d.steps, step=100, key=f"lab_{key}_steps"))
    vocab = int(cols[1].number_input("Alphabet (random letters)", 8, len(lab.induction.ALPHABET), d.vocab,
                                     key=f"lab_{key}_vocab"))  # fmt: skip
    length = int(cols[2].number_input("Window (tokens)", 8, 128, d.length, step=8, key=f"lab_{key}_length"))
    return lab.induction.InductionParams(steps=steps, vocab=vocab, length=length, seed=seed)


def scaling_ui(key: str, seed: int) -> lab.scaling.ScalingParams | None:
    d = lab.scaling.ScalingParams()
    names = all_corpora()
    cols = st.columns(3)
    corpus = cols[0].selectbox("Corpus", names, index=names.index(d.corpus), key=f"lab_{key}_corpus")
    sizes = cols[1].multiselect("Sizes (layers x width x heads)", lab.scaling.LADDER, default=list(d.sizes),
                                key=f"lab_{key}_sizes")  # fmt: skip
    compute = float(cols[2].select_slider("Largest budget (training FLOPs)", [2.5e10, 5e10, 1e11, 2e11, 4e11, 8e11],
                                          value=d.max_compute, key=f"lab_{key}_compute", format_func=lambda c: f"{c:.2g}"))  # fmt: skip
    st.caption("Longer budgets and larger sizes: `python -m toygpt lab scaling --max-compute 1e13 --sizes ...` "
               "(on a GPU with `--device cuda`); its result appears below like any other.")  # fmt: skip
    if not corpus_ready(corpus, key):
        return None
    ordered = tuple(size for size in lab.scaling.LADDER if size in sizes)
    return lab.scaling.ScalingParams(corpus=corpus, sizes=ordered, max_compute=compute, seed=seed)


SETUPS = {
    "norm-position": norm_position_ui,
    "residual-scaling": residual_scaling_ui,
    "positions": positions_ui,
    "tokenization": tokenization_ui,
    "single-example": single_example_ui,
    "attention-range": attention_range_ui,
    "extrapolation": extrapolation_ui,
    "recurrence": recurrence_ui,
    "weight-tying": weight_tying_ui,
    "induction-heads": induction_ui,
    "scaling": scaling_ui,
}


def params_ui(name: str) -> Any | None:
    """The experiment's validated parameters (the tiny setting when asked), or None."""
    key = key_of(name)
    tiny = st.toggle("Quick look: a tiny setting that finishes in seconds (noisy numbers, for trying the page)",
                     key=f"lab_{key}_tiny")  # fmt: skip
    if tiny:
        changes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in lab.EXPERIMENTS[name].tiny.items())
        st.caption(f"The quick look replaces these settings: {changes}.")
    try:
        params = SETUPS[name](key, current_seed())
    except lab.LabError as exc:
        st.error(f"Check the setup: {exc}")
        return None
    if params is not None and tiny:
        params = replace(params, **lab.EXPERIMENTS[name].tiny)
    return params


# --------------------------------------------------------------------------------------------
# The running job: pinned in the URL, redrawn in a fragment, summarised once done
# --------------------------------------------------------------------------------------------


def start(name: str, params: Any) -> None:
    registry = job_registry()
    try:
        job = registry.start_job(lab.LabJob(name, params, num_threads=registry.num_threads, worker=registry.worker))
    except JobRefused as exc:
        st.error(f"Not started: {exc}")
        for other in registry.active():
            st.info(describe_job(other.snapshot()) + " Stop it on its page, or wait.")
        return
    pin_job(JOBS, job.id)
    st.rerun()


def show_new_result(job: lab.LabJob) -> None:
    """Once per finished job: make its saved run the result shown below (before that widget exists)."""
    status = job.snapshot()
    seen = st.session_state.setdefault("lab_seen_jobs", set())
    if status.status == Status.FINISHED and status.run_id and job.id not in seen:
        seen.add(job.id)
        st.session_state["lab_experiment"] = status.experiment
        st.session_state[f"lab_{key_of(status.experiment)}_result"] = status.run_id


# --------------------------------------------------------------------------------------------
# Results: saved runs of this experiment, newest first
# --------------------------------------------------------------------------------------------


def results_ui(name: str) -> None:
    key = key_of(name)
    saved = lab.lab_runs(name)
    if not saved:
        st.caption("No results yet: press **Run** (or try the quick look first).")
        return
    ids = [info.id for info in saved]
    keep_selection(f"lab_{key}_result", ids)
    run_id = st.selectbox("Result", ids, key=f"lab_{key}_result",
                          help="Every run of this experiment is saved as a run tagged "
                          f"{lab.TAG_PREFIX}{name}; pick one to reopen it.")  # fmt: skip
    try:
        result = lab.load_result(run_id)
    except (lab.LabError, RunError, CheckpointError) as exc:
        st.error(f"This result cannot be shown: {exc}")
        return
    with st.container(key=f"lab_{key}_charts"):
        st.markdown(f"**What this run showed.** {lab.reading(result)}")
        for i, fig in enumerate(lab.figures(result)):
            st.plotly_chart(tidy_log_axes(fig), width="stretch", key=f"lab_{key}_fig_{i}")
        EXTRAS.get(name, lambda r: None)(result)


def norm_extras(result: lab.norm_position.NormPositionResult) -> None:
    if result.sweep:
        st.caption("The learning-rate sweep (a training counts as diverged when its loss ends within "
                   f"{lab.norm_position.CONTEXT_MARGIN} nats of guessing from character frequency, {result.unigram_loss:.2f}, or is NaN):")
        st.dataframe(pd.DataFrame(result.sweep), hide_index=True)


def tokenization_extras(result: lab.tokenization.TokenizationResult) -> None:
    columns = ["tokenizer", "vocab_size", "tokens", "tokens_per_char", "chars_per_block", "embedding_params",
               "embedding_share", "steps", "val_nats_per_token", "bits_per_byte", "train_note", "error"]
    st.dataframe(pd.DataFrame(result.rows).reindex(columns=columns), hide_index=True)


def single_example_extras(result: lab.single_example.SingleExampleResult) -> None:
    cols = st.columns(2)
    for col, title, text in ((cols[0], "Sample before", result.samples_before), (cols[1], "Sample after", result.samples_after)):
        col.caption(f"{title} (prompt {result.params['sample_prompt']!r}, seed {result.params['seed']}):")
        col.code(text or " ", language=None, wrap_lines=True)
    st.caption(f"The changed copy is kept in this result's run; {result.source_run} itself was only read.")


def recurrence_extras(result: lab.recurrence.RecurrenceResult) -> None:
    cols = st.columns(2)
    for col, (name, text) in zip(cols, result.samples.items(), strict=False):
        col.caption(f"Sample from the {name} (prompt {result.params['sample_prompt']!r}, seed {result.params['seed']}):")
        col.code(text or " ", language=None, wrap_lines=True)
    st.caption("Only the transformer's weights are kept in this result's run; the LSTM is lab-only.")


EXTRAS = {"norm-position": norm_extras, "tokenization": tokenization_extras, "single-example": single_example_extras,
          "recurrence": recurrence_extras}  # fmt: skip


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

st.title("Concepts lab")
st.caption("Claims you read about transformers, each turned into an experiment you run here on a small "
           "model. Every number and every sentence below the charts is computed from your run.")

job, ours = pinned_job(JOBS)
if job is not None:
    show_new_result(job)

if st.session_state.get("lab_experiment") not in NAMES:
    st.session_state["lab_experiment"] = NAMES[0]
name = st.segmented_control("Experiment", NAMES, key="lab_experiment", format_func=lambda n: lab.EXPERIMENTS[n].title,
                            selection_mode="single") or NAMES[0]  # fmt: skip
spec = lab.EXPERIMENTS[name]
st.markdown(f"**The claim.** {spec.claim}")

with st.container(border=True):
    st.markdown("**Setup**")
    params = params_ui(name)
    if params is not None:
        st.caption(f"**Budget:** {params.budget().text}")
    running = job is not None and not job.done
    # no help= on buttons: Streamlit then draws each twice, and `.st-key-… button` must find one
    if st.button("Run", key=f"lab_{key_of(name)}_run", type="primary", disabled=params is None or running):
        start(name, params)
    st.caption("It runs in the background: you can leave the page and come back (the link keeps the job).")

job_panel(JOBS, job, ours)

st.subheader("Result")
results_ui(name)
show_source(spec.run)
