"""UI helpers shared by every page: the sidebar, cached models, the job registry and the job panel.

Pages stay thin: they draw widgets and call ``toygpt``. What more than one page needs (the active
model, the seed, the one job registry, how an error is shown) lives here, once.
Not a page itself: ``app.py`` lists the pages explicitly, so this file is never navigated to.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from toygpt.checkpoint import CheckpointError, load_checkpoint
from toygpt.formatting import clock
from toygpt.jobs import BackgroundJob, JobStatus
from toygpt.model import GPT
from toygpt.status import Status
from toygpt.tokenizers import Tokenizer, tokenizer_from_dict
from toygpt.viz import loss_curves_figure

MAX_TEXT_CHARS = 100_000  # pastes beyond this are cut (the page says so): keeps every rerun fast


def _run_pages_through_app() -> None:
    """Make a deep link on a fresh server go through ``app.py`` too.

    Until ``st.navigation`` has run once in the process, Streamlit treats a ``pages/`` folder
    beside the entry file as old-style pages and runs ``/explore`` without ``app.py`` (no
    sidebar, wrong menu). Every page imports this module, so the first such run switches that
    mode off and reruns; the rerun goes through ``app.py`` and keeps the requested page.
    (``PagesManager.uses_pages_directory`` is the flag ``st.navigation`` itself clears.)
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if not PagesManager.uses_pages_directory or ctx is None:
        return
    running = ctx.pages_manager.get_pages().get(ctx.page_script_hash, {}).get("script_path")
    if running and Path(running).resolve() == Path(ctx.pages_manager.main_script_path).resolve():
        return  # app.py itself is running: its st.navigation call leaves that mode
    PagesManager.uses_pages_directory = False
    st.rerun()


_run_pages_through_app()


# --------------------------------------------------------------------------------------------
# Process-wide resources (shared by every browser session of this server)
# --------------------------------------------------------------------------------------------


@st.cache_resource
def job_registry():
    """The one registry of background training jobs for this server process.

    Global (not per session) so a refresh or a second tab finds the running job again."""
    from toygpt.job_process import WorkerSettings
    from toygpt.jobs import JobRegistry

    # Each job trains in its own process (toygpt.job_process) with two torch threads at a lower
    # priority: on a thread of this server it shared torch's process-wide thread count and the
    # GIL with every page rerun (bench/app_training.py: the numbers are in its docstring).
    # A spare worker waits with torch imported, so Start does not wait for it.
    return JobRegistry(max_jobs=1, num_threads=2, worker=WorkerSettings(nice=10, spare=True))


@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def load_run_model(path: str, weights: str, stamp: float) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load a run's weights and tokenizer once per (folder, file, modification time).

    The cached model is shared by every session: callers only use it in eval mode under
    ``torch.inference_mode()`` and never train it in place (they copy it first)."""
    loaded = load_checkpoint(path, weights_name=weights)
    if loaded.tokenizer is None:
        raise CheckpointError(f"{path}: the run has no tokenizer.json, so its text cannot be encoded")
    return loaded.model.eval(), tokenizer_from_dict(loaded.tokenizer), loaded.meta


# --------------------------------------------------------------------------------------------
# The active model, chosen in the sidebar
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveModel:
    run_id: str
    label: str
    path: Path
    model: GPT
    tokenizer: Tokenizer
    meta: dict[str, Any]
    key: str  # names these weights (run, folder, file, modification time): the key of every cache of them


PRETRAINED = "pretrained:"  # sidebar ids of GPT-2-family weights from the pretrained cache


@st.cache_resource(max_entries=2, show_spinner="Loading the pretrained weights…")
def load_pretrained_model(name: str, stamp: float) -> tuple[GPT, Tokenizer]:
    """Weights from the pretrained cache (hash checked), once per (name, modification time);
    shared by every session, used in eval mode only."""
    from toygpt.pretrained import load_pretrained

    model, tokenizer = load_pretrained(name)
    return model.eval(), tokenizer


def model_choices() -> dict[str, tuple[str, Path]]:
    """id -> (label, folder) for the demo model, every run usable as a model
    (``toygpt.runs.usable_as_model``), then the pretrained GPT-2-family weights (``pretrained:NAME``)."""
    from toygpt.pretrained import list_pretrained
    from toygpt.runs import DEMO_RUN, list_runs, usable_as_model

    infos = list_runs()
    infos.sort(key=lambda info: info.id != DEMO_RUN)  # the demo first: it is the default model
    choices: dict[str, tuple[str, Path]] = {}
    for info in infos:
        if not usable_as_model(info):
            continue
        loss = f", best val {info.best_val_loss:.3f}" if info.best_val_loss is not None else ""
        choices[info.id] = (f"{info.id} ({info.corpus}{loss})", Path(info.path))
    for weights in list_pretrained():
        choices[PRETRAINED + weights.name] = (weights.label, weights.folder)
    return choices


def load_active(run_id: str, path: Path, label: str) -> ActiveModel:
    """A run's best weights (lowest val loss), or its latest when it has no best file; or
    pretrained weights (``pretrained:NAME``)."""
    from toygpt.runs import BEST, LATEST

    if run_id.startswith(PRETRAINED):
        stamp = (path / "model.safetensors").stat().st_mtime
        model, tokenizer = load_pretrained_model(run_id.removeprefix(PRETRAINED), stamp)
        return ActiveModel(run_id, label, path, model, tokenizer, {"pretrained": True},
                           f"{run_id}|{path}|model.safetensors|{stamp}")

    name = BEST if (path / BEST).exists() else LATEST
    weights = path / name
    stamp = weights.stat().st_mtime if weights.exists() else 0.0
    model, tokenizer, meta = load_run_model(str(path), name, stamp)
    return ActiveModel(run_id, label, path, model, tokenizer, meta, f"{run_id}|{path}|{name}|{stamp}")


def keep_selection(key: str, options: list[Any], fallback: Any = None) -> None:
    """Make the widget ``key`` hold one of ``options`` before it is drawn.

    A remembered value that is no longer an option (a deleted run, another model's layer) is
    *replaced* (by ``fallback`` when it is an option, else the first option), never just dropped:
    dropping it lets the browser keep showing the old choice while the page acts on another.
    Assigning through session state makes Streamlit send the new value to the browser."""
    if not options or st.session_state.get(key) in options:
        return
    st.session_state[key] = fallback if fallback in options else options[0]


def sidebar() -> None:
    """The shared sidebar: which model the pages look at, and the seed for everything random."""
    with st.sidebar:
        st.subheader("Active model")
        try:
            choices = model_choices()
        except OSError as exc:
            st.error(f"Cannot read the runs folder: {exc}")
            choices = {}
        if "sidebar_pick" in st.session_state:  # a page picked a model (e.g. weights just added)
            st.session_state["sidebar_model"] = st.session_state["active_run"] = st.session_state.pop("sidebar_pick")
        if choices:
            ids = list(choices)
            # The widget's own state is the one truth (no index=: a default *and* a value set
            # through session state is a Streamlit warning); active_run mirrors it for the pages.
            keep_selection("sidebar_model", ids, st.session_state.get("active_run"))
            picked = st.selectbox(
                "Model", ids, format_func=lambda i: choices[i][0], key="sidebar_model",
                help="The shipped demo model, any finished run, or GPT-2-family weights you added. "
                "Pages that sample or look inside a model use this one.",
            )
            st.session_state["active_run"] = picked
        else:
            st.caption("No trained model yet: train one on the Training page, or add GPT-2 weights "
                       "on the Sampling & attention page.")
            st.session_state["active_run"] = None
        st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="seed",
                        help="Every random choice (sampling, initialisation, batches) uses this seed.")


def active_model() -> ActiveModel | None:
    """The model picked in the sidebar, loaded (cached); None (with a message) if unusable."""
    run_id = st.session_state.get("active_run")
    if not run_id:
        return None
    try:
        label, path = model_choices()[run_id]
        return load_active(run_id, path, label)
    except KeyError:
        st.warning(f"The run {run_id!r} is gone; pick another model in the sidebar.")
    except (CheckpointError, ValueError, OSError, RuntimeError) as exc:  # RuntimeError: PretrainedUnavailable
        st.error(f"The model {run_id!r} cannot be loaded: {exc}")
    return None


def current_seed() -> int:
    return int(st.session_state.get("seed", 0))


# --------------------------------------------------------------------------------------------
# Small drawing helpers
# --------------------------------------------------------------------------------------------


def capped_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Cut a huge paste to ``limit`` characters, telling the user; the page stays responsive."""
    if len(text) > limit:
        st.warning(f"The text has {len(text):,} characters; only the first {limit:,} are used.")
        return text[:limit]
    return text


def show_source(fn: Any, label: str | None = None) -> None:
    """Show the source of the toygpt function that just ran: the code is part of the lesson."""
    target = getattr(fn, "forward", fn) if inspect.isclass(fn) else fn
    name = getattr(target, "__qualname__", repr(target))
    module = getattr(target, "__module__", "")
    with st.expander(label or f"Source: `{module}.{name}`"):
        try:
            st.code(inspect.getsource(target), language="python")
        except (OSError, TypeError):
            st.caption("Source not available for this step.")


# --------------------------------------------------------------------------------------------
# Messages in the app's own terms, and the one way every page gets a missing corpus
# --------------------------------------------------------------------------------------------


def in_app_words(error: Exception | str) -> str:
    """An error (or a job's message) for a page, with nothing to type into Python or a shell:
    the library's messages end with code for its own users (``CharTokenizer.from_text(…,
    unk=True)``, ``python -m toygpt data add …``); a page says what to do in the app instead.

    >>> in_app_words("1 character(s) are not in this character vocabulary: 'é' (U+00E9). Remove them "
    ...              "from the text, build the vocabulary from a corpus that contains them, or use "
    ...              "CharTokenizer.from_text(corpus, unk=True) to map them to a visible <unk>.")
    "1 character(s) are not in this character vocabulary: 'é' (U+00E9). Remove them from the text, or pick (or train, on the Training page) a model whose corpus has them."
    """
    from toygpt import data as corpora

    text = str(error)
    text = re.sub(r"Remove them from the text, build the vocabulary from a corpus that contains them, or use "
                  r"CharTokenizer\.from_text\(corpus, unk=True\) to map them to a visible \S+\.",
                  "Remove them from the text, or pick (or train, on the Training page) a model whose corpus has them.",
                  text)  # fmt: skip
    for name in corpora.DOWNLOADS:
        text = text.replace(corpora.how_to_provide(name), "Upload the file here instead (the app checks it).")
    text = text.replace(" or pass a larger max_bytes", "")  # a keyword for Python callers, not for a page
    return text[:1].upper() + text[1:]


def corpus_missing_ui(name: str, key: str) -> None:
    """A downloadable corpus that is not cached: a Download button (never on a rerun: offline,
    every rerun would wait for a timeout) and an upload of the file, checked against its
    sha256. The same on every page that needs a corpus; the page reruns once it is here."""
    from toygpt import data as corpora

    info = corpora.DOWNLOADS[name]
    st.warning(f"**{name}** ({info.size / 1e6:.1f} MB) is not on this machine yet: download it, or upload "
               "the file if you have it.")
    if st.button(f"Download {name} now", key=f"{key}_download"):
        with st.spinner(f"Downloading {name} (gives up after a few seconds offline)…"):
            try:
                corpora.download_corpus(name)
            except corpora.CorpusError as exc:
                st.session_state[f"{key}_error"] = in_app_words(exc)
            else:
                st.session_state.pop(f"{key}_error", None)
                st.rerun()
    download_error = st.empty()  # filled below: a new upload makes a failed download old news
    upload = st.file_uploader(f"Have the file ({info.url.rsplit('/', 1)[-1]})? Upload it here", type=["txt"],
                              key=f"{key}_file", max_upload_size=max(1, math.ceil(info.size / 1e6)))
    if upload is not None:
        if st.session_state.get(f"{key}_upload_id") != upload.file_id:
            st.session_state[f"{key}_upload_id"] = upload.file_id
            st.session_state.pop(f"{key}_error", None)
        try:
            corpora.add_corpus_data(name, upload.getvalue(), f"The uploaded file {plain(upload.name)}")
        except corpora.CorpusError as exc:
            st.error(in_app_words(exc))
        else:
            st.rerun()
    if st.session_state.get(f"{key}_error"):
        download_error.error(st.session_state[f"{key}_error"])


# --------------------------------------------------------------------------------------------
# Background jobs: one panel for every page that starts them (training, the Concepts lab)
# --------------------------------------------------------------------------------------------

DONE_STYLE = {Status.FINISHED: st.success, Status.STOPPED: st.info, Status.DIVERGED: st.error, Status.FAILED: st.error}


@dataclass(frozen=True)
class JobPage:
    """How one page shows its jobs through ``job_panel``: which jobs (``JobStatus.kind``), the
    URL parameter that pins one (``?<param>=<job id>``, so a refresh finds it again), the prefix
    of the panel's widget keys (``<key>_stop``, ``<key>_dismiss``, ``<key>_use``), and the
    page's own words and parts."""

    kind: str
    param: str
    key: str
    unknown: str  # said when the pinned job is not known to this server
    stop_note: str  # what Stop does to this kind of job
    finished_note: str | None = None  # said instead of the job's message when it finished
    watch_others: bool = False  # show a running job of this kind started elsewhere (no Stop)
    offer_use: bool = False  # "Use this model" once done, when the sidebar can pick its run
    curves_when_done: bool = True  # keep the live chart once done (False: the page draws the result)
    details: Callable[[JobStatus], None] | None = None  # the page's own part, under the chart


def pin_job(page: JobPage, job_id: str) -> None:
    st.session_state[f"{page.key}_job"] = job_id
    st.query_params[page.param] = job_id


def unpin_job(page: JobPage) -> None:
    st.session_state.pop(f"{page.key}_job", None)
    if page.param in st.query_params:
        del st.query_params[page.param]


def pinned_job(page: JobPage) -> tuple[BackgroundJob | None, bool]:
    """(job, ours): the job pinned in the URL or this session, else (``watch_others``) a running
    job of this page's kind started elsewhere. Only "ours" may be stopped."""
    registry = job_registry()
    job_id = st.query_params.get(page.param) or st.session_state.get(f"{page.key}_job")
    if job_id:
        job = registry.get(job_id)
        if job is not None and job.kind == page.kind:
            pin_job(page, job.id)  # on every run: navigating back to the page drops the URL's query
            return job, True
        unpin_job(page)
        st.info(page.unknown)
    if page.watch_others:
        active = [j for j in registry.active() if j.kind == page.kind]
        if active:
            return active[0], False
    return None, False


def describe_job(status: JobStatus) -> str:
    """Who holds the job slot and when it ends, in one sentence (for a "one job at a time" refusal)."""
    ends = "its end time is not known yet"
    if status.eta is not None:
        at = time.strftime("%H:%M", time.localtime(time.time() + status.eta))
        ends = f"it ends in about {clock(status.eta)} (around {at})"
    return f"{status.summary}; {ends}."


def use_run(run_id: str) -> None:
    """Callback: make ``run_id`` the sidebar's model (callbacks run before the sidebar is drawn)."""
    st.session_state["active_run"] = run_id
    st.session_state["sidebar_model"] = run_id


def _progress_ui(status: JobStatus, page: JobPage) -> None:
    if status.done:
        if status.status == Status.FINISHED and page.finished_note:
            saved = f"; saved as run **{status.run_id}**" if status.run_id else ""
            st.success(f"**{status.status}** in {clock(status.elapsed)}{saved}. {page.finished_note}")
        else:
            DONE_STYLE.get(status.status, st.info)(f"**{status.status}**: {in_app_words(status.message)}")
        if status.error_detail:
            with st.expander("Details"):
                st.code(status.error_detail, language=None)
        return
    left = f"about {clock(status.eta)} left" if status.eta is not None else "estimating the time left"
    st.progress(min(1.0, max(0.0, status.progress)), text=f"{status.stage} · {clock(status.elapsed)} elapsed · {left}")


def _actions_ui(job: BackgroundJob, status: JobStatus, page: JobPage, ours: bool) -> None:
    if not ours:  # any session holding the job's link may stop it: offer the link
        st.caption(f"This job was started in another tab or session. Its link (`?{page.param}={job.id}`) "
                   "brings its controls, Stop included, to any tab that opens it.")
        st.button("Show its controls here", key=f"{page.key}_adopt", on_click=pin_job, args=(page, job.id))
        return
    # no help= on these buttons: Streamlit then draws each twice, and `.st-key-… button` must find one
    if not status.done:
        st.button("Stop", key=f"{page.key}_stop", on_click=job.stop)
        st.caption(page.stop_note)
        return
    cols = st.columns([1, 1, 4])
    if page.offer_use and status.run_id in model_choices():  # the sidebar can pick it
        cols[0].button("Use this model", key=f"{page.key}_use", on_click=use_run, args=(status.run_id,))
    cols[1].button("Dismiss", key=f"{page.key}_dismiss", on_click=unpin_job, args=(page,))


def _draw_job(job: BackgroundJob, page: JobPage, ours: bool) -> None:
    status = job.snapshot()
    with st.container(border=True, key=f"{page.key}_job_box"):
        st.subheader(status.title)
        _progress_ui(status, page)
        if status.curves and (page.curves_when_done or not status.done):
            st.plotly_chart(loss_curves_figure(status.curves), width="stretch", key=f"{page.key}_live_chart")
            st.caption("Solid: the loss on each logged training batch (noisy). Dashed: the loss on "
                       "held-out validation text, measured every so often.")  # fmt: skip
        if page.details:
            page.details(status)
        _actions_ui(job, status, page, ours)


@st.fragment(run_every=1.0)
def _live_job(job_id: str, page: JobPage, ours: bool) -> None:
    """Redrawn every second on its own; when the job ends the whole page reruns."""
    job = job_registry().get(job_id)
    if job is None or job.done:
        st.rerun(scope="app")
    _draw_job(job, page, ours)


def job_panel(page: JobPage, job: BackgroundJob | None, ours: bool) -> None:
    """The job (from ``pinned_job``): progress live in a fragment while it runs, Stop for the
    session that started it; once done its outcome, Dismiss and (``offer_use``) Use this model."""
    if job is None:
        return
    if job.done:
        _draw_job(job, page, ours)
    else:
        _live_job(job.id, page, ours)


# --------------------------------------------------------------------------------------------
# Text the user controls, and messages that survive a rerun or a page switch
# --------------------------------------------------------------------------------------------

MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()<>!#|~$])")


def plain(text: str) -> str:
    """Text a user controls (file names, messages quoting a zip's contents) shown literally in
    markdown: ``"[x](http://y)"`` must not become a link."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


FLASH_SECONDS = 10.0  # a flash outlives the reruns that follow an action (a widget whose options changed sends one)
FLASH_SHOWS = 3  # ... and is drawn at least this often, however slow those reruns are


def flash(kind: str, text: str) -> None:
    """A message (``kind``: success, info, warning, error) shown by ``show_flash`` after a rerun
    or on the page switched to (either would wipe one drawn now)."""
    st.session_state["flash"] = (kind, text, time.monotonic(), 0)


def show_flash() -> None:
    """Draw the flash on every rerun until it is both ``FLASH_SECONDS`` old and drawn
    ``FLASH_SHOWS`` times, then forget it: the browser may rerun the page again at once (a
    select box whose options changed sends its new value), and a message popped by the first
    rerun would vanish before anyone read it. Time alone was not enough: on a busy server the
    reruns after a Delete took longer than the 10 s, and "Deleted …" was never seen."""
    kind, text, since, shows = st.session_state.get("flash", (None, None, 0.0, 0))
    if kind is None:
        return
    getattr(st, kind)(text)
    shows += 1
    if time.monotonic() - since > FLASH_SECONDS and shows >= FLASH_SHOWS:
        st.session_state.pop("flash", None)
    else:
        st.session_state["flash"] = (kind, text, since, shows)


def runs_on_disk() -> list[Any]:
    """Every run (``toygpt.runs.list_runs``), or none with the reason shown when the runs folder
    cannot be read."""
    from toygpt.runs import list_runs

    try:
        return list_runs()
    except OSError as exc:
        st.error(f"Cannot read the runs folder: {exc}. Set TOYGPT_RUNS_DIR to a folder you can write.")
        return []
