"""An experiment as a background job (``LabJob``: on a thread, or in its own process like a
training job, ``toygpt.job_process``), and its live curves."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from toygpt.job_process import WorkerSettings
from toygpt.jobs import BackgroundJob, JobStatus
from toygpt.lab.registry import EXPERIMENTS, reading, run_experiment
from toygpt.lab.setup import ExperimentStopped, LabError
from toygpt.lab.storage import load_result, save_result
from toygpt.status import Status
from toygpt.stopping import StopRequested


@dataclass(frozen=True, kw_only=True)
class LabStatus(JobStatus):
    """A lab job's status: the common fields (its curves are one per variant) and which experiment."""

    experiment: str


def params_to_dict(params: Any) -> dict[str, Any]:
    """An experiment's parameters as exact JSON values (``to_dict`` rounds floats for display)."""
    return {f.name: getattr(params, f.name) for f in fields(params)}


def params_from_dict(name: str, data: dict[str, Any]) -> Any:
    """Experiment ``name``'s parameters from ``params_to_dict`` (JSON gives lists for tuples)."""
    if name not in EXPERIMENTS:
        raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
    params_type = EXPERIMENTS[name].params_type
    known = {f.name for f in fields(params_type)}
    if not isinstance(data, dict) or set(data) - known:
        raise LabError(f"{name} takes {sorted(known)}, got {sorted(data) if isinstance(data, dict) else data!r}")
    return params_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def run_lab_experiment(name: str, params: Any, on_progress: Any, stop: threading.Event,
                       save: bool = True) -> tuple[str, str, str | None]:  # fmt: skip
    """Run one experiment, saving its result as a run when ``save``: ``(status, message,
    run id)``. Stopped, nothing is saved."""
    return _run(name, params, on_progress, stop, save)[1:]


def _run(name: str, params: Any, on_progress: Any, stop: threading.Event, save: bool) -> tuple[Any, str, str, str | None]:
    try:
        result = run_experiment(name, params, on_progress, stop)
    except ExperimentStopped as exc:
        return None, Status.STOPPED, str(exc), None
    except StopRequested:  # Stop reached a long loop inside (evaluation, data preparation)
        return None, Status.STOPPED, "stopped on request; nothing was saved", None
    return result, Status.FINISHED, reading(result), save_result(result) if save else None


class LabJob(BackgroundJob):
    """One experiment as a background job, a ``toygpt.jobs.BackgroundJob`` like ``TrainJob``, so
    the same ``JobRegistry`` runs it under the same one-job-at-a-time cap: on a daemon thread,
    or with ``worker`` settings in its own process. It never touches Streamlit; on success the
    result is saved as a run (``snapshot().run_id``) and kept in ``result`` (from a worker:
    read back from that run, so only when ``save``)."""

    kind = "lab"

    def __init__(self, name: str, params: Any, num_threads: int | None = None, save: bool = True,
                 worker: WorkerSettings | None = None) -> None:  # fmt: skip
        if name not in EXPERIMENTS:
            raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
        super().__init__(num_threads, worker=worker)
        self.name, self.params, self.save = name, params, save
        self._fraction, self._stage = 0.0, ""
        self._metrics: list[dict[str, Any]] = []
        self.result: Any = None

    def work(self) -> tuple[str, str]:
        if self.worker is not None:
            job = {"experiment": self.name, "params": params_to_dict(self.params), "save": self.save}
            status, message = self.run_in_worker("lab", job, self._on_progress)
            result = load_result(self._run_id) if status == Status.FINISHED and self._run_id else None
        else:
            result, status, message, run_id = _run(self.name, self.params, self._on_progress, self._stop, self.save)
            with self._lock:
                self._run_id = run_id
        if status == Status.FINISHED:
            with self._lock:
                self.result, self._fraction = result, 1.0
        return status, message

    def _on_progress(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["type"] == "progress":
                self._fraction, self._stage = float(event["fraction"]), str(event["message"])
            elif event["type"] == "metric":
                self._metrics.append(dict(event))

    def snapshot(self) -> LabStatus:
        """What a page draws, as plain values (copied under the lock)."""
        with self._lock:
            elapsed = self._elapsed()
            fraction = self._fraction
            title = EXPERIMENTS[self.name].title
            return LabStatus(
                **self._common(), title=title, summary=f"The Concepts lab is running **{title}**",
                experiment=self.name, stage=self._stage, progress=fraction, elapsed=elapsed,
                eta=elapsed * (1 - fraction) / fraction if 0.02 < fraction < 1 else None,
                curves=live_curves(self._metrics),
            )  # fmt: skip


def live_curves(metrics: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A running job's metric events grouped by variant, as rows for ``loss_curves_figure``."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        row = {k: v for k, v in metric.items() if k in ("step", "train_loss", "val_loss")}
        curves.setdefault(str(metric.get("variant", "")), []).append(row)
    return curves
