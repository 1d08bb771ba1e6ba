"""Background training for the dashboard (and the same pipeline for the CLI).

A page must never block on training: it starts a ``TrainJob`` (a daemon thread with a lock, a
stop ``threading.Event`` and a status) through a ``JobRegistry`` and then only ever reads
``job.snapshot()``, a frozen ``JobStatus`` (a ``TrainStatus`` for training) with everything it
draws. The thread never touches Streamlit
(calls from a thread without a script context are silently lost).

With ``worker=WorkerSettings()`` (what the dashboard uses) the thread only watches: the job
trains in its own process (``toygpt.job_process``, ``toygpt.worker``) whose events arrive as
JSON lines and feed the same status, so a page cannot tell the difference except in speed.

    registry = JobRegistry(max_jobs=1)
    job = registry.start(TrainSpec(corpus="copy", model=preset("nano"), train=TrainConfig(max_steps=300)))
    job.snapshot().status      # queued → running → finished | stopped | diverged | failed
    job.stop(); job.wait(5)

``build_training(spec)`` turns a spec into a ready ``Trainer`` and its ``Run`` (new run, fine-tune
from a run, or resume a run); ``run_training`` runs it. The CLI calls these directly.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from toygpt import data as corpora
from toygpt.distributed import PLAIN, DistributedContext
from toygpt.estimates import estimate
from toygpt.formatting import clock, human_bytes
from toygpt.job_process import WorkerProcess, WorkerSettings, signal_name
from toygpt.limits import JOB_SHARE, check_memory, memory_budget
from toygpt.model import GPT, GPTConfig, preset
from toygpt.resume import resume
from toygpt.runs import Run, RunError, RunWriter, create_run, open_run, without_server_paths
from toygpt.status import Status, is_active
from toygpt.stopping import StopRequested, stop_scope
from toygpt.tokenizers import TokenizerError, parse_tokenizer_name
from toygpt.train import Event, TrainConfig
from toygpt.trainer import Trainer

MAX_TAGS, MAX_TAG_CHARS = 20, 40


class JobRefused(RuntimeError):
    """The registry will not start this job; ``str(exc)`` says why."""


@dataclass(frozen=True)
class TrainSpec:
    """Everything needed to start a run, as plain values (so a page can build and show it).

    ``model`` defaults to the ``small`` preset; its ``vocab_size`` is taken from the tokenizer.
    ``train`` defaults to ``TrainConfig()``. With ``init_from`` (a run id) the model and the
    tokenizer come from that run (fine-tuning); with ``resume`` the whole run continues, and
    ``train=None`` keeps its saved config. ``corpus_text`` trains on your own text (``corpus``
    is then only its label).
    """

    corpus: str = "shakespeare"
    tokenizer: str = "char"
    model: GPTConfig | None = None
    train: TrainConfig | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    init_from: str | None = None
    resume: str | None = None
    corpus_text: str | None = None
    corpus_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.tags, list):
            object.__setattr__(self, "tags", tuple(self.tags))
        if not isinstance(self.tags, tuple) or len(self.tags) > MAX_TAGS:
            raise ValueError(f"tags must be a tuple of at most {MAX_TAGS} short strings")
        for tag in self.tags:
            if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
                raise ValueError(f"tag {tag!r} must be non-empty text of at most {MAX_TAG_CHARS} characters")
        if self.init_from and self.resume:
            raise ValueError("give init_from (fine-tune into a new run) or resume (continue a run), not both")
        if self.corpus_text is not None and (not isinstance(self.corpus_text, str) or not self.corpus_text.strip()):
            raise ValueError("corpus_text is empty; give some text, or leave it None to use a named corpus")
        if self.model is not None and not isinstance(self.model, GPTConfig):
            raise ValueError("model must be a GPTConfig, e.g. preset('small')")
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise ValueError("train must be a TrainConfig")

    @property
    def train_config(self) -> TrainConfig:
        return self.train or TrainConfig()

    @property
    def model_config(self) -> GPTConfig:
        return self.model or preset("small")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (how a job's own process receives it; ``from_dict`` reads it back)."""
        return {
            "corpus": self.corpus, "tokenizer": self.tokenizer, "model": self.model.to_dict() if self.model else None,
            "train": self.train.to_dict() if self.train else None, "name": self.name, "tags": list(self.tags),
            "init_from": self.init_from, "resume": self.resume, "corpus_text": self.corpus_text,
            "corpus_seed": self.corpus_seed,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        model, train = data.get("model"), data.get("train")
        return cls(**{**data, "model": GPTConfig.from_dict(model) if model is not None else None,
                      "train": TrainConfig.from_dict(train) if train is not None else None})  # fmt: skip


# --------------------------------------------------------------------------------------------
# From a spec to a ready trainer
# --------------------------------------------------------------------------------------------


def corpus_text_of(spec: TrainSpec) -> str:
    return spec.corpus_text if spec.corpus_text is not None else corpora.load_corpus(spec.corpus, spec.corpus_seed)


def _tokenizer_for(spec: TrainSpec, text: str, dist: DistributedContext) -> Any:
    """Build the tokenizer on rank 0 only (training BPE can take a while) and share it as JSON."""
    from toygpt.tokenizers import get_tokenizer, tokenizer_from_dict

    tokenizer = get_tokenizer(spec.tokenizer, corpus_text=text) if dist.is_main else None
    shared = dist.broadcast_json(tokenizer.to_dict() if tokenizer else None)
    return tokenizer or tokenizer_from_dict(shared)


def _fine_tune_source(run_id: str, text: str) -> tuple[GPT, Any]:
    """The model and tokenizer of run ``run_id`` (or of pretrained weights ``pretrained:NAME``),
    after checking the tokenizer can encode the new text (a char vocabulary lacks characters it
    never saw)."""
    from toygpt.pretrained import PRETRAINED_PREFIX, PretrainedUnavailable, load_pretrained

    if run_id.startswith(PRETRAINED_PREFIX):
        try:
            return load_pretrained(run_id.removeprefix(PRETRAINED_PREFIX))
        except PretrainedUnavailable as exc:
            raise ValueError(str(exc)) from None
    source = open_run(run_id)
    tokenizer = source.tokenizer()
    try:
        tokenizer.encode(text)
    except ValueError as exc:
        raise ValueError(
            f"run {run_id}'s tokenizer cannot encode this corpus: {exc} — fine-tune on text made "
            "of the same characters, or train a new model from scratch"
        ) from None
    return source.load_model("best").model, tokenizer


def build_training(
    spec: TrainSpec,
    on_event: Any = None,
    stop_event: threading.Event | None = None,
    dist: DistributedContext = PLAIN,
) -> tuple[Trainer, Run | None]:
    """A ``Trainer`` ready to ``run()`` and, on rank 0, the ``Run`` it writes to."""
    if spec.resume:
        return _build_resume(spec, on_event, stop_event, dist)
    text = corpus_text_of(spec)
    config = spec.train_config
    if spec.init_from:
        check_job_memory(source_config(spec.init_from), config, text, f"fine-tuning {spec.init_from}")
        model, tokenizer = _fine_tune_source(spec.init_from, text)
    else:
        tokenizer = _tokenizer_for(spec, text, dist)
        model_config = spec.model_config.replace(vocab_size=tokenizer.vocab_size)
        check_job_memory(model_config, config, text, "this run")  # before the model exists
    token_data = corpora.prepare(text, tokenizer)
    if not spec.init_from:  # the run records where its samples start: a context its data has
        start = corpora.start_token_for(token_data, tokenizer)
        model = GPT(model_config.replace(bos_token_id=start), seed=config.seed)
    token_data.check_block_size(config.block_size or model.config.block_size)
    run = None
    if dist.is_main:
        run = create_run(
            name=spec.name, corpus=spec.corpus, tokenizer=tokenizer, model=model,
            tokenizer_spec=getattr(tokenizer, "name", spec.tokenizer) if spec.init_from else spec.tokenizer,
            train_config=config, tags=spec.tags, corpus_seed=spec.corpus_seed,
            corpus_text=spec.corpus_text, init_from=spec.init_from,
        )  # fmt: skip
    try:
        trainer = Trainer(model, token_data, config, tokenizer=tokenizer, on_event=on_event,
                          stop_event=stop_event, saver=run, dist=dist)  # fmt: skip
    except BaseException:
        if run is not None:  # a config the trainer refuses leaves no half-made run behind
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    return trainer, run


def _build_resume(
    spec: TrainSpec, on_event: Any, stop_event: threading.Event | None, dist: DistributedContext
) -> tuple[Trainer, Run | None]:
    def check(model_config: GPTConfig, config: TrainConfig, text: str) -> None:
        check_job_memory(model_config, config, text, f"resuming {spec.resume}")

    resumed = resume(spec.resume, spec.train, write=dist.is_main, check=check)
    trainer = Trainer(resumed.model, resumed.data, resumed.plan.config, tokenizer=resumed.tokenizer,
                      on_event=on_event, stop_event=stop_event, saver=resumed.run, state=resumed.state,
                      optimizer_state=resumed.optimizer_state, dist=dist)  # fmt: skip
    return trainer, resumed.run


def run_training(
    spec: TrainSpec,
    on_event: Any = None,
    stop_event: threading.Event | None = None,
    dist: DistributedContext = PLAIN,
    on_run: Any = None,
    prepare_grace: float = 0.0,
) -> Event:
    """Build and run; the run is marked failed if training raises. ``on_run(run)`` is called
    once the run folder exists (the job uses it to learn the run id early).

    Stop (``stop_event``) is honoured while the data is prepared too (building a BPE
    tokenizer, encoding the corpus: ``toygpt.stopping``), ``prepare_grace`` seconds after it
    is first seen there; stopped then, no run is made and the "end" event says so."""
    try:
        with stop_scope(stop_event, grace=prepare_grace):
            trainer, run = build_training(spec, on_event, stop_event, dist)
    except StopRequested:
        return stopped_before_training()
    if on_run is not None and run is not None:
        on_run(run)
    try:
        return trainer.run()
    except BaseException as exc:
        if run is not None:
            run.mark_failed(f"{type(exc).__name__}: {exc}")
        raise


def stopped_before_training() -> Event:
    """The "end" event of a run stopped while its data was being prepared (nothing saved)."""
    return {
        "type": "end", "status": Status.STOPPED, "message": "stopped while preparing the data; nothing was saved",
        "step": 0, "elapsed": 0.0, "tokens_seen": 0, "val_loss": None, "best_val_loss": None, "train_loss": None,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# A job: one training run on a daemon thread
# --------------------------------------------------------------------------------------------


def curve_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Trainer events → rows for ``toygpt.viz.loss_curves_figure``: ``{"step", "train_loss"}``
    per logged step and ``{"step", "val_loss"}`` per evaluation (non-finite values dropped,
    six significant digits: the rows are also saved as JSON, which has no NaN)."""
    rows = []
    for event in events:
        key, source = {"step": ("train_loss", "loss"), "eval": ("val_loss", "val_loss")}.get(event.get("type"), (None, None))
        value = event.get(source) if source else None
        if key and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            rows.append({"step": int(event["step"]), key: float(f"{value:.6g}")})
    return rows


@dataclass(frozen=True, kw_only=True)
class JobStatus:
    """What any background job reports, copied under its lock: all a job panel draws.

    ``title`` says what the job is; ``summary`` says it in one sentence for a page that did not
    start it ("Training now: run X on copy, step 120 of 300"); ``stage`` is what it does right
    now; ``curves`` are its loss curves so far, ``{label: rows}`` for ``loss_curves_figure``."""

    job_id: str
    kind: str  # the job's class: "train" | "lab" (which page owns it)
    title: str
    summary: str
    status: Status
    message: str = ""
    error_detail: str = ""  # the traceback of a failure, for a "details" expander
    run_id: str | None = None  # the run it writes (None until it has one)
    progress: float = 0.0  # 0..1
    stage: str = ""
    elapsed: float = 0.0  # seconds
    eta: float | None = None  # seconds left, when known
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not is_active(self.status)


@dataclass(frozen=True, kw_only=True)
class TrainStatus(JobStatus):
    """A training job's status: the common fields plus the trainer's latest numbers."""

    step: int = 0
    max_steps: int | None = None
    max_seconds: float | None = None
    loss: float | None = None  # the last logged training batch
    val_loss: float | None = None
    best_val_loss: float | None = None
    tokens_per_s: float | None = None
    started: bool = False  # the trainer's "start" event came: corpus, tokenizer and model are ready
    metrics: list[Event] = field(default_factory=list)  # the step and eval events, in order
    last_sample: Event | None = None
    samples: list[Event] = field(default_factory=list)  # the last 20
    sample_interval: int = 0
    logs: str | None = None
    corpus: str = ""
    tokenizer: str = ""


def job_outcome(work: Any) -> tuple[Status, str, str]:
    """Run ``work()`` (it returns ``(status, message)``) and say how it ended, never raising:
    ``(status, message, detail)``, the detail a traceback for a failure. The same rule for a job
    on a thread and for a job's own process (``toygpt.worker``)."""
    try:
        status, message = work()
        return Status(status), message, ""
    except StopRequested:
        return Status.STOPPED, "stopped on request", ""
    except (ValueError, RuntimeError, OSError) as exc:  # bad input, no data, out of memory
        return Status.FAILED, without_server_paths(str(exc)), traceback.format_exc()
    except Exception as exc:  # anything else is a bug; keep the traceback for the page
        return Status.FAILED, without_server_paths(f"{type(exc).__name__}: {exc}"), traceback.format_exc()


class BackgroundJob:
    """A daemon thread with a lock, a stop event and a status: what every background job shares
    (a training run here, a Concepts-lab experiment in ``toygpt.lab``). A subclass implements
    ``work()``, which returns the final ``(status, message)`` or raises, and ``snapshot()``, a
    ``JobStatus`` (built on ``_common()``). The thread never touches Streamlit: pages read
    ``snapshot()``. With ``worker`` settings, ``work()`` hands the job to its own process
    (``run_in_worker``) and the thread only relays its messages."""

    kind = "job"

    def __init__(self, num_threads: int | None = None, job_id: str | None = None,
                 worker: WorkerSettings | None = None) -> None:  # fmt: skip
        self.id = job_id or uuid.uuid4().hex[:10]
        self.num_threads = num_threads
        self.worker = worker
        self._process: WorkerProcess | None = None
        self.spare: WorkerProcess | None = None  # a worker started ahead (``JobRegistry``) to use
        self.on_end: list[Any] = []  # called (no arguments) once the work has ended
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"toygpt-{self.kind}-{self.id}", daemon=True)
        self._status, self._message, self._detail = Status.QUEUED, "", ""
        self._run_id: str | None = None
        self._started, self._ended = time.perf_counter(), None  # perf_counter seconds

    def start(self) -> BackgroundJob:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def work(self) -> tuple[str, str]:
        raise NotImplementedError

    # ---- the thread --------------------------------------------------------------------

    def _work(self) -> None:
        if self.num_threads and self.worker is None:
            torch.set_num_threads(self.num_threads)  # process-wide: the reason jobs are capped
        with self._lock:
            if self._status == Status.QUEUED:  # not if stop() came first: that stays "stopping"
                self._status = Status.RUNNING
        with stop_scope(self._stop):  # every long loop inside ends on Stop (toygpt.stopping)
            status, message, detail = job_outcome(self.work)
        self._set(status=status, message=message, detail=detail or None)
        with self._lock:
            self._ended = time.perf_counter()  # the clock stops when the work does
        for callback in self.on_end:
            callback()

    def run_in_worker(self, kind: str, job: dict[str, Any], on_message: Any) -> tuple[str, str]:
        """Run this job in its own process (``toygpt.worker <kind>``) and relay its messages to
        ``on_message`` until it ends; the final ``(status, message)``. A worker that dies
        without saying how it ended is a failure naming its exit and its stderr's last lines;
        a run it left "running" is marked failed too, so no page waits on it."""
        spare, self.spare = self.spare, None
        process = spare if spare is not None and spare.waiting else WorkerProcess(self.worker or WorkerSettings()).spawn()
        with self._lock:
            self._process = process
        process.send(kind, job, self.num_threads)
        if self._stop.is_set():  # Stop came while it was starting
            process.stop()
        outcome = None
        for message in process.messages():
            if message.get("type") == "outcome":
                outcome = message
            elif message.get("type") == "run":
                with self._lock:
                    self._run_id = str(message["id"])
            else:
                on_message(message)
        code = process.wait()
        if outcome is not None:
            self._set(detail=str(outcome.get("detail") or "") or None)
            return outcome["status"], str(outcome["message"])
        if process.killed_after_stop:
            return Status.STOPPED, (f"stopped: the job did not end within {process.settings.kill_after_s:g} s of Stop, "
                                    "so it was ended; a run resumes from its last save")  # fmt: skip
        tail = without_server_paths(process.stderr_tail().strip())
        message = f"the job's process {signal_name(code)} before it finished" + (f": {tail.splitlines()[-1]}" if tail else "")
        self._set(detail=tail or None)
        self._mark_run_failed(message)
        return Status.FAILED, message

    def _mark_run_failed(self, message: str) -> None:
        with self._lock:
            run_id = self._run_id
        if run_id is None:
            return
        try:
            run = open_run(run_id)
            if run.info().get("status") == Status.RUNNING:
                RunWriter(run.path).mark_failed(message)
        except (RunError, OSError, ValueError):
            pass  # an unreadable (or read-only) run is listed as such; nothing more to say here

    def _elapsed(self) -> float:
        """Seconds since ``start()``, frozen once the work ended (call under the lock)."""
        return (self._ended or time.perf_counter()) - self._started

    def _set(self, status: Status | None = None, message: str | None = None, detail: str | None = None) -> None:
        with self._lock:
            if status is not None:
                self._status = status
            if message is not None:
                self._message = message
            if detail is not None:
                self._detail = detail

    def _common(self) -> dict[str, Any]:
        """The fields every ``JobStatus`` has that this class keeps (call under the lock)."""
        return dict(job_id=self.id, kind=self.kind, status=self._status, message=self._message,
                    error_detail=self._detail, run_id=self._run_id)  # fmt: skip

    # ---- what pages call ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask the job to stop at its next check (returns at once; see ``wait``). Pressing it
        again changes nothing."""
        self._stop.set()
        with self._lock:
            if self._status in (Status.QUEUED, Status.RUNNING):
                self._status = Status.STOPPING
            process = self._process
        if process is not None:
            process.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it has."""
        if self._thread.ident is None:  # never started
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def worker_pid(self) -> int | None:
        """The process id of this job's own process (None: on a thread, or not started yet)."""
        with self._lock:
            process = self._process or self.spare
        return process.process.pid if process is not None and process.process is not None else None

    @property
    def done(self) -> bool:
        return not is_active(self.status)

    def snapshot(self) -> JobStatus:
        raise NotImplementedError


class TrainJob(BackgroundJob):
    """One background training run. Read it with ``snapshot()`` (a ``TrainStatus``); ``stop()``
    asks it to end after the current step (its weights are saved, so it can be resumed)."""

    kind = "train"

    def __init__(self, spec: TrainSpec, num_threads: int | None = None, job_id: str | None = None,
                 worker: WorkerSettings | None = None) -> None:  # fmt: skip
        super().__init__(num_threads, job_id, worker)
        self.spec = spec
        self._metrics: list[Event] = []
        self._last: dict[str, Event] = {}  # the latest event of each type
        self._samples: list[Event] = []

    def work(self) -> tuple[str, str]:
        if self.worker is not None:
            return self.run_in_worker("train", {"spec": self.spec.to_dict()}, self._on_event)
        end = run_training(self.spec, self._on_event, self._stop, on_run=self._on_run)
        return end["status"], end["message"]

    def _on_run(self, run: Run) -> None:
        with self._lock:
            self._run_id = run.id

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._last[event["type"]] = event
            if event["type"] in ("step", "eval"):
                self._metrics.append(event)
            elif event["type"] == "sample":
                self._samples.append(event)

    def snapshot(self) -> TrainStatus:
        """Everything a page draws, as plain values (copied under the lock)."""
        with self._lock:
            step_event, eval_event = self._last.get("step", {}), self._last.get("eval", {})
            end = self._last.get("end", {})
            config = self.spec.train or TrainConfig()
            step = end.get("step", step_event.get("step", 0))
            elapsed = end.get("elapsed", step_event.get("elapsed", 0.0))
            eta = step_event.get("eta")
            if eta is None and config.max_seconds is not None and self._status in (Status.QUEUED, Status.RUNNING):
                eta = max(0.0, config.max_seconds - elapsed)  # a time budget ends on time
            label = self._run_id or "this run"
            return TrainStatus(
                **self._common(), title=f"Training {self._run_id or '…'}",
                summary=self._summary(step, config), stage=self._stage(step, config, step_event),
                progress=1.0 if self._status == Status.FINISHED else float(step_event.get("progress", 0.0)),
                elapsed=elapsed, eta=eta, curves={label: curve_rows(self._metrics)} if self._metrics else {},
                step=step, max_steps=config.max_steps, max_seconds=config.max_seconds,
                loss=step_event.get("loss"), val_loss=eval_event.get("val_loss"),
                best_val_loss=end.get("best_val_loss", eval_event.get("best_val_loss")),
                tokens_per_s=step_event.get("tokens_per_s"), started="start" in self._last,
                metrics=[dict(row) for row in self._metrics],
                last_sample=dict(self._samples[-1]) if self._samples else None,
                samples=[dict(s) for s in self._samples[-20:]], sample_interval=self.spec.train_config.sample_interval,
                logs=self._last.get("log", {}).get("message"), corpus=self.spec.corpus, tokenizer=self.spec.tokenizer,
            )  # fmt: skip

    def _summary(self, step: int, config: TrainConfig) -> str:
        who = f"run **{self._run_id}**" if self._run_id else "a new run (still preparing)"
        budget = f" of {config.max_steps:,}" if config.max_steps else ""
        return f"Training now: {who} on {self.spec.corpus} ({self.spec.tokenizer} tokenizer), step {step:,}{budget}"

    def _stage(self, step: int, config: TrainConfig, step_event: Event) -> str:
        if "start" not in self._last:
            return "Preparing: loading the corpus, building the tokenizer, encoding the text…"
        if self._status == Status.STOPPING:
            return "stopping after this step…"
        if "preparing" in self._last and "prepared" not in self._last and "end" not in self._last:
            return self._last["preparing"]["message"]  # torch.compile builds its kernels (toygpt.compilation)
        if not step_event:  # no step logged yet: the first validation runs before step 1
            return "starting: measuring the untrained model's loss, then the first steps…"
        return f"step {step:,}" + (f" of {config.max_steps:,}" if config.max_steps else "")


# --------------------------------------------------------------------------------------------
# The registry: caps how many jobs run at once and how much memory one may need
# --------------------------------------------------------------------------------------------


def job_memory(model_config: GPTConfig, config: TrainConfig, text: str | None = None) -> int:
    """Bytes a training run needs: weights, gradients, AdamW and activations
    (``toygpt.estimates.estimate``), plus the token ids of its corpus (int64, at most one per UTF-8
    byte) when the text is known."""
    return sum(job_memory_parts(model_config, config, text).values())


def job_memory_parts(model_config: GPTConfig, config: TrainConfig, text: str | None = None) -> dict[str, int]:
    """``job_memory`` by part: weights, gradients, adam, activations, token ids."""
    parts = {part: int(size) for part, size in estimate(model_config, config)["memory_bytes"].items()}
    parts["token ids"] = 8 * len(text.encode("utf-8", "replace")) if text is not None else 0
    return parts


def source_config(run_id: str) -> GPTConfig:
    """The model shape of run ``run_id``, or of pretrained weights ``pretrained:NAME``."""
    from toygpt.pretrained import PRETRAINED_PREFIX, PretrainedUnavailable, pretrained_config

    if run_id.startswith(PRETRAINED_PREFIX):
        try:
            return pretrained_config(run_id.removeprefix(PRETRAINED_PREFIX))
        except PretrainedUnavailable as exc:
            raise ValueError(str(exc)) from None
    return open_run(run_id).model_config()


def check_job_memory(model_config: GPTConfig, config: TrainConfig, text: str | None, what: str) -> None:
    """Refuse a run that needs more than a training job's share of the server's memory budget."""
    check_memory(job_memory(model_config, config, text), what, JOB_SHARE)


def estimated_memory(spec: TrainSpec) -> int:
    """Bytes a spec's run needs (``job_memory``), before anything is built. The vocabulary is
    the real one where it can be known cheaply: a fine-tuned or resumed run's model (or the
    pretrained weights it starts from), the distinct characters of your own text for the char
    tokenizer (0.75 MB of Chinese has ~68,000, not the 65 of Shakespeare), the size a tokenizer
    name states (bpe-N, gpt2)."""
    return sum(memory_parts(spec).values())


def memory_parts(spec: TrainSpec, text: str | None = None) -> dict[str, int]:
    """``estimated_memory`` by part (``job_memory_parts``): weights, gradients and AdamW's
    moments (of the parameters that learn), activations, token ids (of ``text`` when given,
    else of your own text when the spec has it)."""
    text = spec.corpus_text if text is None else text
    if spec.resume or spec.init_from:
        model_config = source_config(spec.resume or spec.init_from)
        config = spec.train or (open_run(spec.resume).train_config() if spec.resume else TrainConfig())
    else:
        model_config, config = spec.model_config, spec.train_config
        try:
            vocab = parse_tokenizer_name(spec.tokenizer).vocab_size  # None: char, or a saved file
        except TokenizerError:
            vocab = None  # an unknown name fails where the tokenizer is built, with its message
        if spec.tokenizer == "char" and text is not None:
            vocab = len(set(text))  # one token per distinct character
        if vocab:
            model_config = model_config.replace(vocab_size=vocab)
    return job_memory_parts(model_config, config, text)


MAX_JOB_SECONDS = 2 * 3600.0  # the longest job this server starts: one job holds the only slot
SECONDS_PER_SAMPLED_TOKEN = 5e-4  # generation's per-token overhead here (~2,000 tokens/s, KV cache)
BPE_SECONDS_PER_BYTE_MERGE = 9e-8  # a merge rescans each chunk holding its pair (bench/bpe_train.py)


def estimated_seconds(spec: TrainSpec) -> dict[str, float]:
    """Rough seconds of each part of a run before it starts, from the configs alone
    (``toygpt.estimates.estimate``'s assumed throughput): training steps, evaluations (two splits of
    ``eval_batches`` forward passes each), samples (``sample_tokens`` each) and, for ``bpe-N``
    on your own text, learning the merges (each rescans the longest pre-tokenized chunk: a text
    without spaces is one chunk)."""
    model_config, config = spec.model_config, spec.train_config
    if spec.resume or spec.init_from:
        model_config = source_config(spec.resume or spec.init_from)
        config = spec.train or (open_run(spec.resume).train_config() if spec.resume else TrainConfig())
    est = estimate(model_config, config)
    steps = est["steps"] or 0
    forward = est["seconds_per_step"] / 3  # training is forward + backward ≈ 3 forwards
    evals = steps // config.eval_interval + 2
    samples = steps // config.sample_interval if config.sample_interval else 0
    parts = {
        "training": float(est["seconds"]),
        "evaluation": evals * 2 * config.eval_batches * forward,
        "sampling": samples * config.sample_tokens * SECONDS_PER_SAMPLED_TOKEN,
        "tokenizer": 0.0,
    }
    name = parse_tokenizer_name(spec.tokenizer) if not (spec.resume or spec.init_from) else None
    if name is not None and name.kind == "bpe" and spec.corpus_text is not None:
        from toygpt.tokenizers.bpe import pre_tokenize

        longest = max((len(c.encode("utf-8")) for c in pre_tokenize(spec.corpus_text)), default=0)
        parts["tokenizer"] = (name.vocab_size or 0) * longest * BPE_SECONDS_PER_BYTE_MERGE
    return parts


@dataclass
class JobRegistry:
    """Starts jobs and finds them again. One registry per process (a page keeps it in
    ``st.cache_resource`` so every session and every refresh sees the same jobs)."""

    max_jobs: int = 1
    max_memory_bytes: int = field(default_factory=lambda: int(memory_budget() * JOB_SHARE))  # toygpt.limits
    max_seconds: float = MAX_JOB_SECONDS
    num_threads: int | None = None
    worker: WorkerSettings | None = None  # None: jobs train on a thread of this process
    _jobs: dict[str, BackgroundJob] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _spare: WorkerProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._refill()

    def _refill(self) -> None:
        """Keep one worker started ahead when ``worker.spare`` asks for it."""
        if self.worker is None or not self.worker.spare:
            return
        with self._lock:
            if self._spare is not None and self._spare.waiting:
                return
            self._spare = WorkerProcess(self.worker).spawn()

    def _take_spare(self, job: BackgroundJob) -> None:
        if job.worker is None or job.worker != self.worker:
            return
        with self._lock:
            job.spare, self._spare = self._spare, None
        job.on_end.append(self._refill)  # the next job's worker starts once this one is done

    def close(self) -> None:
        """``clear()``, and end the worker kept ahead (if any)."""
        self.clear()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    def start(self, spec: TrainSpec) -> TrainJob:
        """Start ``spec`` on a background thread, or raise ``JobRefused`` saying why not."""
        try:
            need = estimated_memory(spec)
        except ValueError as exc:  # e.g. resume/init_from names a run that does not exist
            raise JobRefused(str(exc)) from None
        if need > self.max_memory_bytes:
            budget = memory_budget()
            whence = (f" (half of this server's memory budget of {human_bytes(budget, decimals=1)})"
                      if self.max_memory_bytes == int(budget * JOB_SHARE) else "")  # fmt: skip
            raise JobRefused(
                f"this run needs about {human_bytes(need, decimals=1)} (weights, gradients, Adam, activations "
                f"and the token ids), above the {human_bytes(self.max_memory_bytes, decimals=1)} one job may use "
                f"here{whence}; choose a smaller preset, batch size or block size (or, fine-tuning, train "
                "fewer of the last blocks)"
            )
        self._check_time(spec)
        job = TrainJob(spec, num_threads=self.num_threads, worker=self.worker)
        self.start_job(job)
        return job

    def _check_time(self, spec: TrainSpec) -> None:
        """Refuse a job whose settings cannot finish within ``max_seconds`` (whatever its budget
        of steps or seconds says, evaluation and sampling come on top)."""
        try:
            parts = estimated_seconds(spec)
        except ValueError as exc:
            raise JobRefused(str(exc)) from None
        total = sum(parts.values())
        if total > self.max_seconds:
            detail = ", ".join(f"{k} {clock(v)}" for k, v in parts.items() if v >= 1)
            raise JobRefused(
                f"this run would take about {clock(total)} ({detail}), longer than the "
                f"{clock(self.max_seconds)} one job may hold this server; lower the steps, "
                "eval batches, sample length or vocabulary size"
            )

    def start_job(self, job: BackgroundJob) -> BackgroundJob:
        """Register and start any ``BackgroundJob`` (a ``TrainJob``, a Concepts-lab
        ``toygpt.lab.LabJob``) under the same cap: one CPU-heavy job at a time, of any kind."""
        with self._lock:
            running = [j for j in self._jobs.values() if not j.done]
            if len(running) >= self.max_jobs:
                raise JobRefused(
                    f"{len(running)} training job(s) already running (the limit is {self.max_jobs}); "
                    "stop it or wait for it to finish"
                )
            self._jobs[job.id] = job
        self._take_spare(job)
        return job.start()

    def get(self, job_id: str) -> BackgroundJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> list[BackgroundJob]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.done]

    def jobs(self) -> list[BackgroundJob]:
        with self._lock:
            return list(self._jobs.values())

    def training_runs(self) -> set[str]:
        """Ids of the runs the active jobs are writing right now."""
        return {job.snapshot().run_id for job in self.active()} - {None}

    def clear(self, timeout: float = 30.0) -> None:
        """Stop every job, wait for them (up to ``timeout`` s each) and forget them all."""
        for job in self.jobs():
            job.stop()
        for job in self.jobs():
            job.wait(timeout)
        with self._lock:
            self._jobs.clear()
