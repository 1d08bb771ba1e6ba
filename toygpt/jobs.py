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

What a job runs is ``toygpt.pipeline``'s ``run_training`` (a thread calls it, a worker process
calls it, the CLI calls it): one way to train.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch

from toygpt.formatting import clock, human_bytes
from toygpt.job_process import WorkerProcess, WorkerSettings, signal_name
from toygpt.limits import JOB_SHARE, memory_budget
from toygpt.pipeline import (
    MAX_JOB_SECONDS,
    TrainSpec,
    curve_rows,
    estimated_memory,
    estimated_seconds,
    run_training,
)
from toygpt.runs import Run, RunError, RunWriter, open_run, without_server_paths
from toygpt.status import Status, is_active
from toygpt.stopping import StopRequested, stop_scope
from toygpt.train import Event, TrainConfig


class JobRefused(RuntimeError):
    """The registry will not start this job; ``str(exc)`` says why."""


# --------------------------------------------------------------------------------------------
# A job: one training run on a daemon thread
# --------------------------------------------------------------------------------------------

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
        spare = self.spare
        process = spare if spare is not None and spare.waiting else WorkerProcess(self.worker or WorkerSettings()).spawn()
        with self._lock:  # one step: worker_pid never sees the job between its spare and its process
            self._process, self.spare = process, None
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
